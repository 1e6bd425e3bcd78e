"""The options of an image fit (FitConfig) and each model's training preset.

>>> from pixlearn.field.config import FitConfig
>>> FitConfig(model="hashgrid").resolved().lr
0.01
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

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

    model: str = option("siren", "A registered field model (see `pixlearn models`).", panel="Model")
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
    threads: int = option(0, "CPU threads; 0 = auto (1 unless the machine is idle).", panel=RUN, minimum=0)
    log_every: float = option(
        0.5,
        "Seconds of training between PSNR measurements; they count in a time budget, and each waits at least "
        "19x the last one's duration, so they take at most a twentieth of it.",
        minimum=0,
        cli=False,
    )
    eval_pixels: int = option(
        262_144, "PSNR while training uses at most this many pixels (a fixed sample).", minimum=1, cli=False
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
