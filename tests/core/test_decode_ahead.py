"""Decoding an image on a thread before it is asked for (`images.decode_ahead`); the command that starts it is
tested in tests/cli/test_start_up.py."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from pixlearn.core.errors import ImageError
from pixlearn.core.imaging import images


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)).save(path)
    return path


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The paths `images._open_image` decoded, in order."""
    calls: list[str] = []
    real = images._open_image

    def counting(source, draft, name):
        calls.append(str(source))
        return real(source, draft, name)

    monkeypatch.setattr(images, "_open_image", counting)
    return calls


def test_the_image_decoded_ahead_is_taken_once_and_equals_a_decode(photo, opened) -> None:
    assert images.decode_ahead(photo)
    image = images.open_image(photo)
    assert opened == [str(photo)]  # the thread's decode, none after it
    assert np.array_equal(np.array(image), np.array(Image.open(photo)))
    assert image.info["pixlearn_size"] == (64, 48)
    images.open_image(photo)
    assert opened == [str(photo)] * 2  # taken once: a second open decodes again


def test_a_file_changed_after_the_early_decode_is_decoded_again(photo, opened) -> None:
    assert images.decode_ahead(photo)
    images._AHEAD[str(photo)].thread.join()
    Image.new("RGB", (20, 10), "tomato").save(photo)
    stat = photo.stat()
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime, whatever the clock
    image = images.open_image(photo)
    assert image.size == (20, 10) and len(opened) == 2


def test_a_broken_file_decoded_ahead_fails_as_a_plain_open_does(tmp_path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert images.decode_ahead(broken)
    with pytest.raises(ImageError, match="broken.png"):
        images.open_image(broken)


def test_the_pixel_limit_in_force_when_the_image_is_taken_applies(photo) -> None:
    assert images.decode_ahead(photo)
    with images.pixel_limit(100), pytest.raises(ImageError, match="decompression bomb"):
        images.open_image(photo)


def test_only_regular_image_files_are_decoded_ahead(tmp_path) -> None:
    assert not images.decode_ahead(tmp_path / "missing.png")
    assert not images.decode_ahead(tmp_path)  # a directory
    (tmp_path / "notes.txt").write_text("not an image")
    assert not images.decode_ahead(tmp_path / "notes.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")
        assert not images.decode_ahead(tmp_path / "pipe.png")  # never opened: it would wait for a writer
