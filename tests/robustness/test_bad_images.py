"""Broken and unusual image files: a clear reason per file, never a crash or a silently wrong image."""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn.classify.data.decoding import DecodeOptions, decode_files, load_images
from pixlearn.classify.data.folders import Sample, find_image_files
from pixlearn.core.errors import ImageError
from pixlearn.core.imaging import images
from pixlearn.core.imaging.images import decode_image, decode_pil
from tests.corpus import BAD, GOOD, make_bomb, make_class_folders, write_png

EXPECTED_REASON = {
    "truncated_png": "truncated",
    "truncated_jpeg": "truncated",
    "zero_bytes": "not an image",
    "text_as_jpeg": "not an image",
    "html_as_png": "not an image",
    "bomb": "decompression bomb",
    "symlink_loop": "symlink loop",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_file_is_refused_naming_file_and_reason(tmp_path: Path, name: str) -> None:
    path = BAD[name](tmp_path)
    with pytest.raises(ImageError) as caught:
        decode_image(path, "grayscale", (8, 8))
    assert caught.value.source == str(path)
    assert EXPECTED_REASON[name] in caught.value.reason
    assert str(path) in str(caught.value)


def test_reasons_are_distinct_enough_to_act_on(tmp_path: Path) -> None:
    reasons = {}
    for name, make in BAD.items():
        try:
            decode_image(make(tmp_path))
        except ImageError as exc:
            reasons[name] = exc.reason
    assert set(reasons) == set(BAD)
    assert len({EXPECTED_REASON[n] for n in reasons}) == 4


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    arr = decode_image(GOOD["png16"](tmp_path), "grayscale")
    assert arr[0, 0, 0] == 255 and arr[0, -1, 0] == 128  # 65535 -> 255, 32768 -> 128


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    arr = decode_image(GOOD["cmyk_jpeg"](tmp_path), "rgb").astype(int)
    assert arr.shape == (16, 16, 3)
    assert np.abs(arr[8, 8] - [255, 0, 0]).max() <= 8


def test_palette_transparency_is_composited_over_white(tmp_path: Path) -> None:
    arr = decode_image(GOOD["palette_transparent"](tmp_path), "rgb")
    assert arr[0, 0].tolist() == [0, 0, 255]
    assert arr[0, -1].tolist() == [255, 255, 255]


def test_grey_with_alpha_stays_grey_in_auto_mode(tmp_path: Path) -> None:
    arr = decode_image(GOOD["gray_alpha"](tmp_path), "auto")
    assert arr.shape == (8, 8, 1)
    assert arr[0, 0, 0] == 0 and arr[0, -1, 0] == 255


@pytest.mark.parametrize(("name", "first_value", "frames"), [("animated_gif", 10, 3), ("multipage_tiff", 30, 2)])
def test_multi_frame_file_reads_first_frame_and_says_so(tmp_path: Path, name: str, first_value: int, frames: int):
    path = GOOD[name](tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # the file must be closed, not left to the collector
        image, _, count = decode_pil(path, "grayscale")
        arr = np.asarray(image)
        gc.collect()
    assert count == frames
    assert np.all(arr == first_value)
    assert images.image_info(images.open_image(path)).frames == frames


def test_multi_frame_files_are_noted_in_the_data_summary(tmp_path: Path) -> None:
    paths = [GOOD["animated_gif"](tmp_path), GOOD["multipage_tiff"](tmp_path), write_png(tmp_path / "a.png", 9)]
    data = load_images([Sample(p, "x") for p in paths], DecodeOptions("grayscale", (8, 8)))
    noted = dict(data.notes)
    assert set(noted) == {str(paths[0]), str(paths[1])}
    assert "3 frames" in noted[str(paths[0])] and "first" in noted[str(paths[0])]


def test_exif_rotated_jpeg_is_loaded_upright(tmp_path: Path) -> None:
    image, original, _ = decode_pil(GOOD["exif_rotated"](tmp_path), "rgb")
    arr = np.asarray(image)
    assert arr.shape == (24, 16, 3)  # stored 24 wide x 16 high, orientation 6: upright 16 wide x 24 high
    assert original == (16, 24)
    # The stored top-left red corner turns to the top-right.
    assert arr[1, -2, 0] > 200 and arr[1, -2, 1] < 60
    assert not (arr[1, 1, 0] > 200 and arr[1, 1, 1] < 60 and arr[1, 1, 2] < 60)


@pytest.mark.parametrize("fit", ["squash", "crop", "pad"])
@pytest.mark.parametrize("name", ["tiny", "elongated"])
def test_very_small_and_elongated_images_resize_to_any_size(tmp_path: Path, name: str, fit: str) -> None:
    arr = decode_image(GOOD[name](tmp_path), "grayscale", (12, 10), fit)  # type: ignore[arg-type]
    assert arr.shape == (12, 10, 1)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillow_warning_band_is_refused_too(tmp_path: Path) -> None:
    # Pillow raises above twice the limit and only warns between 1x and 2x; both must be refused.
    over = make_bomb(tmp_path, "over.png", 40, 40)  # 1600 pixels: the warning band
    far_over = make_bomb(tmp_path, "far.png", 60, 60)  # 3600: Pillow's own error
    write_png(tmp_path / "ok.png", 5, size=30)
    with images.pixel_limit(1000):
        for path in (over, far_over):
            with pytest.raises(ImageError, match="decompression bomb"):
                images.open_image(path)
        assert decode_image(tmp_path / "ok.png").shape == (30, 30, 1)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_can_be_raised_and_restored(tmp_path: Path) -> None:
    path = write_png(tmp_path / "big.png", 5, size=40)
    before = Image.MAX_IMAGE_PIXELS
    with images.pixel_limit(1000):
        with pytest.raises(ImageError, match="--max-pixels"):
            decode_image(path)
        with images.pixel_limit(2000):
            assert decode_image(path).shape == (40, 40, 1)
        assert Image.MAX_IMAGE_PIXELS == 1000
    assert Image.MAX_IMAGE_PIXELS == before == 1024 * 1024 * 1024 // 4 // 3  # Pillow's default, about 89 M


def test_default_limit_refuses_a_30000_square_bomb_without_decoding_it(tmp_path: Path) -> None:
    path = make_bomb(tmp_path)
    assert path.stat().st_size < 2000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(path)


def test_unreadable_file_reports_permission_denied(tmp_path: Path, monkeypatch) -> None:
    # Tests may run as root, for whom chmod 000 changes nothing: make the open itself fail.
    path = write_png(tmp_path / "secret.png", 1)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.Image, "open", denied)
    with pytest.raises(ImageError, match="permission denied") as caught:
        decode_image(path)
    assert caught.value.source == str(path)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_for_real(tmp_path: Path) -> None:
    path = write_png(tmp_path / "secret.png", 1)
    path.chmod(0)
    with pytest.raises(ImageError, match="permission denied"):
        decode_image(path)


def test_symlink_loops_do_not_hang_the_scan(tmp_path: Path) -> None:
    make_class_folders(tmp_path, per_class=1)
    os.symlink(tmp_path, tmp_path / "dark" / "back_to_root")  # a folder loop
    BAD["symlink_loop"](tmp_path / "light")  # a file that points to itself
    found = find_image_files(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in found) == [
        "dark/img_0.png",
        "light/img_0.png",
        "light/loop.png",
    ]
    _, kept, _, skipped = decode_files(found, DecodeOptions("grayscale", (8, 8)))
    assert len(kept) == 2 and len(skipped) == 1
    assert skipped[0][0].endswith("loop.png") and "symlink loop" in skipped[0][1]


def test_strange_file_names_decode_and_keep_their_path(tmp_path: Path) -> None:
    names = ["my photo.png", 'say "cheese".png', "it's, here.png", os.fsdecode(b"caf\xe9 \xff.png")]
    for i, name in enumerate(names):
        write_png(tmp_path / name, 10 * i)
    found = find_image_files(tmp_path)
    assert sorted(p.name for p in found) == sorted(names)
    data = load_images([Sample(p, None) for p in found], DecodeOptions("grayscale", (4, 4)))
    assert sorted(Path(p).name for p in data.paths) == sorted(names)
    assert not data.skipped


def test_strict_stops_at_the_first_bad_file(tmp_path: Path) -> None:
    paths = [write_png(tmp_path / "a.png", 1), BAD["truncated_png"](tmp_path)]
    with pytest.raises(ImageError, match="truncated"):
        decode_files(paths, DecodeOptions("grayscale", (8, 8)), strict=True)
