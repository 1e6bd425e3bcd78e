"""Quality figures of a fitted image: MSE, PSNR, SSIM, and the size of the model that stores it."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


def squared_error_sum(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """The summed squared error as a Python float: chunks of a large image add up in float64."""
    return float(((prediction - target) ** 2).sum())


def psnr_from_mse(mse_value: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, peak]."""
    if mse_value <= 0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse_value)


def decoded_psnr(decoded: np.ndarray, pixels: np.ndarray) -> float:
    """PSNR in dB of a decoded uint8 image against the original's uint8 pixels; finite for a lossless one
    (a file's figure still goes to JSON)."""
    mse = float(((decoded.astype(np.float64) - pixels) ** 2).mean())
    return psnr_from_mse(max(mse, 1e-12), 255.0)


SSIM_BAND_ROWS = 1024  # above this many rows SSIM is computed per band of rows, bounding its float64 memory
# skimage.metrics.structural_similarity's defaults (Wang et al. 2004 as skimage computes them): a 7x7
# uniform window, the sample covariance, K1 = 0.01, K2 = 0.03, the 3-pixel border left out of the mean
SSIM_WINDOW = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Structural similarity of two uint8 (H, W, C) images, the channels averaged: skimage's value.

    Tall images are measured in bands of SSIM_BAND_ROWS rows and the bands averaged by area: every
    statistic is a float64 image (about ten copies of the input, 4 GB for a 16-megapixel RGB image
    at once); per band the result differs only by the few rows of window border at each cut.

        >>> rng = np.random.default_rng(0)
        >>> a = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        >>> from skimage.metrics import structural_similarity
        >>> expected = structural_similarity(a, a // 2, data_range=255, channel_axis=2)
        >>> bool(abs(ssim(a, a // 2) - expected) < 1e-12)
        True
    """
    if min(original.shape[:2]) < SSIM_WINDOW:
        return float("nan")  # the window needs at least 7 pixels per side
    total, weight = 0.0, 0
    for top in range(0, original.shape[0], SSIM_BAND_ROWS):
        a, b = original[top : top + SSIM_BAND_ROWS], reconstruction[top : top + SSIM_BAND_ROWS]
        if a.shape[0] < SSIM_WINDOW:  # a sliver left at the bottom: too thin for the window, covered above
            continue
        total, weight = total + _window_ssim(a, b) * a.shape[0], weight + a.shape[0]
    return total / weight


def _window_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """skimage's SSIM of one (H, W, C) pair, every channel in one pass of each filter.

    Written out rather than calling skimage per tile: its per-call checks and per-channel loop cost
    more than the filters over a large fit's tiles (bench/README.md, "Rendering, measuring and writing a fit"),
    for the same value (tests/test_fit_phases.py: within 1e-12)."""
    from scipy.ndimage import uniform_filter

    x, y = a.astype(np.float64), b.astype(np.float64)
    size = (SSIM_WINDOW, SSIM_WINDOW, 1)  # over rows and columns, never across channels
    sample = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    ux, uy = uniform_filter(x, size), uniform_filter(y, size)
    vx = sample * (uniform_filter(x * x, size) - ux * ux)
    vy = sample * (uniform_filter(y * y, size) - uy * uy)
    vxy = sample * (uniform_filter(x * y, size) - ux * uy)
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = SSIM_WINDOW // 2
    return float(s[pad:-pad, pad:-pad].mean())


SSIM_ALL_PIXELS = 2**20  # SSIM over every pixel up to this many (1024x1024); above, over tiles
SSIM_TILE = 64  # side of a tile
SSIM_TILE_PIXELS = 2**22  # pixels the tiles cover together: 1,024 tiles of 64x64
SSIM_TILE_SEED = 0  # one fixed draw: every model fitted to an image of one size is measured on the same tiles


def ssim_measured(original: np.ndarray, reconstruction: np.ndarray) -> tuple[float, str | None]:
    """SSIM and how it was measured: None when over every pixel; above SSIM_ALL_PIXELS, the mean
    over a seeded draw of non-overlapping SSIM_TILE x SSIM_TILE tiles covering SSIM_TILE_PIXELS.

    Why: skimage's SSIM over every pixel of a 16-megapixel image is slow; 1,024 tiles of 64x64 take a
    fraction of its time and stay within 0.0022 of the whole image's value for each of five draws
    (astronaut 4096x4096 fitted by hashgrid, SSIM 0.9146; 16 tiles of 256x256 were up to 0.018 off)
    (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)").
    """
    height, width = original.shape[:2]
    if height * width <= SSIM_ALL_PIXELS:
        return ssim(original, reconstruction), None
    tile_h, tile_w = min(SSIM_TILE, height), min(SSIM_TILE, width)
    rows, cols = height // tile_h, width // tile_w
    count = min(rows * cols, -(-SSIM_TILE_PIXELS // (tile_h * tile_w)))
    picks = np.sort(np.random.default_rng(SSIM_TILE_SEED).choice(rows * cols, size=count, replace=False))
    values = []
    for pick in picks:
        top, left = (pick // cols) * tile_h, (pick % cols) * tile_w
        window = (slice(top, top + tile_h), slice(left, left + tile_w))
        values.append(_window_ssim(original[window], reconstruction[window]))
    covered = count * tile_h * tile_w
    method = (
        f"SSIM over {count:,} tiles of {tile_w}x{tile_h} = {covered / 1e6:.1f} MP of {height * width / 1e6:.1f} MP "
        f"(seeded draw {SSIM_TILE_SEED})"
    )
    return float(np.mean(values)), method


# ---------------------------------------------------------------------------------- metrics


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the saved weights (parameters and persistent buffers such as Fourier frequencies)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
