"""Pixel coordinates: the one grid helper (SIREN's get_mgrid), the coordinate table and pixel sampling.

Coordinates are x = column and y = row. Two conventions exist and nothing else:

- ``normalized`` (every model but the seed presets): x and y in [-1, 1], the first pixel at -1 and
  the last at +1 along each axis (``linspace(-1, 1, n)``, as SIREN's get_mgrid);
- ``pixel`` (the seed presets, for exact reproduction): the seed's raw 1-based pixel indices,
  x in 1..width and y in 1..height, as imager's ``as.data.frame`` writes them.

Pixels are numbered row-major: ``flat = row * width + column``. Coordinates are computed from those
numbers per batch, so a 16-megapixel image never holds a float coordinate tensor for every pixel.

    >>> import numpy as np
    >>> from pixlearn.field.coords import image_to_table, table_to_image, grid
    >>> image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1)
    >>> table = image_to_table(image)
    >>> table[:2].tolist()          # x, y (1-based), one value per channel in [0, 1]
    [[1.0, 1.0, 0.0], [2.0, 1.0, 0.00392156862745098]]
    >>> bool((table_to_image(table) == image).all())
    True
    >>> grid(2, 3).tolist()         # (height, width) -> (x, y) rows in [-1, 1]
    [[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pixlearn.core.errors import ConfigError

CoordMode = Literal["normalized", "pixel"]
COORD_MODES: tuple[str, ...] = ("normalized", "pixel")


def check_mode(mode: str) -> CoordMode:
    if mode not in COORD_MODES:
        raise ConfigError(f"unknown coordinate mode {mode!r}; choose one of {', '.join(COORD_MODES)}")
    return mode  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- coordinates


def coords_of(
    flat: torch.Tensor,
    height: int,
    width: int,
    mode: CoordMode = "normalized",
    extent: tuple[int, int] | None = None,
) -> torch.Tensor:
    """(x, y) float32 coordinates (N, 2) of the row-major pixel numbers `flat` of a height x width grid.

    extent: the original (width, height) when the grid is a resampling of it (rendering at 2x).
    """
    rows = torch.div(flat, width, rounding_mode="floor")
    cols = flat - rows * width
    ext_w, ext_h = extent if extent is not None else (width, height)
    return torch.stack((_scale(cols, width, ext_w, mode), _scale(rows, height, ext_h, mode)), dim=1)


def _scale(index: torch.Tensor, n: int, extent: int, mode: CoordMode) -> torch.Tensor:
    index = index.to(torch.float32)
    if mode == "normalized":
        return index * (2.0 / (n - 1)) - 1.0 if n > 1 else torch.zeros_like(index)
    check_mode(mode)
    return 1.0 + index * ((extent - 1) / (n - 1)) if n > 1 else torch.ones_like(index)


def grid(height: int, width: int, mode: CoordMode = "normalized") -> torch.Tensor:
    """Every pixel's (x, y), row-major, shape (height * width, 2): SIREN's get_mgrid for one image."""
    return coords_of(torch.arange(height * width), height, width, mode)


# ---------------------------------------------------------------------------------- the table


def image_to_table(image: np.ndarray) -> np.ndarray:
    """An (H, W, C) uint8 image as the seed's data frame: rows (x, y, c_1..c_C), row-major.

    x and y are 1-based pixel indices; values are in [0, 1] (value / 255), as imager gives them.
    The table is float64 so that `table_to_image` recovers every byte exactly.
    """
    image = _as_hwc(image)
    height, width, channels = image.shape
    ys, xs = np.divmod(np.arange(height * width), width)
    table = np.empty((height * width, 2 + channels), dtype=np.float64)
    table[:, 0] = xs + 1
    table[:, 1] = ys + 1
    table[:, 2:] = image.reshape(-1, channels) / 255.0
    return table


def table_to_image(table: np.ndarray, height: int | None = None, width: int | None = None) -> np.ndarray:
    """The inverse (the seed's ``gather`` + ``as.cimg``): place each row's values at its (x, y).

    Rows may come in any order; values are clipped to [0, 1] and rounded to uint8.
    """
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] < 3:
        raise ConfigError(f"a coordinate table needs columns x, y and at least one channel; got shape {table.shape}")
    xs = np.rint(table[:, 0]).astype(np.int64) - 1
    ys = np.rint(table[:, 1]).astype(np.int64) - 1
    if xs.min(initial=0) < 0 or ys.min(initial=0) < 0:
        raise ConfigError("coordinate table: x and y must be 1-based pixel indices")
    width = int(xs.max()) + 1 if width is None else width
    height = int(ys.max()) + 1 if height is None else height
    if len(table) != width * height:
        raise ConfigError(f"coordinate table has {len(table)} rows, a {width}x{height} image needs {width * height}")
    image = np.zeros((height, width, table.shape[1] - 2), dtype=np.uint8)
    image[ys, xs] = np.clip(np.rint(table[:, 2:] * 255.0), 0, 255).astype(np.uint8)
    return image


def table_header(channels: int) -> list[str]:
    names = {1: ["value"], 3: ["r", "g", "b"], 4: ["r", "g", "b", "a"]}.get(channels)
    return ["x", "y", *(names or [f"c{i + 1}" for i in range(channels)])]


def save_table(table: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a coordinate table as .csv (header x,y,channels; exact round trip) or .npy."""
    from pixlearn.core.storage.rundir import atomic_path, write_text

    path = Path(path)
    if path.suffix.lower() == ".npy":
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, table)
        return path
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"{path}: a table is written as .csv or .npy")
    header = ",".join(table_header(table.shape[1] - 2))
    body = [f"{int(r[0])},{int(r[1])}," + ",".join(repr(float(v)) for v in r[2:]) for r in table]
    write_text(path, header + "\n" + "\n".join(body) + "\n")
    return path


def load_table(path: str | os.PathLike) -> np.ndarray:
    """Read a table written by `save_table` (a regular file only: core.files)."""
    from pixlearn.core.storage.files import check_regular_file, data_error

    path = Path(path)
    check_regular_file(path, data_error)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ConfigError(f"expected a uint8 image, got {image.dtype}")
    return image[:, :, None] if image.ndim == 2 else image


# ---------------------------------------------------------------------------------- sampling


class PixelSet:
    """Which pixels of a height x width image a fit may train on: positions 0..count-1 -> pixel numbers."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width

    @property
    def count(self) -> int:
        return self.height * self.width

    def flat(self, positions: torch.Tensor) -> torch.Tensor:
        return positions


class EvenPixels(PixelSet):
    """The held-out protocol's training pixels (Tancik et al. 2020, 2D regression): every other
    pixel in both directions, ``image[::2, ::2]``. The other three quarters are never trained on."""

    def __init__(self, height: int, width: int):
        super().__init__(height, width)
        self.sub_h, self.sub_w = (height + 1) // 2, (width + 1) // 2

    @property
    def count(self) -> int:
        return self.sub_h * self.sub_w

    def flat(self, positions: torch.Tensor) -> torch.Tensor:
        rows = torch.div(positions, self.sub_w, rounding_mode="floor")
        cols = positions - rows * self.sub_w
        return (2 * rows) * self.width + 2 * cols


def heldout_test_mask(height: int, width: int) -> np.ndarray:
    """True for the held-out (test) pixels: every pixel that `EvenPixels` never yields."""
    mask = np.ones((height, width), dtype=bool)
    mask[::2, ::2] = False
    return mask


def random_batches(pixels: PixelSet, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of pixel numbers drawn uniformly with replacement (memory: one batch)."""
    while True:
        yield pixels.flat(torch.randint(pixels.count, (batch,), generator=generator))


def shuffled_pixel_batches(pixels: PixelSet, batch: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One shuffled pass over the pixels in batches (Keras' ``fit(shuffle=TRUE)``: the seed's epoch)."""
    order = torch.randperm(pixels.count, generator=generator)
    for start in range(0, pixels.count, batch):
        yield pixels.flat(order[start : start + batch])


def chunks(total: int, size: int) -> Iterator[torch.Tensor]:
    """Consecutive pixel numbers in chunks, for evaluation and rendering in bounded memory."""
    for start in range(0, total, size):
        yield torch.arange(start, min(start + size, total))
