"""Fitting one image as a function of its pixel coordinates: the one loop every field model uses.

    >>> from pixlearn.field.config import FitConfig
    >>> from pixlearn.field.fit import fit_image
    >>> result = fit_image("photo.jpg", "runs/siren", FitConfig(model="siren", time="30s"))  # doctest: +SKIP
    >>> round(result.metrics.psnr, 1)                                                      # doctest: +SKIP
    31.2

Shape of a fit: decode the image once to uint8 (`images.py`), pick the pixels it may train on
(all of them, or every other pixel in held-out mode, `coords.py`), then step: draw a batch of pixel
numbers, compute their coordinates and [0, 1] targets on the fly, take an Adam step; every
`log_every` seconds of training measure PSNR on a fixed sample. A `time` budget is wall time of the
loop, measurements included. At the end render every pixel in bands (summing the squared errors on
the way: PSNR over every pixel), measure SSIM and write the run directory (`rundir.py`, layout in
`outputs.write_outputs`). Each phase's seconds go to metrics.json (`timing.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.core.devices import (
    choose_threads,
    freed_memory_kept,
    import_soon,
    resolve_device,
    thread_count,
)
from pixlearn.core.imaging import figures
from pixlearn.core.optim import Adam
from pixlearn.core.progress import SILENT, Progress, make_progress
from pixlearn.core.schedules import warmup_cosine
from pixlearn.core.storage import rundir
from pixlearn.core.storage.field_records import FitMetrics, StepRow
from pixlearn.core.storage.records import RunConfig
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.field.config import FitConfig
from pixlearn.field.coords import (
    CoordMode,
    EvenPixels,
    PixelSet,
    coords_of,
    heldout_test_mask,
    random_batches,
    shuffled_pixel_batches,
)
from pixlearn.field.image import FieldImage, load_field_image
from pixlearn.field.metrics import count_parameters, mse, psnr_from_mse, ssim_measured, stored_bytes
from pixlearn.field.outputs import step_rows, write_original, write_outputs
from pixlearn.field.rendering.plan import final_render, plan_render, say_render_cost
from pixlearn.field.rendering.renderer import ScoredRender, predict_ids, write_png
from pixlearn.field.timing import FitTiming, Phases, phases_line
from pixlearn.models.registry import create_model
from pixlearn.report import write_report

# ---------------------------------------------------------------------------------- evaluation


def psnr_of(model: nn.Module, target: torch.Tensor, ids: torch.Tensor, image: FieldImage, mode: CoordMode) -> float:
    """PSNR while training: the mean squared error of the sampled pixels `ids` on the device (float32)."""
    prediction = predict_ids(model, ids, image.height, image.width, mode)
    truth = target[ids.to(target.device)].to(prediction.device, torch.float32) / 255.0
    return psnr_from_mse(float(mse(prediction, truth)))


# ---------------------------------------------------------------------------------- the loop


@dataclass
class FitLoopResult:
    history: list[dict[str, float]]
    steps: int
    seconds: float  # wall time of the loop, PSNR measurements included: what a time budget bounds
    step_seconds: float = 0.0  # the optimiser steps alone (measurements and batch drawing excluded)
    eval_seconds: float = 0.0  # the PSNR measurements


# A measurement waits at least this many times its own duration after the previous one, so that
# measuring takes at most a twentieth of a time budget whatever the model and image (a 262,144-pixel
# sample of a large SIREN costs seconds).
EVAL_SPACING = 19


def learning_rate(config: FitConfig, fraction: float) -> float:
    """The schedule at `fraction` (0..1) of the fit: constant, or cosine down to 1% of lr."""
    assert config.lr is not None
    return warmup_cosine(fraction, 1, config.lr, floor=0.01, decay=config.schedule == "cosine")


def make_optimizer(model: nn.Module, config: FitConfig) -> Adam:
    """torch's Adam with the preset's betas and eps (`core.optim`: without torch.optim's wrapper,
    whose first call imports torch._dynamo)."""
    preset = config.preset()
    return Adam(model.parameters(), lr=config.lr, betas=preset.betas, eps=preset.eps)


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
    progress: Progress = SILENT,
    log: Any = None,
    optimizer: Adam | None = None,
) -> FitLoopResult:
    """Train `model` on `image` under the resolved `config`; returns the logged history.

    A time budget is the loop's wall time, PSNR measurements included (`_LoopClock.would_cross`).
    Memory: the image stays uint8 on the device; each step builds coordinates and float targets for
    its batch only (a 16-megapixel image: its bytes plus a batch).
    """
    optimizer = make_optimizer(model, config) if optimizer is None else optimizer
    clock = _LoopClock()
    device = next(model.parameters()).device
    mode: CoordMode = config.coords  # type: ignore[assignment]
    target = torch.from_numpy(image.pixels.reshape(-1, image.channels)).to(device)
    pixels = EvenPixels(image.height, image.width) if config.heldout else PixelSet(image.height, image.width)
    generator = torch.Generator().manual_seed(config.seed)
    eval_ids = _sample_ids(pixels, config.eval_pixels, generator)
    test_ids = _test_ids(image.height, image.width, config.eval_pixels, generator) if config.heldout else None
    batch = pixels.count if not config.batch or config.batch >= pixels.count else config.batch
    budget = config.budget_seconds
    steps_per_epoch = math.ceil(pixels.count / batch)
    max_steps = min(x for x in (config.steps, config.epochs and config.epochs * steps_per_epoch, 10**12) if x)

    batches = _pixel_batches(pixels, batch, config, image, device, generator)
    measure, history = _PsnrProbe(model, target, image, mode, eval_ids, test_ids), []
    progress.task(f"fit {config.model}", total=max_steps if max_steps < 10**12 else None)
    model.train()
    step, losses, pending = 0, [], 0
    for coords, ids in batches:
        if step >= max_steps or (budget is not None and step and clock.would_cross(budget)):
            break
        fraction = min(1.0, clock.elapsed() / budget) if budget is not None else step / max_steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, fraction)
        with clock.step(device):
            loss = _adam_step(model, optimizer, coords, target[ids].to(torch.float32) / 255.0)
        step, pending = step + 1, pending + 1
        losses.append(loss.item())
        if clock.measurement_due(config.log_every) or step == 1:
            history.append(clock.measured(measure, step, losses))
            progress.advance(pending, psnr=history[-1]["psnr"], loss=history[-1]["loss"])
            losses, pending = [], 0
    if not history or history[-1]["step"] != step:
        history.append(clock.measured(measure, step, losses))
        progress.advance(pending, psnr=history[-1]["psnr"], loss=history[-1]["loss"])
    model.eval()
    result = FitLoopResult(history, step, clock.elapsed(), clock.step_seconds, clock.eval_seconds)
    if log is not None:
        log(
            f"trained {step} steps in {result.seconds:.2f} s ({result.step_seconds:.2f} s of steps, "
            f"{result.eval_seconds:.2f} s of PSNR measurements); PSNR {history[-1]['psnr']:.2f} dB"
        )
    return result


class _LoopClock:
    """The fit loop's wall clock: the budget's time, the steps' and the measurements' shares, and
    the fastest step and measurement so far (what the loop keeps in reserve at the end)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.step_seconds = self.eval_seconds = 0.0
        self.fastest_step = self.fastest_eval = math.inf
        self.last_eval, self.last_eval_at = 0.0, 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def would_cross(self, budget: float) -> bool:
        """Whether the next step and the final measurement would end past `budget`. The reserve is at
        most a tenth of the budget: one slow first measurement on a busy machine must not end a fit early."""
        reserve = (0.0 if math.isinf(self.fastest_step) else self.fastest_step) + (
            0.0 if math.isinf(self.fastest_eval) else self.fastest_eval
        )
        return self.elapsed() + min(reserve, 0.1 * budget) >= budget

    @contextlib.contextmanager
    def step(self, device: torch.device) -> Iterator[None]:
        started = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize()  # time the step, not its launch
        took = time.perf_counter() - started
        self.step_seconds += took
        self.fastest_step = min(self.fastest_step, took)

    def measurement_due(self, log_every: float) -> bool:
        return self.elapsed() - self.last_eval_at >= max(log_every, EVAL_SPACING * self.last_eval)

    def measured(self, measure: _PsnrProbe, step: int, losses: list[float]) -> dict[str, float]:
        """One history row: `seconds` on the budget's clock, `step_seconds` of optimisation alone."""
        started = time.perf_counter()
        row = measure(losses)
        self.last_eval = time.perf_counter() - started
        self.eval_seconds += self.last_eval
        self.fastest_eval = min(self.fastest_eval, self.last_eval)
        self.last_eval_at = self.elapsed()
        seconds, step_seconds = round(self.last_eval_at, 4), round(self.step_seconds, 4)
        return {"step": step, "seconds": seconds, "step_seconds": step_seconds, **row}


def _adam_step(model: nn.Module, optimizer: Adam, coords: torch.Tensor, truth: torch.Tensor):
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

    def __call__(self, losses: list[float]) -> dict[str, float]:
        self.model.eval()
        row = {"loss": float(np.mean(losses)) if losses else float("nan")}
        row["psnr"] = psnr_of(self.model, self.target, self.eval_ids, self.image, self.mode)
        if self.test_ids is not None:
            row["test_psnr"] = psnr_of(self.model, self.target, self.test_ids, self.image, self.mode)
        self.model.train()
        return row


def final_metrics(
    model: nn.Module, image: FieldImage, scored: ScoredRender, config: FitConfig, loop: FitLoopResult
) -> dict[str, Any]:
    """PSNR from the float outputs on every training pixel (held-out: and every unseen one), summed
    while rendering; SSIM at the end (over tiles for a large image: `ssim_measured`)."""
    value, method = ssim_measured(image.pixels, scored.image)
    metrics: dict[str, Any] = {
        "model": config.model,
        "psnr": psnr_from_mse(scored.train_error / scored.train_values),
        "ssim": value,
        "params": count_parameters(model),
        "bytes": stored_bytes(model),
        "seconds": round(loop.seconds, 3),
        "step_seconds": round(loop.step_seconds, 3),
        "eval_seconds": round(loop.eval_seconds, 3),
        "steps": loop.steps,
        "pixels": image.width * image.height,
        "width": image.width,
        "height": image.height,
        "channels": image.channels,
    }
    if method:
        metrics["ssim_method"] = method
    if config.heldout:
        metrics["test_psnr"] = psnr_from_mse(scored.test_error / scored.test_values)
        # the odd rows and columns form an image made only of unseen pixels
        value, method = ssim_measured(image.pixels[1::2, 1::2], scored.image[1::2, 1::2])
        metrics["test_ssim"] = value
        if method:
            metrics["test_ssim_method"] = method
        metrics["train_pixels"] = scored.train_values // image.channels
        metrics["test_pixels"] = scored.test_values // image.channels
    return metrics


# ---------------------------------------------------------------------------------- a fit, end to end


@dataclass(frozen=True)
class FitResult:
    """What `fit_image` wrote: the run directory, the fitted model and its spec, metrics.json's record,
    history.csv's rows and the rendered image."""

    run: rundir.RunDir
    model: nn.Module
    spec: ModelSpec
    metrics: FitMetrics
    history: list[StepRow]
    reconstruction: np.ndarray  # uint8 (height, width, channels)
    # every phase's seconds, the report's included, and the whole fit's: metrics.json, written before
    # the report, holds them up to its own writing (log.txt's last line holds these)
    timing: FitTiming


def build_model(config: FitConfig, channels: int) -> nn.Module:
    torch.manual_seed(config.seed)  # the initialisation depends on the seed only
    return create_model(config.model, "field", in_features=2, out_features=channels, **config.model_kwargs)


def model_spec(config: FitConfig, image: FieldImage) -> ModelSpec:
    return ModelSpec.field(config.model, image.describe(), config.coords, **config.model_kwargs)


def fit_image(
    source: str | os.PathLike | bytes | np.ndarray,
    out: str | os.PathLike | None = None,
    config: FitConfig = FitConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    overwrite: bool = False,
) -> FitResult:
    """Fit one image with `config.model` and write the run directory `out` (None: runs/MODEL; layout:
    `write_outputs`). `progress`: None shows it when stderr is a terminal, True always, False never (`core.progress`).

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # a 16x16 grey gradient
    >>> result = fit_image(image, Path(tmp.name) / "gradient", FitConfig(model="siren", steps=20))
    >>> result.metrics.steps, result.reconstruction.shape
    (20, (16, 16, 1))
    >>> (Path(tmp.name) / "gradient" / "model.safetensors").is_file()
    True
    """
    out = Path("runs") / config.model if out is None else out
    return fit_reported(source, out, config, make_progress(progress), overwrite)


def fit_reported(
    source: str | os.PathLike | bytes | np.ndarray,
    out: str | os.PathLike,
    config: FitConfig | None,
    progress: Progress,
    overwrite: bool = False,
) -> FitResult:
    """`fit_image` reporting to a Progress object already made (`compare`'s, for every model it fits)."""
    config = (config or FitConfig()).resolved()
    run = rundir.RunDir(out)
    with run.lock():  # one writer at a time (core.locks): a second fit into `out` is refused
        run.prepare(overwrite=overwrite)
        with freed_memory_kept():
            return _fit_into(run, source, config, progress)


def _fit_into(
    run: rundir.RunDir,
    source: str | os.PathLike | bytes | np.ndarray,
    config: FitConfig,
    reporter: Progress,
) -> FitResult:
    clock = Phases()
    # SSIM's scipy.ndimage is imported while the image decodes. (Not in train, whose decoding may fork worker
    # processes: a fork during an import can deadlock.) The optimizer needs no torch._dynamo (`core.optim`), whose
    # import outlasted the decoding (bench/README.md, "Start-up: imports, the collector and the early decode").
    imports = import_soon("scipy.ndimage")
    with clock("decode"):
        image = load_field_image(source, config.color, config.size)
    RunConfig(dataclasses.asdict(config)).write(run.config)
    run.log(f"fitting {image.source} ({image.width}x{image.height}, {image.mode}) with {config.model}")
    device = resolve_device(config.device)
    with clock("prepare"):
        # Joined before the load-adapted thread count, which counts running threads: the import thread would
        # count as another job and make an idle fit choose 1 thread (measured in
        # bench/README.md, "Start-up: imports, the collector and the early decode"); and plan_render times a
        # forward pass, not to be shared with an import holding the GIL.
        imports.join()
        threads = (
            choose_threads(config.threads, adapt_to_load=True) if device.type == "cpu" else torch.get_num_threads()
        )
    run.log(f"device {device}, {threads} CPU thread(s)")
    with reporter, thread_count(threads):
        with clock("prepare"):
            model = build_model(config, image.channels).to(device)
            optimizer = make_optimizer(model, config)
            plan = plan_render(model, image, config, device)
            say_render_cost(plan, image, config, reporter, run.log)
        with clock("training"):
            # matplotlib loads beside training instead of in the command's start-up: the figures are drawn after it,
            # and a time budget trains a few steps fewer
            # (bench/README.md, "Start-up: imports, the collector and the early decode").
            import_soon(*figures.MODULES)
            loop = fit_loop(model, image, config, reporter, log=run.log, optimizer=optimizer)
        clock.add("evaluations", loop.eval_seconds)
        with clock("render"):
            scored, precision = final_render(model, image, config, plan, run.log)
        spec = model_spec(config, image)
        metrics, history, full_size = _measure_and_write(run, clock, model, spec, image, config, loop, scored)
    metrics.update(threads=threads, render_precision=precision, render_estimate_seconds=round(plan.seconds, 3))
    so_far = clock.timing()
    metrics.update(phases=so_far.phases, wall_seconds=so_far.wall_seconds)
    record = FitMetrics.from_dict(metrics, run.metrics)
    record.write(run.metrics)  # written last: a finished run's mark
    with clock("report"):
        write_report(run.path, held=full_size)  # thumbnails from these pixels, not the PNGs decoded again
    timing = clock.timing()  # the report's seconds too
    run.log(phases_line(record, timing, config.budget_seconds))
    return FitResult(run, model, spec, record, history, scored.image, timing)


def _measure_and_write(
    run: rundir.RunDir, clock: Phases, model: nn.Module, spec: ModelSpec, image: FieldImage, config: FitConfig,
    loop: FitLoopResult, scored: ScoredRender,
) -> tuple[dict[str, Any], list[StepRow], dict[Path, np.ndarray]]:  # fmt: skip
    """The final metrics and every output but metrics.json and the report (`write_outputs`); the
    metrics, history.csv's rows and the full-size images written, by path."""
    # The full-size PNGs are zlib work that Pillow does without the GIL: written on two threads from
    # here on, while this one measures SSIM and draws the figures. original.png is often a copy of the
    # source instead (`write_original`). SSIM on a third thread, beside the figures, saved nothing
    # (bench/README.md, "Rendering, measuring and writing a fit").
    original, reconstruction = run.path / "original.png", run.path / "reconstruction.png"
    full_size = {original: image.pixels, reconstruction: scored.image}
    with ThreadPoolExecutor(max_workers=2) as pool:
        pngs = [pool.submit(write_original, image, original), pool.submit(write_png, scored.image, reconstruction)]
        try:
            with clock("metrics"):
                metrics = final_metrics(model, image, scored, config, loop)
            with clock("writing"):
                history = step_rows(loop.history, run.history)
                write_outputs(run, model, spec, image, scored.image, history, metrics)
        finally:  # an error writing either PNG is raised here (chained to the one above, if any)
            for png in pngs:
                png.result()
    return metrics, history, full_size
