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


SSIM_BAND_ROWS = 1024  # above this many rows SSIM is computed per band of rows, bounding its float64 memory


def ssim(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Structural similarity of two uint8 images (skimage, the channels averaged).

    Tall images are measured in bands of SSIM_BAND_ROWS rows and the bands averaged by area:
    skimage holds about ten float64 copies of its input, 4 GB for a 16-megapixel RGB image; per band
    the result differs only by the few rows of window border at each cut.
    """
    from skimage.metrics import structural_similarity

    if min(original.shape[:2]) < 7:
        return float("nan")  # SSIM's 7x7 window needs at least 7 pixels per side
    channel_axis = None if original.shape[2] == 1 else 2
    total, weight = 0.0, 0
    for top in range(0, original.shape[0], SSIM_BAND_ROWS):
        a, b = original[top : top + SSIM_BAND_ROWS], reconstruction[top : top + SSIM_BAND_ROWS]
        if a.shape[0] < 7:  # a sliver left at the bottom: too thin for the window, covered by its neighbour
            continue
        if channel_axis is None:
            a, b = a[:, :, 0], b[:, :, 0]
        value = structural_similarity(a, b, data_range=255, channel_axis=channel_axis)
        total, weight = total + float(value) * a.shape[0], weight + a.shape[0]
    return total / weight


# ---------------------------------------------------------------------------------- metrics


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the saved weights (parameters and persistent buffers such as Fourier frequencies)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
