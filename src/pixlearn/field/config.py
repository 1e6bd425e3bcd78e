"""The options of an image fit (FitConfig) and each model's training preset.

>>> from pixlearn.field.config import FitConfig
>>> FitConfig(model="hashgrid").resolved().lr
0.01
>>> CompareConfig(equal_params=20_000).check().equal_params
20000
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from pixlearn.core.errors import ConfigError
from pixlearn.core.options import (
    DATA,
    RUN,  # noqa: F401  (the CLI puts --out in this panel)
    Color,
    check_options,
    color_option,
    device_option,
    option,
    seed_option,
    size_option,
    threads_option,
)
from pixlearn.field.coords import CoordMode
from pixlearn.models.registry import get_entry


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
    schedule: Literal["constant", "cosine"] = "constant"


PRESETS: dict[str, Preset] = {
    # The seed: Keras' Adam defaults (lr 1e-3), batch 128, raw 1-based pixel coordinates, 20/20/100 epochs.
    "seed-linear": Preset(1e-3, 128, "pixel", epochs=20),
    "seed-small": Preset(1e-3, 128, "pixel", epochs=20),
    "seed-deep": Preset(1e-3, 128, "pixel", epochs=100),
    # SIREN's image protocol is Adam 1e-4 on the full image every step, 500 steps for the anchor
    # (`--batch full --steps 500`). On a CPU a full-batch step of a 512x512 photo is slow, so a short budget
    # makes a handful of them; the preset draws random 1024-pixel batches at the protocol's rate, the best of
    # the batch sizes and rates tried (bench/README.md, "Fitting presets: batch size and learning rate").
    "siren": Preset(1e-4, 2**10, "normalized", steps=500),
    # Fourier features into a SIREN (the FFSiren anchor uses full batches). Batch 2^12 here: a full-batch
    # step of this 330k-parameter network is slow on a CPU, and random 4096-pixel batches did well on the
    # held-out protocol's unseen pixels (bench/README.md, "Fitting presets: batch size and learning rate").
    "fourier-siren": Preset(1e-4, 2**12, "normalized", steps=5000),
    # Tancik et al.'s 2D regression notebook: Adam 1e-3, full batch, 2,000 steps (`--batch full --lr 1e-3`).
    # On a CPU random 1024-pixel batches at 3e-3 instead: in a short budget the full batch makes a handful of
    # steps, and this size and rate did best of those tried
    # (bench/README.md, "Fitting presets: batch size and learning rate").
    "fourier": Preset(3e-3, 2**10, "normalized", steps=2000),
    # instant-ngp's image config: Adam lr 1e-2, betas (0.9, 0.99), eps 1e-15 (the tiny eps matters:
    # hash entries hit rarely get tiny second moments, and 1e-8 would damp their updates).
    # Batch 2^12, not instant-ngp's 2^18: on a CPU a step costs time in proportion to its pixels, and on the 256x256
    # anchor sixteen 2^12 steps gain more than one full-image step. A cosine decay to 1% ends a time budget higher and
    # reaches the anchor's 36.8 dB sooner (bench/README.md, "Fitting presets: batch size and learning rate").
    "hashgrid": Preset(1e-2, 2**12, "normalized", steps=3000, betas=(0.9, 0.99), eps=1e-15, schedule="cosine"),
    # 2D Gaussians (models/gaussians.py): parameters scaled so one Adam rate suits positions, shapes and
    # colours. 8192-pixel batches at 1e-2 did best of the sizes and rates tried on cameraman 256x256, and the
    # cosine decay is the hash grid's (bench/README.md, "Fitting presets: batch size and learning rate").
    "gaussians": Preset(1e-2, 2**13, "normalized", steps=3000, schedule="cosine"),
}
DEFAULT_PRESET = Preset(1e-3, 0, "normalized", steps=1000)
DEFAULT_MODEL = "hashgrid"  # the best PSNR in a time budget on a CPU (FitConfig.model's help)


LENGTH, OPTIM = "Length (the first limit reached stops)", "Optimiser"


def parse_batch(text: str) -> int:
    """A number of pixels, or `full` (every pixel each step) -> 0."""
    if str(text).lower() == "full":
        return 0
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"batch (--batch-size): expected a number of pixels or 'full', got {text!r}") from None


@dataclass
class FitConfig:
    """Every option of an image fit; saved, resolved, as config.json beside the outputs. None = the model's preset."""

    model: str = option(
        DEFAULT_MODEL,
        "A registered field model (see `pixlearn models`). The default, hashgrid, reaches the highest PSNR of "
        "them in a time budget on a CPU (10 s on a 512x512 photo: `pixlearn compare`, bench/README.md).",
        panel="Model",
    )
    model_kwargs: dict[str, Any] = option(default_factory=dict, help="Extra constructor arguments.", cli=False)
    # length: the first limit reached stops the fit
    epochs: int | None = option(
        None, "Shuffled passes over the pixels (the seed's epochs).", panel=LENGTH, minimum=1,
        default_text="the model's preset, unless --steps or --time",
    )  # fmt: skip
    steps: int | None = option(
        None, "Optimiser steps.", panel=LENGTH, minimum=1, default_text="the model's preset, unless --epochs or --time"
    )
    time: str | float | None = option(
        None, "Training-time budget, PSNR measurements included: 30s, 2m, 1h (or seconds).", panel=LENGTH
    )
    # batches and optimiser
    # the field keeps its name (config.json, the API); the flag is every verb's --batch-size
    batch: int | None = option(
        None, "Pixels per step, or full (every pixel each step).", panel=OPTIM, minimum=0, parse=parse_batch,
        default_text="the model's", flag="--batch-size",
    )  # fmt: skip
    lr: float | None = option(None, "Adam learning rate.", panel=OPTIM, above=0, default_text="the model's")
    # train's list of schedules, so that --schedule lists one set everywhere; a fit has no one-cycle
    schedule: Literal["constant", "cosine", "onecycle"] | None = option(
        None, "Learning-rate schedule (cosine decays to 1%).", panel=OPTIM, default_text="the model's",
        refused=(("onecycle", "is train's schedule; a fit's are constant and cosine"),),
    )  # fmt: skip
    # data
    coords: Literal["auto", "normalized", "pixel"] = option(
        "auto", "Coordinates: normalized [-1, 1] or pixel (the seed's 1-based indices); auto is the model's.",
        panel=DATA,
    )  # fmt: skip
    color: Color = color_option()
    size: tuple[int, int] | None = size_option(None, "the image's own")
    heldout: bool = option(False, "Train on every other pixel; report PSNR on the unseen ones.", panel=DATA)
    # run
    seed: int = seed_option()
    device: str = device_option()
    threads: int = threads_option()
    log_every: float = option(
        0.5,
        "Seconds of training between PSNR measurements; they count in a time budget, and each waits at least "
        "19x the last one's duration, so they take at most a twentieth of it.",
        minimum=0,
        cli=False,
    )
    # 16,384, not 262,144: one measurement of the Fourier-feature MLP on 262,144 pixels (173 GFLOP) took a
    # whole short budget, leaving it 1 step (bench/README.md, "The README's compare, 10 s per model"); a fixed
    # sample of 16,384 pixels estimates the PSNR to about 0.1 dB, and the final PSNR is over every pixel anyway
    eval_pixels: int = option(
        16_384, "PSNR while training uses at most this many pixels (a fixed sample).", minimum=1, cli=False
    )

    def preset(self) -> Preset:
        return PRESETS.get(self.model, DEFAULT_PRESET)

    def resolved(self) -> FitConfig:
        """A checked copy with every None / auto filled from the model's preset."""
        check_options(self)
        get_entry(self.model, "field")
        if self.size is not None and not (len(self.size) == 2 and min(self.size) >= 1):
            raise ConfigError(f"size (--size): width and height must be positive, got {self.size}")
        if self.time is not None:
            parse_duration(self.time)
        preset = self.preset()
        config = dataclasses.replace(self, model_kwargs=dict(self.model_kwargs))
        if config.lr is None:
            config.lr = preset.lr
        if config.batch is None:
            config.batch = preset.batch
        if config.schedule is None:
            config.schedule = preset.schedule  # type: ignore[assignment]
        if config.coords == "auto":
            config.coords = preset.coords
        if config.epochs is None and config.steps is None and config.time is None:
            config.epochs, config.steps = preset.epochs, preset.steps
        return config

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
            raise ConfigError(f"time (--time): cannot read the duration {text!r}; write it as 30s, 2m or 1h")
        seconds = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"time (--time): a time budget must be positive, got {text!r}")
    return seconds


COMPARE = "Comparison"
COMPARED = ("seed-linear", "seed-small", "seed-deep", "siren", "fourier", "hashgrid")  # compare's default


@dataclass
class CompareConfig:
    """How `compare` makes its models comparable; the fit options (FitConfig) apply to every model."""

    equal_time: bool = option(
        True,
        "Every model gets the same --time (or --steps), each with its own CPU preset (learning rate, pixel batch, "
        "schedule), listed in the table; --no-equal-time trains each for its preset's own length instead.",
        panel=COMPARE,
    )
    equal_params: int | None = option(
        None,
        "Scale each model's size setting (SIREN and Fourier widths, hash table, Gaussian count) to about N "
        "parameters; the seed's fixed-size presets keep theirs and are marked 'fixed'.",
        panel=COMPARE,
        minimum=1,
    )
    seeds: int = option(
        1, "Fit every model with K seeds; the table prints the mean and spread.", panel=COMPARE, minimum=1
    )
    models: list[str] = option(
        default_factory=lambda: list(COMPARED),
        help="The field models fitted, in the table's order.",
        cli=False,  # the command line's --models takes them comma-separated
    )
    fit: FitConfig = option(
        default_factory=lambda: FitConfig(),
        help="The fit options every model shares (--time or --steps is the budget); None: each model's preset.",
        cli=False,  # the command line builds it from the fit options
    )

    def check(self) -> CompareConfig:
        check_options(self)
        return self


MAX_RENDER_PIXELS = 400_000_000  # a render's width x height: a guard against a typo such as --scale 400
# --scale's bound: past it even a fit of one pixel renders over MAX_RENDER_PIXELS (and 1e308 overflows)
MAX_RENDER_SCALE = 20_000


def check_render_size(width: int, height: int) -> None:
    """Refuse a render size with a side under one pixel or over MAX_RENDER_PIXELS in all (ConfigError)."""
    if width < 1 or height < 1:
        raise ConfigError(f"an output size needs positive sides, got {width}x{height}")
    if width * height > MAX_RENDER_PIXELS:
        raise ConfigError(f"{width}x{height} is over the {MAX_RENDER_PIXELS:,}-pixel render limit")


@dataclass
class RenderConfig:
    """The options of `render`: the grid the fitted model is evaluated on, and where it runs."""

    scale: float | None = option(
        None,
        "Output size as a multiple of the fitted image.",
        panel=DATA,
        above=0,
        maximum=MAX_RENDER_SCALE,
        default_text="1",
    )
    size: tuple[int, int] | None = size_option(None, "the fitted image's, times --scale")
    device: str = device_option()
    # 0: re-decided as the render goes (core.devices.LoadFollower); the image is the same on any count
    threads: int = threads_option()

    def check(self) -> RenderConfig:
        """The config itself once every option is valid, else ConfigError."""
        check_options(self)
        if self.scale is not None and self.size is not None:
            raise ConfigError("give scale (--scale) or size (--size), not both")
        if self.size is not None:
            check_render_size(*self.size)
        return self
