"""Resuming a run: the history's columns, and the checks that a checkpoint's options, history and
classes are those of the run being continued (`pixlearn train ... --resume`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pixlearn.classify.config import TrainConfig, read_config
from pixlearn.core.errors import DataError, PixlearnError, RunError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import DataSummary, EpochRow
from pixlearn.core.storage.records import RunConfig

HISTORY_COLUMNS = EpochRow.columns()  # history.csv's, in order


def history_rows(run: rundir.RunDir, history: list[dict[str, float]]) -> list[EpochRow]:
    """The loop's epochs as history.csv's rows (what `train` returns as its history)."""
    return [EpochRow.from_dict(row, run.history) for row in history]


def write_history(run: rundir.RunDir, history: list[dict[str, float]]) -> None:
    """history.csv: one row per finished epoch (a blank where an epoch has no such figure)."""
    EpochRow.write_rows(run.history, history_rows(run, history))


def check_same_classes(run: rundir.RunDir, classes: list[str]) -> None:
    # Resuming on other data with as many classes would load without error and train wrong labels.
    summary = DataSummary.read_if_present(run.data_summary)
    if summary is not None and list(summary.classes) != classes:
        before = list(summary.classes)
        raise DataError(f"{run.data_summary}: the run was trained on classes {before}; the data now has {classes}")


def resumed_config(run: rundir.RunDir, given: TrainConfig) -> TrainConfig:
    """A resumed run keeps its saved options; only the number of epochs may be raised, and how it
    runs (device, workers, streaming, cache) may change: none of these changes the result."""
    _check_not_single_rate_fine_tuning(run)
    config = read_config(run.config)
    config.epochs = max(config.epochs, given.epochs)
    for name in RUN_ONLY_OPTIONS:
        setattr(config, name, getattr(given, name))
    try:  # every check a new run's options get (the model, its size), not only types and ranges
        return config.resolved()
    except PixlearnError as exc:
        raise RunError(f"{run.config}: {exc}") from exc


def resumed_history(state: dict[str, Any], run: rundir.RunDir, config: TrainConfig) -> list[dict[str, float]]:
    """The checkpoint's history, checked: one row of numbers per finished epoch, trained with these options."""
    history = state.get("history")
    rows_ok = isinstance(history, list) and all(
        isinstance(row, dict)
        and row.get("epoch") == i + 1
        and "loss" in row
        and set(row) <= set(HISTORY_COLUMNS)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for k, v in row.items() if k != "phase")
        for i, row in enumerate(history)
    )
    if not rows_ok:
        raise RunError(f"{run.checkpoint}: its history is not one row of numbers per finished epoch")
    saved = state.get("config") if isinstance(state.get("config"), dict) else {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    try:  # resolved like the current options: runs of 0.1 saved `size` as null and `threads` as 0
        before = dataclasses.asdict(TrainConfig(**{k: v for k, v in saved.items() if k in known}).resolved())
    except (PixlearnError, TypeError) as exc:
        raise RunError(f"{run.checkpoint}: the options it holds are not valid ({exc})") from exc
    current = dataclasses.asdict(config)
    # threads: a count recorded in config.json is reused; runs of 0.1 recorded none, so theirs is chosen anew
    ignored = (*RUN_ONLY_OPTIONS, "epochs", "threads")
    changed = [k for k in current if k in saved and k not in ignored and before[k] != current[k]]
    if changed:  # config.json edited (or lost) since: resuming would mix two sets of options
        raise RunError(
            f"{run.checkpoint}: trained with other options than {run.config} ({', '.join(changed)}); "
            "resume with the options it was trained with, or start again (--overwrite, or overwrite=True)"
        )
    return history


RUN_ONLY_OPTIONS = ("device", "workers", "stream", "cache", "feature_cache")


def _check_not_single_rate_fine_tuning(run: rundir.RunDir) -> None:
    """Refuse a fine-tuning checkpoint of a pixlearn that trained the backbone at one rate (its config.json holds
    backbone_lr_scale): its optimizer has two groups (head, backbone), these runs one per stage with other
    rates and schedules, so no continuation would be the run it started as."""
    saved = RunConfig.read(run.config).options
    fine_tuned = bool(saved.get("pretrained") or saved.get("weights")) and not saved.get("freeze")
    if fine_tuned and "backbone_lr_scale" in saved and run.checkpoint.exists():
        raise RunError(
            f"{run.checkpoint}: fine-tuned by an earlier pixlearn with one backbone learning rate "
            "(backbone_lr_scale); this version gives each stage its own (--lr-mult) and cannot continue it: "
            "start again (--overwrite, or overwrite=True)"
        )
