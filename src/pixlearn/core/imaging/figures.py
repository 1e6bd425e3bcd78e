"""Figures as PNG files. Functions take plain data and return a Figure;
`save` writes it atomically. Nothing here computes a metric. Every title, label, tick label and
caption is drawn literally (`text.figure_text`): a class named `$\\evil$` is not math text.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixlearn.core.imaging.figures import plot_history, save
    >>> fig = plot_history([{"epoch": 1, "loss": 0.6, "accuracy": 0.7}])
    >>> tmp = tempfile.TemporaryDirectory()
    >>> save(fig, Path(tmp.name) / "history.png")
    >>> (Path(tmp.name) / "history.png").read_bytes()[:4]
    b'\x89PNG'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from pixlearn.core.storage.rundir import atomic_path
from pixlearn.core.text import figure_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib is imported where a figure is drawn, not with this module, so that a command drawing
# nothing skips its import (bench/README.md, "Start-up: imports, the collector and the early decode").
# A fit imports these beside its training (`field.fit`).
MODULES = ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.colors")


def _text(value: str | Sequence[str]) -> str:
    """Text for matplotlib to draw literally; a tuple or list of strings is drawn as lines."""
    if isinstance(value, str):
        return figure_text(value)
    return "\n".join(figure_text(line) for line in value)


def _figure(figsize: tuple[float, float]) -> Figure:
    # A Figure with its own Agg canvas: layout and text extents exactly as pyplot's Agg backend gives
    # them, without pyplot, whose backend choice is process-wide (the caller's must stay as it is).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


def plot_history(history: Sequence[dict[str, float]]) -> Figure:
    """Loss and accuracy per epoch, training and validation (the seed's `plot(history)`)."""
    fig = _figure(figsize=(6.4, 5.6))
    axes = fig.subplots(2, 1, sharex=True)
    epochs = [int(h["epoch"]) for h in history]
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        for prefix, label, style in (("", "training", "o-"), ("val_", "validation", "s--")):
            # validation may skip epochs (--val-every): plot the epochs that have the figure
            points = [
                (e, float(v))
                for e, h in zip(epochs, history, strict=True)
                if (v := h.get(prefix + key)) not in (None, "")
            ]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label, markersize=4)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_xlabel("epoch")
    fig.suptitle("Training history")
    return fig


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], title: str, fmt: str = "d") -> Figure:
    """A heat map of a confusion matrix: rows are true labels, columns predicted labels."""
    k = len(classes)
    side = max(3.8, 0.6 * k + 2.2)
    fig = _figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    labels = [_text(c) for c in classes]
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = matrix.max() if matrix.size else 0
    for i in range(k):
        for j in range(k):
            value = format(matrix[i, j], fmt)
            ax.text(j, i, value, ha="center", va="center", color="white" if matrix[i, j] > top / 2 else "black")
    ax.set_title(_text(title))
    return fig


def image_grid(
    images: np.ndarray,
    titles: Sequence[str | Sequence[str]],
    captions: Sequence[str] | None = None,
    ncols: int = 4,
    title: str = "",
    title_colors: Sequence[str] | None = None,
    caption_color: str = "#c00000",
) -> Figure:
    """Images (N, H, W, C) uint8 in a grid, a title above each and an optional caption below, red by
    default (the seed writes each class probability on its mistakes this way; a gallery without
    ground truth passes a neutral colour, since red reads as "wrong"); a title given as a tuple of
    strings is drawn as that many lines."""
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig = _figure(figsize=(2.6 * ncols, 2.9 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        image = images[i]
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image)
        color = title_colors[i] if title_colors else "black"
        ax.set_title(_text(titles[i]), fontsize=9, color=color)
        if captions:
            caption = _text(captions[i])
            ax.text(
                0.5, -0.02, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7.5, color=caption_color
            )
    if title:
        fig.suptitle(_text(title))
    fig.tight_layout()
    return fig


def plot_reliability(bins: Sequence[dict[str, float]], title: str, note: str = "") -> Figure:
    """A reliability diagram: per confidence bin (`low`, `high`, `count`, `confidence`, `accuracy`) the
    accuracy as a bar against the diagonal of perfect calibration; the share of images per bin below."""
    fig = _figure(figsize=(5.2, 5.6))
    ax, share = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    low = np.array([b["low"] for b in bins], dtype=float)
    width = np.array([b["high"] - b["low"] for b in bins], dtype=float)
    accuracy = np.array([b["accuracy"] for b in bins], dtype=float)
    confidence = np.array([b["confidence"] for b in bins], dtype=float)
    counts = np.array([b["count"] for b in bins], dtype=float)
    filled = counts > 0
    ax.bar(low[filled], accuracy[filled], width[filled], align="edge", color="#4c72b0", edgecolor="white",
           label="accuracy")  # fmt: skip
    ax.bar(low[filled], (confidence - accuracy)[filled], width[filled], bottom=accuracy[filled], align="edge",
           color="#dd8452", alpha=0.45, label="gap to mean confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(_text(title))
    share.bar(low, counts / max(1.0, counts.sum()), width, align="edge", color="#999999", edgecolor="white")
    share.set_ylabel("share of images")
    share.set_xlabel(_text(note or "confidence (top class probability)"))
    fig.tight_layout()
    return fig


def plot_precision_recall(curves: Sequence[dict], title: str) -> Figure:
    """Precision against recall per class (`class`, `recall`, `precision`, `average_precision`)."""
    fig = _figure(figsize=(5.6, 4.6))
    ax = fig.subplots()
    for curve in curves:
        if curve["recall"]:
            label = f"{curve['class']} (AP {curve['average_precision']:.3f})"
            ax.plot(curve["recall"], curve["precision"], "-", linewidth=1.4, label=_text(label))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    if len(curves) <= 20:
        ax.legend(fontsize=8, loc="lower left")
    ax.set_title(_text(title))
    return fig


def plot_lr_find(
    lrs: Sequence[float],
    losses: Sequence[float],
    smoothed: Sequence[float],
    suggestion: float,
    label: str,
    title: str = "Learning-rate sweep",
) -> Figure:
    """A learning-rate sweep: each step's loss (faint) and the smoothed loss against the rate on a log axis,
    the suggested rate marked and named by `label`. The loss axis spans the smoothed loss without its last 5
    points (as fastai's plot leaves them out), so the steps that blew up do not flatten the curve."""
    fig = _figure(figsize=(6.0, 4.2))
    ax = fig.subplots()
    ax.plot(lrs, losses, "-", color="#bbbbbb", linewidth=0.8, label="loss of each step")
    ax.plot(lrs, smoothed, "-", color="#4c72b0", linewidth=1.6, label="smoothed loss")
    shown = smoothed[:-5] if len(smoothed) > 10 else smoothed
    finite = [v for v in shown if np.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        margin = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
        ax.set_ylim(low - margin, high + margin)
        at = min(range(len(lrs)), key=lambda i: abs(np.log(lrs[i]) - np.log(suggestion)))
        ax.plot([lrs[at]], [smoothed[at]], "o", color="#c00000", markersize=7, zorder=3)
    ax.axvline(suggestion, color="#c00000", linestyle="--", linewidth=1, label=_text(label))
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(_text(title))
    return fig


# ---------------------------------------------------------------------------------- image fitting


def append_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Images (H, W, C) uint8 side by side, as the seed's ``imappend(..., "x")``; grey is widened to RGB
    when any image has colour, and shorter images are padded with white at the bottom."""
    channels = max(a.shape[2] for a in images)
    height = max(a.shape[0] for a in images)
    parts = []
    for a in images:
        if a.shape[2] != channels:
            a = np.repeat(a[:, :, :1], 3, axis=2) if channels >= 3 else a
            if channels == 4 and a.shape[2] == 3:
                a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
        if a.shape[0] < height:
            a = np.concatenate([a, np.full((height - a.shape[0],) + a.shape[1:], 255, np.uint8)], axis=0)
        parts.append(a)
    return np.concatenate(parts, axis=1)


def error_levels(original: np.ndarray, reconstruction: np.ndarray, shrink: int = 1) -> np.ndarray:
    """Absolute error per pixel, the mean over channels, in levels of 255 (float32, height x width).

    shrink: n > 1 gives the mean error of each n x n block (trailing rows and columns that fill no
    whole block are left out): a map 1/n the size, for large images.
    """
    if shrink > 1:  # per band of whole blocks: temporaries of a few MB, not ~200 MB of fresh pages
        rows, cols = original.shape[0] // shrink, original.shape[1] // shrink
        band = max(1, ERROR_BAND_PIXELS // max(1, original.shape[1] * shrink))  # block rows per band
        out = np.empty((rows, cols), np.float32)
        for top in range(0, rows, band):
            cut = slice(top * shrink, min(rows, top + band) * shrink)
            error = _channel_mean_error(original[cut, : cols * shrink], reconstruction[cut, : cols * shrink])
            out[top : top + band] = error.reshape(-1, shrink, cols, shrink).mean(axis=(1, 3))
        return out
    return _channel_mean_error(original, reconstruction)


# Pixels per band of a shrunk error map: at once, a large map's first call in a process paid for
# its fresh pages (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)").
# Bands give the same values (a test compares them with the map computed whole).
ERROR_BAND_PIXELS = 2**18


def _channel_mean_error(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    # |a - b| in uint8 (max - min) and the channels added one by one in float32 (exact for these
    # integers): less time and memory than int16 differences averaged along the channel axis
    # (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)")
    difference = np.maximum(original, reconstruction)
    difference -= np.minimum(original, reconstruction)
    error = difference[:, :, 0].astype(np.float32)
    for channel in range(1, difference.shape[2]):
        error += difference[:, :, channel]
    error /= difference.shape[2]
    return error


def error_top(errors: Sequence[np.ndarray]) -> float:
    """The error drawn brightest, in levels: the 99th percentile of all maps, so that a handful of
    outliers does not turn the rest black; at least 1 level."""
    return max(1.0, float(np.percentile(np.concatenate([e.ravel() for e in errors]), 99)))


def error_image(
    original: np.ndarray, reconstruction: np.ndarray, top: float | None = None, shrink: int = 1
) -> np.ndarray:
    """Absolute error per pixel (mean over channels) as an RGB uint8 heat map (magma), without a scale
    (`side_by_side` and `comparison_figure` draw one).

    top: the error drawn brightest, in [0, 1] units; default the 99th percentile.
    shrink: as `error_levels`.
    """
    error = error_levels(original, reconstruction, shrink) / 255.0
    top = float(np.percentile(error, 99)) if top is None else top
    np.clip(error / max(top, 1e-6), 0.0, 1.0, out=error)
    # a uint8 colour lookup, not the ~1 GB of float64 RGBA that the colormap returns by default
    from matplotlib import colormaps

    return np.ascontiguousarray(colormaps["magma"](error, bytes=True)[:, :, :3])


ERROR_LABEL = "|original - reconstruction|, levels of 255"


def _show(ax, image: np.ndarray, title: str | Sequence[str]) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    ax.set_title(_text(title), fontsize=9)
    ax.axis("off")


def _panel_size(image: np.ndarray, width: float = 2.6) -> tuple[float, float]:
    """A panel's inches: `width` wide, as tall as the image's aspect asks, plus room for a title."""
    height, cols = image.shape[:2]
    return width, width * height / max(1, cols) + 0.5


def side_by_side(
    original: np.ndarray, reconstruction: np.ndarray, error: np.ndarray, titles: Sequence[str | Sequence[str]]
) -> Figure:
    """Original, reconstruction and error map (`error_levels`) in a row, each titled, with the error's
    colour scale."""
    w, h = _panel_size(original, 3.2)
    fig = _figure(figsize=(3 * w + 0.6, h))
    axes = fig.subplots(1, 3)
    _show(axes[0], original, titles[0])
    _show(axes[1], reconstruction, titles[1])
    shown = axes[2].imshow(error, cmap="magma", vmin=0, vmax=error_top([error]), interpolation="nearest")
    axes[2].set_title(_text(titles[2]), fontsize=9)
    axes[2].axis("off")
    bar = fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.03, extend="max")
    bar.set_label(ERROR_LABEL, fontsize=8)
    return fig


def error_map(error: np.ndarray, title: str) -> Figure:
    """One error map (`error_levels`) with its colour scale."""
    w, h = _panel_size(error[:, :, None], 4.8)
    fig = _figure(figsize=(w + 1.0, h))
    ax = fig.subplots()
    shown = ax.imshow(error, cmap="magma", vmin=0, vmax=error_top([error]), interpolation="nearest")
    ax.set_title(_text(title), fontsize=10)
    ax.axis("off")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03, extend="max").set_label(ERROR_LABEL, fontsize=8)
    return fig


def comparison_figure(
    original: np.ndarray, reconstructions: Sequence[np.ndarray], titles: Sequence[str | Sequence[str]]
) -> Figure:
    """Two rows and no empty cell: the original then each reconstruction (titled); below, each error
    map on one shared colour scale, drawn below the original. Large images are shown subsampled."""
    from matplotlib.colors import PowerNorm

    step = max(1, int(np.ceil(np.sqrt(original.shape[0] * original.shape[1] / 2**18))))
    original = original[::step, ::step]
    images = [r[::step, ::step] for r in reconstructions]
    errors = [error_levels(original, r) for r in images]
    top = error_top(errors) if errors else 1.0
    w, h = _panel_size(original, 2.4)
    fig = _figure(figsize=(w * (1 + len(images)), 2 * h))
    axes = fig.subplots(2, 1 + len(images), squeeze=False)
    _show(axes[0, 0], original, "original")
    shown = None
    for i, (image, error, title) in enumerate(zip(images, errors, titles, strict=True), start=1):
        _show(axes[0, i], image, title)
        # a square-root scale: one scale for every map, and the best models' small errors still show
        # beside the seed presets' large ones
        norm = PowerNorm(0.5, vmin=0, vmax=top)
        shown = axes[1, i].imshow(error, cmap="magma", norm=norm, interpolation="nearest")
        axes[1, i].set_title(_text("error map"), fontsize=8)
        axes[1, i].axis("off")
    axes[1, 0].axis("off")
    if shown is not None:  # the colour scale fills the cell under the original
        bar = fig.colorbar(shown, cax=axes[1, 0].inset_axes((0.42, 0.05, 0.14, 0.85)), extend="max")
        bar.set_label(ERROR_LABEL + " (square-root scale)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.05, hspace=0.12)
    return fig


def plot_psnr(history: Sequence[dict[str, float]], title: str = "PSNR while fitting") -> Figure:
    """PSNR (dB) over training seconds, with the step on a top axis; held-out pixels dashed when present."""
    fig = _figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    seconds = [float(h["seconds"]) for h in history]
    ax.plot(seconds, [float(h["psnr"]) for h in history], "-", label="training pixels")
    if any(h.get("test_psnr") not in (None, "") for h in history):
        ax.plot(seconds, [float(h["test_psnr"]) for h in history], "--", label="held-out pixels")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(_text(title))
    ax.grid(alpha=0.3)
    ax.legend()
    steps = [float(h["step"]) for h in history]
    if len(seconds) > 1 and seconds[-1] > 0:
        to_step = (lambda s: np.interp(s, seconds, steps), lambda n: np.interp(n, steps, seconds))
        top = ax.secondary_xaxis("top", functions=to_step)
        top.set_xlabel("step")
    return fig
