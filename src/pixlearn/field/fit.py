"""Fitting one image as a function of its pixel coordinates: the one loop every field model uses.

    >>> from pixlearn.field.config import FitConfig
    >>> from pixlearn.field.fit import fit_image
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
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.core import figures, runs
from pixlearn.core.devices import choose_threads, freed_memory_kept, resolve_device, thread_count
from pixlearn.core.progress import Silent, make_progress
from pixlearn.core.schedules import warmup_cosine
from pixlearn.core.spec import ModelSpec
from pixlearn.field.config import FitConfig
from pixlearn.field.coords import (
    CoordMode,
    EvenPixels,
    PixelSet,
    chunks,
    coords_of,
    heldout_test_mask,
    random_batches,
    shuffled_pixel_batches,
)
from pixlearn.field.image import FieldImage, load_field_image
from pixlearn.field.metrics import count_parameters, mse, psnr_from_mse, squared_error_sum, ssim, stored_bytes
from pixlearn.field.rendering import RENDER_CHUNK, predict_ids, render_array, write_png, write_weights
from pixlearn.models.registry import create_model
from pixlearn.report import write_report

# ---------------------------------------------------------------------------------- evaluation


def psnr_of(model: nn.Module, target: torch.Tensor, ids: torch.Tensor, image: FieldImage, mode: CoordMode) -> float:
    """PSNR while training: the mean squared error of the sampled pixels `ids` on the device (float32)."""
    prediction = predict_ids(model, ids, image.height, image.width, mode)
    truth = target[ids.to(target.device)].to(prediction.device, torch.float32) / 255.0
    return psnr_from_mse(float(mse(prediction, truth)))


def exact_psnr(
    model: nn.Module, target: torch.Tensor, id_chunks: Iterable[torch.Tensor], image: FieldImage, mode: CoordMode
) -> float:
    """PSNR over every pixel of `id_chunks` (the uint8 `target` on the CPU), the squared errors summed in float64."""
    total, count = 0.0, 0
    for ids in id_chunks:
        prediction = predict_ids(model, ids, image.height, image.width, mode).cpu()
        total, count = total + squared_error_sum(prediction, target[ids].float() / 255.0), count + prediction.numel()
    return psnr_from_mse(total / count)


# ---------------------------------------------------------------------------------- the loop


@dataclass
class FitLoopResult:
    history: list[dict[str, float]]
    steps: int
    seconds: float  # training time only (measurements excluded)


def learning_rate(config: FitConfig, fraction: float) -> float:
    """The schedule at `fraction` (0..1) of the fit: constant, or cosine down to 1% of lr."""
    assert config.lr is not None
    return warmup_cosine(fraction, 1, config.lr, floor=0.01, decay=config.schedule == "cosine")


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

    batches = _pixel_batches(pixels, batch, config, image, device, generator)
    measure = _PsnrProbe(model, target, image, mode, eval_ids, test_ids)
    history: list[dict[str, float]] = []
    progress.task(f"fit {config.model}", total=max_steps if max_steps < 10**12 else None)
    model.train()
    step, seconds, losses, last_log, pending = 0, 0.0, [], 0.0, 0
    for coords, ids in batches:
        if step >= max_steps or (budget is not None and seconds >= budget):
            break
        started = time.perf_counter()
        fraction = seconds / budget if budget is not None else step / max_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, fraction)
        loss = _adam_step(model, optimizer, coords, target[ids].to(torch.float32) / 255.0)
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


def _adam_step(model: nn.Module, optimizer: torch.optim.Optimizer, coords: torch.Tensor, truth: torch.Tensor):
    loss = mse(model(coords), truth)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def _pixel_batches(
    pixels: PixelSet, batch: int, config: FitConfig, image: FieldImage, device: torch.device, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(coordinates, pixel numbers) per step: the full image every step, shuffled epochs, or random draws."""
    mode: CoordMode = config.coords  # type: ignore[assignment]
    if batch == pixels.count:  # full batch: build the coordinates and targets once
        ids = pixels.flat(torch.arange(pixels.count))
        full = (coords_of(ids, image.height, image.width, mode).to(device), ids.to(device))
        while True:
            yield full
    source = (
        (b for _ in range(config.epochs or 1) for b in shuffled_pixel_batches(pixels, batch, generator))
        if config.epochs
        else random_batches(pixels, batch, generator)
    )
    for ids in source:
        yield coords_of(ids, image.height, image.width, mode).to(device), ids.to(device)


class _PsnrProbe:
    """One row of the fit's history: mean loss since the last row, PSNR on a fixed pixel sample
    (and on held-out pixels), measured in eval mode."""

    def __init__(
        self,
        model: nn.Module,
        target: torch.Tensor,
        image: FieldImage,
        mode: CoordMode,
        eval_ids: torch.Tensor,
        test_ids: torch.Tensor | None,
    ):
        self.model, self.target, self.image, self.mode = model, target, image, mode
        self.eval_ids, self.test_ids = eval_ids, test_ids

    def __call__(self, step: int, seconds: float, losses: list[float]) -> dict[str, float]:
        self.model.eval()
        row = {"step": step, "seconds": round(seconds, 4), "loss": float(np.mean(losses)) if losses else float("nan")}
        row["psnr"] = psnr_of(self.model, self.target, self.eval_ids, self.image, self.mode)
        if self.test_ids is not None:
            row["test_psnr"] = psnr_of(self.model, self.target, self.test_ids, self.image, self.mode)
        self.model.train()
        return row


def final_metrics(
    model: nn.Module, image: FieldImage, reconstruction: np.ndarray, config: FitConfig, loop: FitLoopResult
) -> dict[str, Any]:
    """PSNR from the float outputs on every training pixel (held-out: and every unseen one), SSIM at the end."""
    mode: CoordMode = config.coords  # type: ignore[assignment]
    target = torch.from_numpy(image.pixels.reshape(-1, image.channels))
    pixels = EvenPixels(image.height, image.width) if config.heldout else PixelSet(image.height, image.width)
    metrics: dict[str, Any] = {
        "model": config.model,
        "psnr": exact_psnr(model, target, (pixels.flat(p) for p in chunks(pixels.count, RENDER_CHUNK)), image, mode),
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
        metrics["test_psnr"] = exact_psnr(model, target, ids.split(RENDER_CHUNK), image, mode)
        # the odd rows and columns form an image made only of unseen pixels
        metrics["test_ssim"] = ssim(image.pixels[1::2, 1::2], reconstruction[1::2, 1::2])
        metrics["train_pixels"] = pixels.count
        metrics["test_pixels"] = len(ids)
    return metrics


# ---------------------------------------------------------------------------------- a fit, end to end


@dataclass
class FitResult:
    run: runs.RunDir
    model: nn.Module
    spec: ModelSpec
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    reconstruction: np.ndarray  # uint8 (height, width, channels)


def build_model(config: FitConfig, channels: int) -> nn.Module:
    torch.manual_seed(config.seed)  # the initialisation depends on the seed only
    return create_model(config.model, "field", in_features=2, out_features=channels, **config.model_kwargs)


def model_spec(config: FitConfig, image: FieldImage) -> ModelSpec:
    return ModelSpec.field(config.model, image.describe(), config.coords, **config.model_kwargs)


def fit_image(
    source: str | os.PathLike | bytes | np.ndarray,
    out: str | os.PathLike,
    config: FitConfig | None = None,
    progress: bool | Silent = False,
    overwrite: bool = False,
) -> FitResult:
    """Fit one image with `config.model` and write the run directory `out` (layout: `write_outputs`).

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # a 16x16 grey gradient
    >>> result = fit_image(image, Path(tmp.name) / "gradient", FitConfig(model="siren", steps=20))
    >>> result.metrics["steps"], result.reconstruction.shape
    (20, (16, 16, 1))
    >>> (Path(tmp.name) / "gradient" / "model.safetensors").is_file()
    True
    """
    config = (config or FitConfig()).resolved()
    run = runs.RunDir(out)
    with run.lock():  # one writer at a time (core.locks): a second fit into `out` is refused
        run.prepare(overwrite=overwrite)
        with freed_memory_kept():
            return _fit_into(run, source, config, progress)


def _fit_into(
    run: runs.RunDir, source: str | os.PathLike | bytes | np.ndarray, config: FitConfig, progress: bool | Silent
) -> FitResult:
    image = load_field_image(source, config.color, config.size)
    runs.write_json(run.config, dataclasses.asdict(config))
    run.log(f"fitting {image.source} ({image.width}x{image.height}, {image.mode}) with {config.model}")
    device = resolve_device(config.device)
    model = build_model(config, image.channels).to(device)
    reporter = progress if isinstance(progress, Silent) else make_progress(progress)
    started = time.perf_counter()
    threads = choose_threads(config.threads, adapt_to_load=True) if device.type == "cpu" else torch.get_num_threads()
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
    spec: ModelSpec,
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
    figures.save(figures.plot_psnr(history, f"{spec.model}: PSNR while fitting"), run.figure("psnr.png"))
    columns = ["step", "seconds", "loss", "psnr"] + (["test_psnr"] if "test_psnr" in history[0] else [])
    runs.write_csv(run.history, columns, [[row[c] for c in columns] for row in history])
    write_weights(model, run.path)
    summary = f"PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, {metrics['params']:,} parameters"
    if "test_psnr" in metrics:
        summary += f", held-out PSNR {metrics['test_psnr']:.2f} dB"
    run.log(summary)
    runs.write_json(run.metrics, metrics)
