"""The image being fitted: decoded once through the one decoder, kept as uint8 (height, width, channels)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pixlearn.core.errors import ConfigError, ImageError
from pixlearn.core.images import decoding, image_info, normalize_mode, open_image, resize
from pixlearn.core.spec import FittedImage, field_image_problem


@dataclass
class FieldImage:
    """The image being fitted: uint8 (height, width, channels) plus where it came from."""

    pixels: np.ndarray
    source: str
    mode: str
    frames: int = 1

    height = property(lambda self: self.pixels.shape[0])
    width = property(lambda self: self.pixels.shape[1])
    channels = property(lambda self: self.pixels.shape[2])

    def describe(self) -> FittedImage:
        """What the model spec records of the image (its size, mode and source)."""
        return FittedImage(self.width, self.height, self.channels, self.mode, self.source, self.frames)


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


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
    else:
        name = "<bytes>" if isinstance(source, bytes) else str(source)
        image = open_image(source)
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
    return FieldImage(np.ascontiguousarray(arr), name, _MODES[arr.shape[2]], frames)
