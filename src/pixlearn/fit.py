"""Fitting one image as a function of its pixel coordinates: the one loop every field model uses.

    >>> from pixlearn.fit import FitConfig, fit_image
    >>> result = fit_image("photo.jpg", "runs/siren", FitConfig(model="siren", time="30s"))  # doctest: +SKIP
    >>> round(result.metrics["psnr"], 1)                                                   # doctest: +SKIP
    31.2

Shape of a fit: decode the image once to uint8 (`images.py`), pick the pixels it may train on
(all of them, or every other pixel in held-out mode, `coords.py`), then step: draw a batch of pixel
numbers, compute their coordinates and [0, 1] targets on the fly, take an Adam step; every
`log_every` seconds of training measure PSNR (the clock is paused while measuring). At the end
render every pixel in chunks and write the run directory (`runs.py`, layout in `write_outputs`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import figures, runs
from .coords import (
    COORD_MODES,
    CoordMode,
    EvenPixels,
    PixelSet,
    coords_of,
    epoch_batches,
    heldout_test_mask,
    random_batches,
)
from .devices import choose_threads, keep_freed_memory, resolve_device, thread_count
from .images import image_info, normalize_mode, open_image, resize
from .losses import mse, psnr_from_mse
from .models import create_model, get_entry
from .progress import Silent, make_progress
from .render import final_metrics, predict_ids, render_array, write_png, write_weights
from .report import write_report

SCHEDULES: tuple[str, ...] = ("constant", "cosine")
FIELD_COLORS: tuple[str, ...] = ("auto", "grayscale", "rgb", "rgba")


@dataclass(frozen=True)
class Preset:
    """A model's training defaults, used for every FitConfig field left at None."""

    lr: float  # Adam learning rate
    batch: int  # pixels per step; 0 = every training pixel each step (full batch)
    coords: CoordMode
    steps: int | None = None  # default length when no --epochs/--steps/--time is given
    epochs: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"


PRESETS: dict[str, Preset] = {
    # The seed: Keras' Adam defaults (lr 1e-3), batch 128, raw 1-based pixel coordinates, 20/20/100 epochs.
    "seed-linear": Preset(1e-3, 128, "pixel", epochs=20),
    "seed-small": Preset(1e-3, 128, "pixel", epochs=20),
    "seed-deep": Preset(1e-3, 128, "pixel", epochs=100),
    # SIREN's image protocol: Adam 1e-4, full batch (every pixel every step), 500 steps for the anchor.
    "siren": Preset(1e-4, 0, "normalized", steps=500),
    # Fourier features into a SIREN (the FFSiren anchor uses full batches). Batch 2^12 here: a full-batch
    # step of this 330k-parameter network takes seconds on a CPU, and in 60 s of the held-out protocol
    # (astronaut 512x512) random 4096-pixel batches reached 28.3 dB on the unseen pixels.
    "fourier-siren": Preset(1e-4, 2**12, "normalized", steps=5000),
    # Tancik et al.'s 2D regression notebook: Adam 1e-3, full batch, 2,000 steps.
    "fourier": Preset(1e-3, 0, "normalized", steps=2000),
    # instant-ngp's image config: Adam lr 1e-2, betas (0.9, 0.99), eps 1e-15 (the tiny eps matters:
    # hash entries hit rarely get tiny second moments, and 1e-8 would damp their updates).
    # Batch 2^12, not instant-ngp's 2^18: on a CPU a step costs time in proportion to its pixels, and on
    # the 256x256 anchor sixteen 2^12 steps gain more than one full-image step (30 s: full batch 25.7 dB,
    # 2^14 38.7 dB, 2^12 40.0 dB). A cosine decay to 1% adds ~0.6 dB at the end of a time budget and
    # reaches 36.8 dB sooner (bench/bench_fit.py, bench/README.md).
    "hashgrid": Preset(1e-2, 2**12, "normalized", steps=3000, betas=(0.9, 0.99), eps=1e-15, schedule="cosine"),
}
DEFAULT_PRESET = Preset(1e-3, 0, "normalized", steps=1000)


@dataclass
class FitConfig:
    """Every option of an image fit; saved as config.json beside the outputs. None = the model's preset."""

    model: str = "siren"  # a registered field model (pixlearn models)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor arguments
    # length: the first limit reached stops the fit
    epochs: int | None = None  # shuffled passes over the training pixels (the seed's epochs)
    steps: int | None = None  # optimiser steps
    time: str | float | None = None  # training-time budget: "30s", "2m", "1h" or seconds
    # batches and optimiser
    batch: int | None = None  # pixels per step; 0 = the full image every step
    lr: float | None = None  # Adam learning rate
    schedule: str | None = None  # constant | cosine (decays to 1% over the steps or the time budget)
    # data
    coords: str = "auto"  # auto (the model's) | normalized ([-1, 1]) | pixel (1-based indices)
    color: str = "auto"  # auto (grey stays grey, alpha kept) | grayscale | rgb | rgba
    size: tuple[int, int] | None = None  # (width, height) to resize the image to before fitting
    heldout: bool = False  # train on every other pixel, report PSNR on the unseen ones
    # run
    seed: int = 0  # initialisation and batch order
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads; 0 = auto (1 unless the machine is idle, see devices.choose_threads)
    log_every: float = 0.5  # seconds of training between PSNR measurements (the clock pauses meanwhile)
    eval_pixels: int = 262_144  # PSNR while training uses at most this many pixels (a fixed sample)

    def preset(self) -> Preset:
        return PRESETS.get(self.model, DEFAULT_PRESET)

    def resolved(self) -> FitConfig:
        """A copy with every None / auto filled from the model's preset, and checked."""
        get_entry(self.model, "field")
        preset = self.preset()
        config = dataclasses.replace(self, model_kwargs=dict(self.model_kwargs))
        if config.lr is None:
            config.lr = preset.lr
        if config.batch is None:
            config.batch = preset.batch
        if config.schedule is None:
            config.schedule = preset.schedule
        if config.coords == "auto":
            config.coords = preset.coords
        if config.epochs is None and config.steps is None and config.time is None:
            config.epochs, config.steps = preset.epochs, preset.steps
        config.check()
        return config

    def check(self) -> None:
        if self.coords not in (*COORD_MODES, "auto"):
            raise ValueError(f"unknown coords {self.coords!r}; choose auto, {', '.join(COORD_MODES)}")
        if self.color not in FIELD_COLORS:
            raise ValueError(f"unknown color {self.color!r}; choose one of {', '.join(FIELD_COLORS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "steps", "batch"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "batch" else 1):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.time is not None:
            parse_duration(self.time)

    @property
    def budget_seconds(self) -> float | None:
        return None if self.time is None else parse_duration(self.time)


def parse_duration(text: str | float) -> float:
    """ "30s" / "2m" / "1.5h" / "45" -> seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|sec|m|min|h)?\s*", str(text).lower())
        if not match:
            raise ValueError(f"cannot read the duration {text!r}; write it as 30s, 2m or 1h")
        seconds = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"a time budget must be positive, got {text!r}")
    return seconds


# ---------------------------------------------------------------------------------- the image


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

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "mode": self.mode,
            "frames": self.frames,
        }


_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def load_field_image(
    source: str | os.PathLike | bytes | np.ndarray, color: str = "auto", size: tuple[int, int] | None = None
) -> FieldImage:
    """Decode a path, URL, bytes or uint8 array for fitting; size is (width, height)."""
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else source[:, :, None]
        if arr.dtype != np.uint8 or arr.shape[2] not in _MODES:
            raise ValueError(f"an image array must be uint8 with 1, 3 or 4 channels; got {arr.dtype} {arr.shape}")
        image, name, frames = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr), "<array>", 1
    else:
        name = "<bytes>" if isinstance(source, bytes) else str(source)
        image = open_image(source)
        frames = image_info(image).frames
    keep_alpha = color == "rgba" or (color == "auto" and ("A" in image.getbands() or "transparency" in image.info))
    image = normalize_mode(image, "rgba" if keep_alpha else color)  # type: ignore[arg-type]
    if size is not None:
        image = resize(image, (size[1], size[0]), "squash")
    arr = np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy shares it
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return FieldImage(np.ascontiguousarray(arr), name, _MODES[arr.shape[2]], frames)


# ---------------------------------------------------------------------------------- evaluation


def psnr_of(model: nn.Module, target: torch.Tensor, ids: torch.Tensor, image: FieldImage, mode: CoordMode) -> float:
    prediction = predict_ids(model, ids, image.height, image.width, mode)
    truth = target[ids.to(target.device)].to(prediction.device, torch.float32) / 255.0
    return psnr_from_mse(float(mse(prediction, truth)))


# ---------------------------------------------------------------------------------- the loop


@dataclass
class FitLoopResult:
    history: list[dict[str, float]]
    steps: int
    seconds: float  # training time only (measurements excluded)


def learning_rate(config: FitConfig, fraction: float) -> float:
    """The schedule at `fraction` (0..1) of the fit: constant, or cosine down to 1% of lr."""
    assert config.lr is not None
    if config.schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0))))
    return config.lr


def make_optimizer(model: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    preset = config.preset()
    return torch.optim.Adam(model.parameters(), lr=config.lr, betas=preset.betas, eps=preset.eps)


def _sample_ids(pixels: PixelSet, limit: int, generator: torch.Generator) -> torch.Tensor:
    if pixels.count <= limit:
        return pixels.flat(torch.arange(pixels.count))
    # drawn with replacement: a permutation of a 16-megapixel image would cost 128 MB for a PSNR estimate
    return pixels.flat(torch.randint(pixels.count, (limit,), generator=generator))


def _test_ids(height: int, width: int, limit: int, generator: torch.Generator) -> torch.Tensor:
    if height * width <= limit * 4 // 3:
        return torch.from_numpy(np.flatnonzero(heldout_test_mask(height, width)))
    # a large image: draw pixel numbers at random and keep the held-out ones (3 in 4 are)
    ids = torch.randint(height * width, (2 * limit,), generator=generator)
    rows, cols = ids // width, ids % width
    return ids[(rows % 2 == 1) | (cols % 2 == 1)][:limit]


def fit_loop(
    model: nn.Module,
    image: FieldImage,
    config: FitConfig,
    progress: Silent | None = None,
    log: Any = None,
) -> FitLoopResult:
    """Train `model` on `image` under the resolved `config`; returns the logged history.

    Memory: the image stays uint8 on the device; each step builds coordinates and float targets
    for its batch only, so a 16-megapixel image costs its bytes plus one batch.
    """
    progress = progress or Silent()
    device = next(model.parameters()).device
    mode: CoordMode = config.coords  # type: ignore[assignment]
    target = torch.from_numpy(image.pixels.reshape(-1, image.channels)).to(device)
    pixels = EvenPixels(image.height, image.width) if config.heldout else PixelSet(image.height, image.width)
    generator = torch.Generator().manual_seed(config.seed)
    eval_ids = _sample_ids(pixels, config.eval_pixels, generator)
    test_ids = _test_ids(image.height, image.width, config.eval_pixels, generator) if config.heldout else None
    batch = pixels.count if not config.batch or config.batch >= pixels.count else config.batch
    optimizer = make_optimizer(model, config)
    budget = config.budget_seconds
    steps_per_epoch = math.ceil(pixels.count / batch)
    max_steps = min(x for x in (config.steps, config.epochs and config.epochs * steps_per_epoch, 10**12) if x)

    def batches():
        if batch == pixels.count:  # full batch: build the coordinates and targets once
            ids = pixels.flat(torch.arange(pixels.count))
            full = (coords_of(ids, image.height, image.width, mode).to(device), ids.to(device))
            while True:
                yield full
        source = (
            (b for _ in range(config.epochs or 1) for b in epoch_batches(pixels, batch, generator))
            if config.epochs
            else random_batches(pixels, batch, generator)
        )
        for ids in source:
            yield coords_of(ids, image.height, image.width, mode).to(device), ids.to(device)

    def measure(step: int, seconds: float, losses: list[float]) -> dict[str, float]:
        model.eval()
        row = {"step": step, "seconds": round(seconds, 4), "loss": float(np.mean(losses)) if losses else float("nan")}
        row["psnr"] = psnr_of(model, target, eval_ids, image, mode)
        if test_ids is not None:
            row["test_psnr"] = psnr_of(model, target, test_ids, image, mode)
        model.train()
        return row

    history: list[dict[str, float]] = []
    progress.task(f"fit {config.model}", total=max_steps if max_steps < 10**12 else None)
    model.train()
    step, seconds, losses, last_log, pending = 0, 0.0, [], 0.0, 0
    for coords, ids in batches():
        if step >= max_steps or (budget is not None and seconds >= budget):
            break
        started = time.perf_counter()
        fraction = seconds / budget if budget is not None else step / max_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, fraction)
        truth = target[ids].to(torch.float32) / 255.0
        loss = mse(model(coords), truth)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # time the step, not its launch
        seconds += time.perf_counter() - started
        step += 1
        pending += 1
        losses.append(loss.item())
        if seconds - last_log >= config.log_every or step == 1:
            history.append(measure(step, seconds, losses))
            progress.advance(pending, psnr=history[-1]["psnr"], loss=history[-1]["loss"])
            losses, last_log, pending = [], seconds, 0
    if not history or history[-1]["step"] != step:
        history.append(measure(step, seconds, losses))
        progress.advance(pending, psnr=history[-1]["psnr"], loss=history[-1]["loss"])
    model.eval()
    if log is not None:
        log(f"trained {step} steps in {seconds:.2f} s; PSNR {history[-1]['psnr']:.2f} dB")
    return FitLoopResult(history, step, seconds)


# ---------------------------------------------------------------------------------- a fit, end to end


@dataclass
class FitResult:
    run: runs.RunDir
    model: nn.Module
    spec: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    reconstruction: np.ndarray  # uint8 (height, width, channels)


def build_model(config: FitConfig, channels: int) -> nn.Module:
    torch.manual_seed(config.seed)  # the initialisation depends on the seed only
    return create_model(config.model, "field", in_features=2, out_features=channels, **config.model_kwargs)


def model_spec(config: FitConfig, image: FieldImage) -> dict[str, Any]:
    return {
        "model": config.model,
        "task": "field",
        "kwargs": {"in_features": 2, "out_features": image.channels, **config.model_kwargs},
        "coords": config.coords,
        "image": image.describe(),
    }


def fit_image(
    source: str | os.PathLike | bytes | np.ndarray,
    out: str | os.PathLike,
    config: FitConfig | None = None,
    progress: bool | Silent = False,
    overwrite: bool = False,
) -> FitResult:
    """Fit one image with `config.model` and write the run directory `out` (layout: `write_outputs`).

    >>> import numpy as np
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)
    >>> result = fit_image(image, "runs/gradient", FitConfig(model="siren", steps=20))  # doctest: +SKIP
    >>> sorted(result.metrics)[:3]                                                       # doctest: +SKIP
    ['bytes', 'model', 'params']
    """
    config = (config or FitConfig()).resolved()
    run = runs.RunDir(out).prepare(overwrite=overwrite)
    image = load_field_image(source, config.color, config.size)
    runs.write_json(run.config, dataclasses.asdict(config))
    run.log(f"fitting {image.source} ({image.width}x{image.height}, {image.mode}) with {config.model}")
    device = resolve_device(config.device)
    model = build_model(config, image.channels).to(device)
    reporter = progress if isinstance(progress, Silent) else make_progress(progress)
    started = time.perf_counter()
    threads = choose_threads(config.threads, adapt_to_load=True) if device.type == "cpu" else torch.get_num_threads()
    keep_freed_memory()
    run.log(f"device {device}, {threads} CPU thread(s)")
    with reporter, thread_count(threads):
        loop = fit_loop(model, image, config, reporter, log=run.log)
        spec = model_spec(config, image)
        reconstruction = render_array(model, image.height, image.width, config.coords)  # type: ignore[arg-type]
        metrics = final_metrics(model, image, reconstruction, config, loop)
    metrics["threads"] = threads
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_outputs(run, model, spec, image, reconstruction, loop.history, metrics)
    write_report(run.path)
    return FitResult(run, model, spec, metrics, loop.history, reconstruction)


def write_outputs(
    run: runs.RunDir,
    model: nn.Module,
    spec: dict[str, Any],
    image: FieldImage,
    reconstruction: np.ndarray,
    history: list[dict[str, float]],
    metrics: dict[str, Any],
) -> None:
    """model.safetensors + model.json, original.png, reconstruction.png, figures/side_by_side.png,
    figures/error_map.png, figures/psnr.png, history.csv, weights.json + weights.npz; metrics.json last."""
    runs.save_model(model, spec, run.path)
    write_png(image.pixels, run.path / "original.png")
    write_png(reconstruction, run.path / "reconstruction.png")
    error = figures.error_image(image.pixels, reconstruction)
    write_png(error, run.figure("error_map.png"))
    write_png(figures.append_images([image.pixels, reconstruction, error]), run.figure("side_by_side.png"))
    figures.save(figures.plot_psnr(history, f"{spec['model']}: PSNR while fitting"), run.figure("psnr.png"))
    columns = ["step", "seconds", "loss", "psnr"] + (["test_psnr"] if "test_psnr" in history[0] else [])
    runs.write_csv(run.history, columns, [[row[c] for c in columns] for row in history])
    write_weights(model, run.path)
    summary = f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, {metrics['params']:,} parameters"
    if "test_psnr" in metrics:
        summary += f", held-out PSNR {metrics['test_psnr']:.2f} dB"
    run.log(summary)
    runs.write_json(run.metrics, metrics)
