"""Where the wall time of a fit goes: seconds per phase, and the line that reports them.

A `--time` budget bounds training, progress evaluations included; everything else (decoding,
rendering every pixel, SSIM, writing) is meant to stay under a quarter of it (QUARTER); the final
render is planned before training (`rendering.plan`).

    >>> clock = Phases()
    >>> with clock("decode"):
    ...     pass
    >>> list(clock.seconds)
    ['decode']
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pixlearn.core.storage.field_records import FitMetrics

QUARTER = 0.25  # the share of a time budget everything but training may take
# Phases in the order a fit runs them; "evaluations" is the part of "training" spent measuring PSNR.
ORDER = ("decode", "prepare", "training", "evaluations", "render", "metrics", "writing", "report")
INSIDE_TRAINING = ("evaluations",)


@dataclass(frozen=True)
class FitTiming:
    """Where a whole fit's wall time went: seconds per phase in running order (ORDER), and the total."""

    phases: dict[str, float]
    wall_seconds: float


class Phases:
    """A stopwatch per named phase: `with clock("render"): ...`; repeated phases add up."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self) -> float:
        """Wall seconds since the clock was made."""
        return time.perf_counter() - self.started

    def timing(self) -> FitTiming:
        """The phases so far in running order and the wall seconds since the clock was made, rounded to
        milliseconds (metrics.json's `phases` and `wall_seconds`)."""
        phases = {name: round(self.seconds[name], 3) for name in ORDER if name in self.seconds}
        return FitTiming(phases, round(self.total(), 3))


def outside_training(phases: dict[str, float], wall: float) -> float:
    """Wall seconds of everything but training (progress evaluations count as training)."""
    return max(0.0, wall - phases.get("training", 0.0))


def phases_line(metrics: FitMetrics, timing: FitTiming, budget: float | None = None) -> str:
    """One line naming each phase's seconds (`timing`), the total, the share outside training and, when
    SSIM was measured on a subset (`metrics`), how."""
    phases, wall = timing.phases, timing.wall_seconds
    parts = []
    for name in ORDER:
        if name not in phases:
            continue
        if name in INSIDE_TRAINING:
            parts[-1] += f" (of which progress evaluations {phases[name]:.1f})"
        else:
            parts.append(f"{name} {phases[name]:.1f}")
    line = "seconds: " + ", ".join(parts) + f"; total {wall:.1f}"
    outside = outside_training(phases, wall)
    if budget:
        line += f"; outside training {outside:.1f} = {outside / budget:.0%} of the {budget:g} s budget"
        line += f" (target <= {QUARTER:.0%})"
    else:
        line += f"; outside training {outside:.1f}"
    if metrics.ssim_method:
        line += f"; {metrics.ssim_method}"
    if metrics.render_precision not in (None, "fp32"):
        line += f"; rendered with {metrics.render_precision}"
    return line


# ---------------------------------------------------------------------------------- the final render


