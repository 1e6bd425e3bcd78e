"""Evaluating a fitted field: colours at any pixel grid, in chunks; PNG output; readable weights.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from pixlearn.field.config import FitConfig
    >>> from pixlearn.field.fit import fit_image
    >>> from pixlearn.field.rendering import render
    >>> tmp = tempfile.TemporaryDirectory()
    >>> run = Path(tmp.name) / "run"
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # a 16x16 grey gradient
    >>> _ = fit_image(image, run, FitConfig(model="seed-small", steps=10))
    >>> big = render(run, scale=4, out=Path(tmp.name) / "big.png")
    >>> big.shape
    (64, 64, 1)

Coordinates always span the trained image's extent, so `--scale 4` evaluates the same function
on a 4x finer grid (between the training pixels), whatever the coordinate convention.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixlearn.core import runs
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.images import to_pil
from pixlearn.core.spec import ModelSpec
from pixlearn.field.coords import CoordMode, chunks, coords_of
from pixlearn.models.loading import load_model

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


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """A uint8 (H, W, C) array as a PNG, written atomically."""
    path = Path(path)
    with runs.atomic_path(path) as tmp:
        to_pil(image).save(tmp, format="PNG")
    return path


def output_size(spec: ModelSpec, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of a render: `size`, or the trained image scaled by `scale` (default 1)."""
    width, height = spec.image.width, spec.image.height
    if size is not None and scale is not None:
        raise ConfigError("give --scale or --size, not both")
    if size is not None:
        width, height = size
    elif scale is not None:
        if not scale > 0:
            raise ConfigError(f"scale must be positive, got {scale}")
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if width < 1 or height < 1:
        raise ConfigError(f"an output size needs positive sides, got {width}x{height}")
    if width * height > MAX_RENDER_PIXELS:
        raise ConfigError(f"{width}x{height} is over the {MAX_RENDER_PIXELS:,}-pixel render limit")
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
    from pixlearn.core.devices import resolve_device

    model, spec = load_model(run, device=resolve_device(device))
    if spec.task != "field" or spec.image is None:
        raise RunError(f"{run}: not an image-fit run (model task {spec.task!r})")
    width, height = output_size(spec, scale, size)
    extent = (spec.image.width, spec.image.height)
    image = render_array(model, height, width, spec.coords, extent)
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
