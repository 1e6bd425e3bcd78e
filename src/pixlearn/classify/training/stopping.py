"""Early stopping that keeps the best epoch: `--early-stopping N` stops after N epochs without a better
`--monitor` value (val_loss, lower is better; val_accuracy, higher), and the saved model is then the best
epoch's weights, not the last one's.

With early stopping on, each epoch that improves on every one before it writes its weights to the run
directory as `best.safetensors` (atomically, with the epoch and value in its metadata), before the epoch's
checkpoint: a resumed run finds them there. At the end `restore_best` loads them into the model that is
saved, evaluated and reported; metrics.json says `best_epoch`. Ties keep the earlier epoch.

    >>> history = [{"epoch": 1, "loss": 1.0, "val_loss": 0.9}, {"epoch": 2, "loss": 0.8, "val_loss": 0.7},
    ...            {"epoch": 3, "loss": 0.6, "val_loss": 0.75}]
    >>> best_epoch(history, "val_loss"), epochs_since_best(history, "val_loss")
    (2, 1)
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

from safetensors.torch import save_file
from torch import nn

from pixlearn.core.distributed import unwrap
from pixlearn.core.errors import RunError
from pixlearn.core.storage.integrity import metadata_json
from pixlearn.core.storage.rundir import RunDir, atomic_path, fsync_file, strict_json
from pixlearn.core.storage.weights import load_state_checked, plain_state_dict, read_weights

BEST_FILE = "best.safetensors"
BEST_FORMAT = "pixlearn-best/1"
# without a validation set, the training figure (training measures no balanced score: its accuracy stands in)
FALLBACK = MappingProxyType(
    {
        "val_loss": "loss",
        "val_accuracy": "accuracy",
        "val_balanced_accuracy": "accuracy",
        "val_macro_f1": "accuracy",
        "val_map": "accuracy",
    }
)


def monitored(row: dict[str, float], monitor: str) -> float:
    """The monitored value of one history row (the training figure where no validation ran)."""
    return float(row[monitor] if monitor in row else row[FALLBACK[monitor]])


def best_epoch(history: list[dict[str, float]], monitor: str) -> int | None:
    """The 1-based epoch with the best monitored value (the earliest of equals); None before any epoch."""
    if not history:
        return None
    values = [monitored(h, monitor) for h in history]
    sign = 1.0 if monitor == "val_loss" else -1.0  # every other monitor: higher is better
    at = min(range(len(values)), key=lambda i: sign * values[i] if not math.isnan(values[i]) else math.inf)
    return at + 1


def epochs_since_best(history: list[dict[str, float]], monitor: str) -> int:
    best = best_epoch(history, monitor)
    return 0 if best is None else len(history) - best


def should_stop(history: list[dict[str, float]], patience: int, monitor: str) -> bool:
    """Early stopping's test before the next epoch: `patience` epochs (> 0) without a better value."""
    return patience > 0 and bool(history) and epochs_since_best(history, monitor) >= patience


def stop_line(history: list[dict[str, float]], patience: int, monitor: str) -> str:
    best = best_epoch(history, monitor)
    value = monitored(history[best - 1], monitor) if best else math.nan
    return (
        f"early stopping after epoch {len(history)}: no better {monitor} for {patience} epoch(s); "
        f"best epoch {best} ({monitor} {value:.4f})"
    )


def best_path(run: RunDir) -> Path:
    return run.path / BEST_FILE


def save_if_best(run: RunDir, model: nn.Module, history: list[dict[str, float]], monitor: str) -> bool:
    """Write the model's weights as best.safetensors when the last epoch of `history` is the best so far."""
    if not history or best_epoch(history, monitor) != len(history):
        return False
    tensors = {k: v.detach().cpu().contiguous() for k, v in plain_state_dict(model).items()}
    state = {"epoch": len(history), "monitor": monitor, "value": monitored(history[-1], monitor)}
    with atomic_path(best_path(run)) as tmp:
        save_file(tensors, str(tmp), metadata={"format": BEST_FORMAT, "state": strict_json(state)})
        fsync_file(tmp)
    return True


def restore_best(run: RunDir, model: nn.Module, history: list[dict[str, float]], monitor: str) -> dict[str, Any]:
    """Load the best epoch's weights into `model` (when it is not the last); the metrics that say so.

    The file must hold the epoch and value that `history` names as best, so weights of another run
    (or of an epoch since retrained) are never restored silently: a mismatch is a RunError.
    """
    best = best_epoch(history, monitor)
    if best is None:
        return {}
    facts = {"best_epoch": best, f"best_{monitor}": monitored(history[best - 1], monitor)}
    if best == len(history):
        return {**facts, "restored_best": False}  # the model is the best epoch's already
    path = best_path(run)
    if not path.exists():
        raise RunError(f"{path}: missing, so the best epoch's ({best}) weights cannot be restored")
    tensors = read_weights(path)
    state = metadata_json(path, "state", 4)
    expected = {"epoch": best, "monitor": monitor, "value": facts[f"best_{monitor}"]}
    if state != expected:
        raise RunError(f"{path}: holds {state}, not the best epoch of this run's history ({expected})")
    load_state_checked(unwrap(model), tensors, path)
    return {**facts, "restored_best": True}


def final_weights(run: RunDir, model: nn.Module, history: list[dict[str, float]], patience: int, monitor: str) -> dict:
    """With early stopping on (`patience` > 0), the best epoch's weights restored into `model` and logged;
    the metrics that say so (`best_epoch`, `best_<monitor>`, `restored_best`). Off: nothing changes."""
    if patience <= 0 or not history:
        return {}
    facts = restore_best(run, model, history, monitor)
    run.log(
        f"saved model: the best epoch's weights, epoch {facts['best_epoch']} of {len(history)} "
        f"({monitor} {facts[f'best_{monitor}']:.4f})"
    )
    return facts


def stop_now(history: list[dict[str, float]], patience: int, monitor: str) -> str | None:
    """The line to log when early stopping ends training before the next epoch; None to go on."""
    return stop_line(history, patience, monitor) if should_stop(history, patience, monitor) else None
