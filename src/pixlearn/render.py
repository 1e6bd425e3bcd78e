"""Evaluating a fitted field: colours at any pixel grid, in chunks; PNG output; readable weights.

    >>> from pixlearn.render import render
    >>> big = render("runs/siren", scale=4, out="big.png")   # doctest: +SKIP
    >>> big.shape                                            # doctest: +SKIP
    (1024, 1024, 3)

Coordinates always span the trained image's extent, so `--scale 4` evaluates the same function
on a 4x finer grid (between the training pixels), whatever the coordinate convention.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from . import runs
from .coords import CoordMode, EvenPixels, PixelSet, check_mode, chunks, coords_of, heldout_test_mask
from .images import to_pil
from .losses import psnr_from_mse

if TYPE_CHECKING:  # fit imports this module; these names are for annotations only
    from .fit import FieldImage, FitConfig, FitLoopResult

RENDER_CHUNK = 65_536  # pixels evaluated at once: memory stays bounded by the output image itself
MAX_RENDER_PIXELS = 400_000_000  # a guard against a typo such as --scale 400
PRINTED_WEIGHTS = 1_000  # models up to this many parameters print their weights (the seed's get_weights())


def predict_ids(
    model: nn.Module,
    ids: torch.Tensor,
    height: int,
    width: int,
    mode: CoordMode,
    extent: tuple[int, int] | None = None,
    chunk: int = RENDER_CHUNK,
) -> torch.Tensor:
    """Colours in [0, 1] (clamped) of the row-major pixel numbers `ids`, evaluated in chunks."""
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk].to(device)
            outputs.append(model(coords_of(part, height, width, mode, extent).to(device)).clamp_(0.0, 1.0))
    return torch.cat(outputs) if outputs else torch.empty(0)


def render_array(
    model: nn.Module, height: int, width: int, mode: CoordMode, extent: tuple[int, int] | None = None
) -> np.ndarray:
    """Evaluate the model at every pixel of a height x width grid: uint8 (height, width, C).

    Chunks of RENDER_CHUNK pixels keep memory bounded by the output image itself.
    extent: the (width, height) the model was trained on, for pixel-coordinate models.
    """
    out: np.ndarray | None = None
    with torch.no_grad():
        for ids in chunks(height * width, RENDER_CHUNK):
            values = predict_ids(model, ids, height, width, mode, extent).cpu().numpy()
            if out is None:
                out = np.empty((height * width, values.shape[1]), dtype=np.uint8)
            out[ids.numpy()] = np.rint(values * 255.0).astype(np.uint8)
    assert out is not None
    return out.reshape(height, width, -1)


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


def final_metrics(
    model: nn.Module, image: FieldImage, reconstruction: np.ndarray, config: FitConfig, loop: FitLoopResult
) -> dict[str, Any]:
    """PSNR from the float outputs on every training pixel (held-out: and every unseen one), SSIM at the end."""
    mode: CoordMode = config.coords  # type: ignore[assignment]
    target = torch.from_numpy(image.pixels.reshape(-1, image.channels))
    pixels = EvenPixels(image.height, image.width) if config.heldout else PixelSet(image.height, image.width)
    sse, count = 0.0, 0
    for positions in chunks(pixels.count, RENDER_CHUNK):
        ids = pixels.flat(positions)
        error = predict_ids(model, ids, image.height, image.width, mode).cpu() - target[ids].float() / 255.0
        sse, count = sse + float((error**2).sum()), count + error.numel()
    metrics: dict[str, Any] = {
        "model": config.model,
        "psnr": psnr_from_mse(sse / count),
        "ssim": ssim(image.pixels, reconstruction),
        "params": count_parameters(model),
        "bytes": stored_bytes(model),
        "seconds": round(loop.seconds, 3),
        "steps": loop.steps,
        "pixels": image.width * image.height,
        "width": image.width,
        "height": image.height,
        "channels": image.channels,
    }
    if config.heldout:
        mask = heldout_test_mask(image.height, image.width)
        ids = torch.from_numpy(np.flatnonzero(mask))
        sse = 0.0
        for start in range(0, len(ids), RENDER_CHUNK):
            part = ids[start : start + RENDER_CHUNK]
            error = predict_ids(model, part, image.height, image.width, mode).cpu() - target[part].float() / 255.0
            sse += float((error**2).sum())
        metrics["test_psnr"] = psnr_from_mse(sse / (len(ids) * image.channels))
        # the odd rows and columns form an image made only of unseen pixels
        metrics["test_ssim"] = ssim(image.pixels[1::2, 1::2], reconstruction[1::2, 1::2])
        metrics["train_pixels"] = pixels.count
        metrics["test_pixels"] = len(ids)
    return metrics


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """A uint8 (H, W, C) array as a PNG, written atomically."""
    path = Path(path)
    with runs.atomic_path(path) as tmp:
        to_pil(image).save(tmp, format="PNG")
    return path


def output_size(spec: dict[str, Any], scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of a render: `size`, or the trained image scaled by `scale` (default 1)."""
    width, height = int(spec["image"]["width"]), int(spec["image"]["height"])
    if size is not None and scale is not None:
        raise ValueError("give --scale or --size, not both")
    if size is not None:
        width, height = size
    elif scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if width < 1 or height < 1:
        raise ValueError(f"an output size needs positive sides, got {width}x{height}")
    if width * height > MAX_RENDER_PIXELS:
        raise ValueError(f"{width}x{height} is over the {MAX_RENDER_PIXELS:,}-pixel render limit")
    return width, height


def render(
    run: str | os.PathLike,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    out: str | os.PathLike | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Evaluate a fitted run's model on a (width, height) = `size` grid or `scale` x the image; uint8 array.

    Writes a PNG to `out` when given.
    """
    from .devices import resolve_device

    model, spec = runs.load_model(run, device=resolve_device(device))
    if spec.get("task") != "field":
        raise runs.RunError(f"{run}: not an image-fit run (model task {spec.get('task')!r})")
    width, height = output_size(spec, scale, size)
    extent = (int(spec["image"]["width"]), int(spec["image"]["height"]))
    image = render_array(model, height, width, check_mode(spec.get("coords", "normalized")), extent)
    if out is not None:
        write_png(image, out)
    return image


# ---------------------------------------------------------------------------------- weights


def weights_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """Every saved tensor (weights, biases, fixed buffers) by name, as float arrays."""
    return {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}


def write_weights(model: nn.Module, directory: str | os.PathLike) -> None:
    """weights.json (name -> shape and nested values) and weights.npz (the same arrays)."""
    directory = Path(directory)
    arrays = weights_dict(model)
    runs.write_json(
        directory / "weights.json", {k: {"shape": list(v.shape), "values": v.tolist()} for k, v in arrays.items()}
    )
    with runs.atomic_path(directory / "weights.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def format_weights(model: nn.Module) -> str:
    """The weights as text, like the seed's ``model$get_weights()``; Dense kernels are shown (in, out)
    as Keras stores them (PyTorch stores (out, in))."""
    lines = []
    with np.printoptions(precision=7, suppress=False, linewidth=100):
        for name, value in weights_dict(model).items():
            shown = value.T if name.endswith("weight") and value.ndim == 2 else value
            layout = " (in x out)" if shown is not value else ""
            lines.append(f"{name} {tuple(shown.shape)}{layout}\n{shown}")
    return "\n\n".join(lines)
