"""The one learning-rate schedule (core.schedules.warmup_cosine) gives exactly the rates of the two
schedules it replaced: classify's lr_at and field's learning_rate, bit for bit."""

from __future__ import annotations

import math

import pytest

from pixlearn.classify.training.loop import TrainConfig, lr_at
from pixlearn.core.schedules import warmup_cosine
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import learning_rate


def classify_formula(step: int, total: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """lr_at as it was written before the merge."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle" and warmup == 0:
        warmup = max(1, int(0.25 * total))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def field_formula(config: FitConfig, fraction: float) -> float:
    """field's learning_rate as it was written before the merge."""
    assert config.lr is not None
    if config.schedule == "cosine":
        return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0))))
    return config.lr


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle"])
@pytest.mark.parametrize("warmup_epochs", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("lr", [1e-3, 0.2, 0.05])
def test_classify_rates_equal_the_old_formula(schedule: str, warmup_epochs: float, lr: float) -> None:
    config = TrainConfig(schedule=schedule, warmup_epochs=warmup_epochs, lr=lr)  # type: ignore[arg-type]
    steps_per_epoch, total = 7, 7 * 12
    for step in range(total + 3):
        assert lr_at(step, total, steps_per_epoch, config) == classify_formula(step, total, steps_per_epoch, config)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("lr", [1e-4, 1e-2, 3e-3])
def test_field_rates_equal_the_old_formula(schedule: str, lr: float) -> None:
    config = FitConfig(lr=lr, schedule=schedule)  # type: ignore[arg-type]
    for fraction in [i / 997 for i in range(1100)] + [0.3333, 2.5]:
        assert learning_rate(config, fraction) == field_formula(config, fraction)


def test_the_schedule_at_a_few_steps() -> None:
    assert [warmup_cosine(s, 10, 1.0, warmup=4) for s in (0, 1, 3)] == [0.25, 0.5, 1.0]
    assert warmup_cosine(4, 10, 1.0, warmup=4) == 1.0  # the cosine starts at the peak
    assert warmup_cosine(7, 10, 1.0, warmup=4) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 1.0, warmup=4) == 0.0 == warmup_cosine(50, 10, 1.0, warmup=4)
    assert warmup_cosine(5, 10, 0.3, warmup=2, decay=False) == 0.3
    assert warmup_cosine(1.0, 1, 0.1, floor=0.01) == pytest.approx(0.001)
    assert warmup_cosine(0.0, 1, 0.1, floor=0.01) == 0.1
