"""The options of an image fit (FitConfig) and each model's training preset.

>>> from pixlearn.field.config import FitConfig
>>> FitConfig(model="hashgrid").resolved().lr
0.01
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pixlearn.core.errors import ConfigError
from pixlearn.field.coords import COORD_MODES, CoordMode
from pixlearn.models.registry import get_entry

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
            raise ConfigError(f"unknown coords {self.coords!r}; choose auto, {', '.join(COORD_MODES)}")
        if self.color not in FIELD_COLORS:
            raise ConfigError(f"unknown color {self.color!r}; choose one of {', '.join(FIELD_COLORS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "steps", "batch"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "batch" else 1):
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
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
            raise ConfigError(f"cannot read the duration {text!r}; write it as 30s, 2m or 1h")
        seconds = float(match.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"a time budget must be positive, got {text!r}")
    return seconds
