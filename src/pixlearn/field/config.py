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

from pixlearn.core.devices import MAX_THREADS
from pixlearn.core.errors import ConfigError
from pixlearn.core.options import check_options, option
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
    # (`--batch full --steps 500`). On a CPU a full-batch step of a 512x512 photo takes seconds, so the
    # preset draws random 1024-pixel batches: 10 s on astronaut 512x512 RGB on one busy core (issue 18)
    # gave 20.5 dB at 1e-4 with 1024, 17.9 with 2048, 20.1 at 3e-4 with 1024, 18.9 at 3e-4 with 512, and
    # 10.1 at 1e-3 with 512 (a diverged fit); the full-batch protocol made 4 steps and 18.1 dB.
    "siren": Preset(1e-4, 2**10, "normalized", steps=500),
    # Fourier features into a SIREN (the FFSiren anchor uses full batches). Batch 2^12 here: a full-batch
    # step of this 330k-parameter network takes seconds on a CPU, and in 60 s of the held-out protocol
    # (astronaut 512x512) random 4096-pixel batches reached 28.3 dB on the unseen pixels.
    "fourier-siren": Preset(1e-4, 2**12, "normalized", steps=5000),
    # Tancik et al.'s 2D regression notebook: Adam 1e-3, full batch, 2,000 steps (`--batch full --lr 1e-3`).
    # On a CPU random 1024-pixel batches at 3e-3 instead: 10 s on astronaut 512x512 RGB on one busy core
    # gave 20.4 dB (1024 at 1e-3: 19.8; 2048: 17.1 at 1e-3, 19.3 at 3e-3; 512 at 3e-3: 20.6); the full
    # batch made 4 steps and 17.3 dB (issue 18).
    "fourier": Preset(3e-3, 2**10, "normalized", steps=2000),
    # instant-ngp's image config: Adam lr 1e-2, betas (0.9, 0.99), eps 1e-15 (the tiny eps matters:
    # hash entries hit rarely get tiny second moments, and 1e-8 would damp their updates).
    # Batch 2^12, not instant-ngp's 2^18: on a CPU a step costs time in proportion to its pixels, and on
    # the 256x256 anchor sixteen 2^12 steps gain more than one full-image step (30 s: full batch 25.7 dB,
    # 2^14 38.7 dB, 2^12 40.0 dB). A cosine decay to 1% adds ~0.6 dB at the end of a time budget and
    # reaches 36.8 dB sooner (bench/bench_fit.py, bench/README.md).
    "hashgrid": Preset(1e-2, 2**12, "normalized", steps=3000, betas=(0.9, 0.99), eps=1e-15, schedule="cosine"),
    # 2D Gaussians (models/gaussians.py): parameters scaled so one Adam rate suits positions, shapes and
    # colours. On cameraman 256x256 in 30 s on a busy CPU, constant rate: 8192-pixel batches at 1e-2 36.1 dB,
    # 4096 at 5e-3 35.2, 2048 at 1e-2 33.5; in 20 s: 4096 at 1e-2 34.7, 16384 at 1e-2 33.1, 4096 at 3e-2 30.2.
    # The cosine decay is the hash grid's (bench/bench_gaussians.py: 37.4 dB in 60 s).
    "gaussians": Preset(1e-2, 2**13, "normalized", steps=3000, schedule="cosine"),
}
DEFAULT_PRESET = Preset(1e-3, 0, "normalized", steps=1000)
DEFAULT_MODEL = "hashgrid"  # the best PSNR in a time budget on a CPU (FitConfig.model's help)


DATA, LENGTH, OPTIM, RUN = "Data", "Length (the first limit reached stops)", "Optimiser", "Run"


def parse_size(text: str) -> tuple[int, int]:
    """`256` or `256x192` (width x height) -> (width, height).

    >>> parse_size("256x192"), parse_size("64")
    ((256, 192), (64, 64))
    """
    parts = str(text).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(
            f"size (--size): expected WIDTHxHEIGHT such as 256x192, or one side such as 256; got {text!r}"
        )
    width, height = (int(parts[0]), int(parts[-1]))
    return width, height


def parse_batch(text: str) -> int:
    """A number of pixels, or `full` (every pixel each step) -> 0."""
    if str(text).lower() == "full":
        return 0
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"batch (--batch): expected a number of pixels or 'full', got {text!r}") from None


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
    epochs: int | None = option(None, "Shuffled passes over the pixels (the seed's epochs).", panel=LENGTH, minimum=1)
    steps: int | None = option(None, "Optimiser steps.", panel=LENGTH, minimum=1)
    time: str | float | None = option(
        None, "Training-time budget, PSNR measurements included: 30s, 2m, 1h (or seconds).", panel=LENGTH
    )
    # batches and optimiser
    batch: int | None = option(
        None, "Pixels per step, or full (every pixel each step).", panel=OPTIM, minimum=0, parse=parse_batch,
        default_text="the model's",
    )  # fmt: skip
    lr: float | None = option(None, "Adam learning rate.", panel=OPTIM, above=0, default_text="the model's")
    schedule: Literal["constant", "cosine"] | None = option(
        None, "Learning-rate schedule (cosine decays to 1%).", panel=OPTIM, default_text="the model's"
    )
    # data
    coords: Literal["auto", "normalized", "pixel"] = option(
        "auto", "Coordinates: normalized [-1, 1] or pixel (the seed's 1-based indices); auto is the model's.",
        panel=DATA,
    )  # fmt: skip
    color: Literal["auto", "grayscale", "rgb", "rgba"] = option(
        "auto", "Colour mode; auto keeps grey grey and keeps alpha.", panel=DATA
    )
    size: tuple[int, int] | None = option(None, "Resize first: WIDTHxHEIGHT or one side.", panel=DATA, parse=parse_size)
    heldout: bool = option(False, "Train on every other pixel; report PSNR on the unseen ones.", panel=DATA)
    # run
    seed: int = option(0, "Seed of the initialisation and batch order.", panel=RUN)
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N.", panel=RUN)
    threads: int = option(
        0, "CPU threads; 0 = auto (1 unless the machine is idle).", panel=RUN, minimum=0, maximum=MAX_THREADS
    )
    log_every: float = option(
        0.5,
        "Seconds of training between PSNR measurements; they count in a time budget, and each waits at least "
        "19x the last one's duration, so they take at most a twentieth of it.",
        minimum=0,
        cli=False,
    )
    # 16,384, not 262,144: one measurement of the Fourier-feature MLP on 262,144 pixels (173 GFLOP) took more
    # than a 10 s budget on one busy core, leaving it 1 step (issue 18); a fixed sample of 16,384 pixels
    # estimates the PSNR to about 0.1 dB, and the final PSNR is over every pixel anyway
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

    def check(self) -> CompareConfig:
        check_options(self)
        return self
