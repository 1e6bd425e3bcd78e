"""The image being fitted: decoded once through the one decoder, kept as uint8 (height, width, channels)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import numpy as np
from PIL import Image

from pixlearn.core.errors import ConfigError, ImageError
from pixlearn.core.imaging.images import decoding, image_info, is_url, normalize_mode, open_image, resize
from pixlearn.core.storage.spec import FittedImage, field_image_problem


@dataclass
class FieldImage:
    """The image being fitted: uint8 (height, width, channels) plus where it came from."""

    pixels: np.ndarray
    source: str
    mode: str
    frames: int = 1
    source_png: SourcePng | None = None  # the source file, when it is a PNG of exactly these pixels

    height = property(lambda self: self.pixels.shape[0])
    width = property(lambda self: self.pixels.shape[1])
    channels = property(lambda self: self.pixels.shape[2])

    def describe(self) -> FittedImage:
        """What the model spec records of the image (its size, mode and source)."""
        return FittedImage(self.width, self.height, self.channels, self.mode, self.source, self.frames)


@dataclass(frozen=True)
class SourcePng:
    """A PNG file that decodes to the fitted pixels, as it was when decoded (size and mtime)."""

    path: Path
    size: int
    mtime_ns: int

    def unchanged(self) -> bool:
        try:
            stat = self.path.stat()
        except OSError:  # moved or removed since: the pixels are encoded instead
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_PNG_COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # IHDR's colour type of each mode, 8 bits a sample
_PNG_SLACK = 2**20  # bytes a PNG may hold beyond its raw pixels (zlib's overhead, small chunks) to be copied


def _same_png(source: object, opened: Image.Image, mode: str, size: tuple[int, int] | None) -> SourcePng | None:
    """The source as a SourcePng when its bytes are a PNG of exactly the pixels fitted: a regular
    file, one frame, 8 bits a sample in the mode fitted (nothing converted, resized or rotated: an
    EXIF rotation leaves a new image without a format), no transparency chunk, and no more than
    _PNG_SLACK bytes over its raw pixels (a PNG carrying large other chunks is written anew)."""
    if not isinstance(source, (str, os.PathLike)) or is_url(source) or opened.format != "PNG":
        return None
    if opened.mode != mode or (size is not None and tuple(size) != opened.size):
        return None
    if "transparency" in opened.info or opened.info.get("pixlearn_frames", 1) != 1:
        return None
    path = Path(source)
    try:  # the file moved or changed since it was decoded: no copy, the pixels are encoded instead
        stat = path.stat()
        if not S_ISREG(stat.st_mode) or stat.st_size > opened.width * opened.height * len(mode) + _PNG_SLACK:
            return None
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO by now: no wait
        try:
            header = os.read(descriptor, 26)  # signature, IHDR length and type, width, height, depth, colour type
        finally:
            os.close(descriptor)
    except OSError:
        return None
    if header[12:16] != b"IHDR" or header[24:26] != bytes((8, _PNG_COLOUR_TYPES[mode])):
        return None
    return SourcePng(path, stat.st_size, stat.st_mtime_ns)


def load_field_image(
    source: str | os.PathLike | bytes | np.ndarray, color: str = "auto", size: tuple[int, int] | None = None
) -> FieldImage:
    """Decode a path, URL, bytes or uint8 array for fitting; size is (width, height).

    Any failure to decode (a truncated or fuzzed file included) is the ImageError naming the source."""
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else source[:, :, None]
        if arr.dtype != np.uint8 or arr.shape[2] not in _MODES:
            raise ConfigError(f"an image array must be uint8 with 1, 3 or 4 channels; got {arr.dtype} {arr.shape}")
        image, name, frames = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr), "<array>", 1
        opened = None
    else:
        name = "<bytes>" if isinstance(source, bytes) else str(source)
        image = opened = open_image(source)
        frames = image_info(image).frames
    problem = field_image_problem(*(size or image.size), 1)  # a run's spec must load again: same limits
    if problem:
        raise ImageError(name, f"{problem} for a fit; resize it (size, --size)")
    keep_alpha = color == "rgba" or (color == "auto" and ("A" in image.getbands() or "transparency" in image.info))
    with decoding(name):
        image = normalize_mode(image, "rgba" if keep_alpha else color)  # type: ignore[arg-type]
        if size is not None:
            image = resize(image, (size[1], size[0]), "squash")
        arr = np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy shares it
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    mode = _MODES[arr.shape[2]]
    source_png = None if opened is None else _same_png(source, opened, mode, size)
    return FieldImage(np.ascontiguousarray(arr), name, mode, frames, source_png)


@dataclass(frozen=True)
class ImageResult:
    """An image a verb made: the uint8 (height, width, channels) pixels, and the PNG written (None: none)."""

    pixels: np.ndarray
    out: Path | None

    @property
    def width(self) -> int:
        """The image's width in pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """The image's height in pixels."""
        return int(self.pixels.shape[0])
