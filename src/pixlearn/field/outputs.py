"""A fit's run directory, beside its metrics.json and report (written by `fit.fit_image`): the model,
the figures, history.csv, the readable weights and original.png.

    >>> FIGURE_PIXELS                     # figures of larger images are drawn from block means
    262144
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from pixlearn.core.imaging import figures
from pixlearn.core.imaging.images import to_pil
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.field_records import StepRow
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.field.image import FieldImage
from pixlearn.field.rendering.renderer import write_png, write_weights


def write_original(image: FieldImage, path: Path) -> Path:
    """original.png: the source file's bytes when it is a PNG of exactly the fitted pixels
    (`image.source_png`) and has not changed since it was decoded, else the pixels encoded. Copying a large
    PNG costs a small part of encoding it (bench/README.md, "Rendering, measuring and writing a fit"); the copy
    also keeps the source's own compression and colour profile."""
    if image.source_png is not None and image.source_png.unchanged():
        with rundir.atomic_path(path) as tmp:
            shutil.copyfile(image.source_png.path, tmp)
        return path
    return write_png(image.pixels, path)


def write_outputs(
    run: rundir.RunDir,
    model: nn.Module,
    spec: ModelSpec,
    image: FieldImage,
    reconstruction: np.ndarray,
    history: list[StepRow],
    metrics: dict[str, Any],
) -> None:
    """model.safetensors + model.json, figures/side_by_side.png, figures/error_map.png,
    figures/psnr.png, history.csv, weights.json + weights.npz; the caller writes original.png and
    reconstruction.png (beside this) and metrics.json last.

    The two figures of an image over FIGURE_PIXELS are drawn 1/n the size (n x n block means, the
    error map of the mean error per block): a 16-megapixel side-by-side would be 48 megapixels.
    """
    weights.save_model(model, spec, run.path)
    _write_figures(run, spec.model, image, reconstruction, metrics["psnr"], [row.content() for row in history])
    StepRow.write_rows(run.history, history)
    write_weights(model, run.path)
    summary = f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, {metrics['params']:,} parameters"
    if "test_psnr" in metrics:
        summary += f", held-out PSNR {metrics['test_psnr']:.2f} dB"
    if "ssim_method" in metrics:
        summary += f"; {metrics['ssim_method']}"
    run.log(summary)


def step_rows(history: list[dict[str, float]], source: Path) -> list[StepRow]:
    """history.csv's rows of the fit loop's measurements (`fit_loop`'s rows hold more, step_seconds:
    history.csv keeps its own columns)."""
    columns = StepRow.columns()
    return [StepRow.from_dict({k: v for k, v in row.items() if k in columns}, source) for row in history]


def _write_figures(
    run: rundir.RunDir, model: str, image: FieldImage, reconstruction: np.ndarray, psnr: float, history: list[dict]
) -> None:
    """figures/error_map.png, side_by_side.png and psnr.png of `model`'s fit (drawn smaller for large images)."""
    shrink = math.ceil(math.sqrt(image.width * image.height / FIGURE_PIXELS))
    error = figures.error_levels(image.pixels, reconstruction, shrink=shrink)
    figures.save(figures.error_map(error, f"{model}: error per pixel"), run.figure("error_map.png"))
    titles = ["original", (model, f"PSNR {psnr:.2f} dB"), "error map"]
    small = figures.side_by_side(_shrunk(image.pixels, shrink), _shrunk(reconstruction, shrink), error, titles)
    figures.save(small, run.figure("side_by_side.png"))
    figures.save(figures.plot_psnr(history, f"{model}: PSNR while fitting"), run.figure("psnr.png"))


# Figures of larger images are drawn smaller (write_outputs): 512x512 a panel, as the compare grid
# draws them. The panels show at 352-528 pixels (3.2-4.8 inches at 110 dpi), so a 1024x1024 panel was
# matplotlib's to shrink again, time spent on pixels nobody sees
# (bench/README.md, "Rendering, measuring and writing a fit").
FIGURE_PIXELS = 2**18


def _shrunk(pixels: np.ndarray, factor: int) -> np.ndarray:
    """`pixels` reduced by `factor` with block means (Pillow's reduce), cut to whole blocks."""
    if factor <= 1:
        return pixels
    height, width = pixels.shape[0] // factor * factor, pixels.shape[1] // factor * factor
    image = to_pil(np.ascontiguousarray(pixels[:height, :width])).reduce(factor)
    arr = np.asarray(image)
    return arr[:, :, None] if arr.ndim == 2 else arr
