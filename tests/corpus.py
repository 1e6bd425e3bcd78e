"""Broken and unusual images, generated on the fly for the reliability tests.

Each `make_*` function writes one file into a folder and returns its path. `GOOD` and `BAD`
map a short name to the maker, so tests can loop over the whole corpus.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixlearn.core.storage import weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.registry import create_model


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 24, height: int = 16, seed: int = 0) -> Image.Image:
    """A small RGB image with structure (so truncation and rotation are visible)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    arr[: height // 2, : width // 2] = (250, 10, 10)  # a red top-left corner, to check orientation
    return Image.fromarray(arr, "RGB")


# ---------------------------------------------------------------------------------- bad files


def make_truncated_png(folder: Path, name: str = "truncated.png") -> Path:
    data = _png_bytes(gradient(64, 64))
    path = folder / name
    path.write_bytes(data[: len(data) // 2])
    return path


def make_truncated_jpeg(folder: Path, name: str = "truncated.jpg") -> Path:
    data = _jpeg_bytes(gradient(64, 64))
    path = folder / name
    path.write_bytes(data[: len(data) // 3])
    return path


def make_zero_bytes(folder: Path, name: str = "empty.png") -> Path:
    path = folder / name
    path.write_bytes(b"")
    return path


def make_text_as_jpeg(folder: Path, name: str = "notes.jpg") -> Path:
    path = folder / name
    path.write_text("these are my holiday notes, not a photo\n")
    return path


def make_html_as_png(folder: Path, name: str = "page.png") -> Path:
    path = folder / name
    path.write_text("<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n")
    return path


def bomb_png_bytes(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header declaring width x height 1-bit pixels, with almost no data.

    Opening it is enough for Pillow's decompression-bomb check, which reads only the header.
    """
    signature = b"\x89PNG\r\n\x1a\n"

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = b"\x00" * (1 + (width + 7) // 8)
    data = zlib.compress(row * 4)  # a few rows only: the file stays tiny
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def make_bomb(folder: Path, name: str = "bomb.png", width: int = 30000, height: int = 30000) -> Path:
    path = folder / name
    path.write_bytes(bomb_png_bytes(width, height))
    return path


def make_symlink_loop(folder: Path, name: str = "loop.png") -> Path:
    """A file name that is a symlink to itself: opening it fails with ELOOP."""
    path = folder / name
    os.symlink(name, path)
    return path


BAD: dict[str, Callable[[Path], Path]] = {
    "truncated_png": make_truncated_png,
    "truncated_jpeg": make_truncated_jpeg,
    "zero_bytes": make_zero_bytes,
    "text_as_jpeg": make_text_as_jpeg,
    "html_as_png": make_html_as_png,
    "bomb": make_bomb,
    "symlink_loop": make_symlink_loop,
}


# ---------------------------------------------------------------------------------- unusual but valid


def make_png16(folder: Path, name: str = "deep.png") -> Path:
    """16-bit grayscale: a left half at 65535 (white) and a right half at 32768 (mid grey)."""
    arr = np.full((8, 8), 32768, dtype=np.uint16)
    arr[:, :4] = 65535
    path = folder / name
    Image.fromarray(arr).save(path)  # uint16 -> mode I;16
    return path


def make_cmyk_jpeg(folder: Path, name: str = "cmyk.jpg") -> Path:
    path = folder / name
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    return path


def make_palette_transparent(folder: Path, name: str = "palette.png") -> Path:
    """A palette image whose index 0 is transparent: those pixels must become white."""
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # index 0 black, 1 blue
    image.paste(1, (0, 0, 4, 8))  # left half blue, right half transparent black
    path = folder / name
    image.save(path, transparency=0)
    return path


def make_gray_alpha(folder: Path, name: str = "la.png") -> Path:
    arr = np.zeros((8, 8, 2), dtype=np.uint8)
    arr[..., 1] = 0  # fully transparent black: composited over white
    arr[:, :4, 1] = 255  # left half opaque black
    path = folder / name
    Image.fromarray(arr, "LA").save(path)
    return path


def make_animated_gif(folder: Path, name: str = "animated.gif") -> Path:
    frames = [Image.new("L", (8, 8), v) for v in (10, 200, 120)]
    path = folder / name
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return path


def make_multipage_tiff(folder: Path, name: str = "pages.tif") -> Path:
    pages = [Image.new("L", (8, 8), v) for v in (30, 220)]
    path = folder / name
    pages[0].save(path, save_all=True, append_images=pages[1:])
    return path


def make_exif_rotated(folder: Path, name: str = "rotated.jpg") -> Path:
    """Stored 24 wide x 16 high with EXIF orientation 6 (rotate 90 clockwise): upright it is 16 x 24."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = folder / name
    path.write_bytes(_jpeg_bytes(gradient(24, 16), exif=exif.tobytes()))
    return path


def make_tiny(folder: Path, name: str = "tiny.png") -> Path:
    path = folder / name
    Image.new("RGB", (1, 1), (0, 128, 255)).save(path)
    return path


def make_elongated(folder: Path, name: str = "long.png") -> Path:
    path = folder / name
    Image.new("L", (1000, 1), 77).save(path)
    return path


GOOD: dict[str, Callable[[Path], Path]] = {
    "png16": make_png16,
    "cmyk_jpeg": make_cmyk_jpeg,
    "palette_transparent": make_palette_transparent,
    "gray_alpha": make_gray_alpha,
    "animated_gif": make_animated_gif,
    "multipage_tiff": make_multipage_tiff,
    "exif_rotated": make_exif_rotated,
    "tiny": make_tiny,
    "elongated": make_elongated,
}


# ---------------------------------------------------------------------------------- folders


def write_png(path: Path, value: int, size: int = 16, seed: int | None = None) -> Path:
    """A grayscale PNG of roughly constant `value` (noise added when seed is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size, size), value, dtype=np.uint8)
    if seed is not None:
        noise = np.random.default_rng(seed).integers(-20, 21, arr.shape)
        arr = np.clip(arr.astype(int) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(arr, "L").save(path)
    return path


def make_class_folders(root: Path, classes: dict[str, int] | None = None, per_class: int = 6, size: int = 16) -> Path:
    """root/LABEL/img_i.png for each label, dark and light classes that a small net separates."""
    classes = classes if classes is not None else {"dark": 40, "light": 210}
    for c, (label, value) in enumerate(classes.items()):
        for i in range(per_class):
            write_png(root / label / f"img_{i}.png", value, size, seed=c * 1000 + i)
    return root


# ---------------------------------------------------------------------------------- runs


def fake_run(directory: Path, classes: list[str], color: str = "grayscale", size: int = 16) -> Path:
    """A run directory holding an untrained classifier: enough for evaluate and predict."""
    torch.manual_seed(0)
    spec = ModelSpec.classifier("resnet-small", classes, (size, size), color)
    model = create_model(spec.model, **spec.kwargs)
    weights.save_model(model, spec, directory)
    return directory


# ---------------------------------------------------------------------------------- the command line


def cli(*args: str | Path, width: int = 200):
    """`pixlearn ARGS...` in-process (typer's runner), on a console wide enough for long paths."""
    from typer.testing import CliRunner

    from pixlearn.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], terminal_width=width)


def error_line(result, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one `error:` line holding every fragment."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class Payload:
    """Unpickling this creates the marker file: proof that pickle data was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))
