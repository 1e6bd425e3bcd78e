"""Checkpoints of a training run, committed as one unit and verified when a run is resumed.

    checkpoint.safetensors   model and optimizer tensors; its metadata holds the rest of the state
                             (history, options, optimizer settings) as JSON: one rename commits all
    checkpoint.json          a readable copy of that state, renamed after the tensors

A process killed between the two renames leaves the JSON one epoch behind; resuming reads the state
from the tensor file, so tensors and state always belong to the same epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from pixlearn.core.distributed import unwrap
from pixlearn.core.errors import RunError
from pixlearn.core.optim import Optimizer
from pixlearn.core.storage import rundir
from pixlearn.core.storage.integrity import metadata_json, optimizer_state_problem
from pixlearn.core.storage.rundir import (
    MAX_JSON_DEPTH,
    RunDir,
    atomic_path,
    fsync_file,
    json_text,
    read_json,
    strict_json,
    write_error,
)
from pixlearn.core.storage.weights import load_state_checked, plain_state_dict, read_weights
from pixlearn.core.text import printable

CHECKPOINT_FORMAT = "pixlearn-checkpoint/2"  # 2: the tensor file holds the state too
FIRST_CHECKPOINT_FORMAT = "pixlearn-checkpoint/1"  # still resumed: the state was in checkpoint.json alone


def save_checkpoint(run: RunDir, model: nn.Module, optimizer: Optimizer, state: Mapping[str, Any]) -> None:
    """Model and optimizer tensors and the rest of the state (history, config), committed as one unit.

    checkpoint.safetensors holds the tensors and, in its metadata, the state as JSON: its rename
    commits the whole checkpoint. checkpoint.json, renamed after it, is a readable copy of the state;
    a process killed between the two renames leaves the JSON of the epoch before, and
    `load_checkpoint` then takes the state from the tensor file, never from that JSON.
    Both files are written in full before either is renamed, so a failed write (a full disk) is a
    RunError that leaves the previous checkpoint's two files as they were.
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in plain_state_dict(model).items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, slot in opt["state"].items():
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    meta = {"format": CHECKPOINT_FORMAT, "param_groups": opt["param_groups"], "optim_scalars": scalars, **state}
    embedded = strict_json(meta)
    with atomic_path(run.checkpoint_spec) as tmp_meta, atomic_path(run.checkpoint) as tmp_weights:
        save_file(tensors, str(tmp_weights), metadata={"format": CHECKPOINT_FORMAT, "state": embedded})
        fsync_file(tmp_weights)  # on the disk before its rename commits it
        text = printable(json_text(meta)).encode("utf-8")
        try:
            rundir.write_into(tmp_meta, text)  # through the module: one place to fail a write in tests
        except OSError as exc:  # named as the JSON's, not as the tensor file's whose block this is
            raise write_error(run.checkpoint_spec, exc) from exc
    # the tensors were renamed into place first (the whole checkpoint), then the JSON copy


def saved_epochs(run: RunDir) -> int:
    """The epochs the checkpoint on disk holds, from its readable copy (0 where there is none)."""
    if not run.checkpoint_spec.exists():
        return 0
    history = read_json(run.checkpoint_spec, dict).get("history", [])
    return len(history) if isinstance(history, list) else 0


def load_checkpoint(run: RunDir, model: nn.Module, optimizer: Optimizer) -> dict[str, Any]:
    """Restore model and optimizer from the run's checkpoint; return its state (history, config, ...).

    The state is the one stored in the tensor file itself, so tensors and state always come from the
    same epoch; checkpoint.json must be a readable checkpoint too (it may be one epoch behind, see
    `save_checkpoint`). A tensor file without its state is refused, naming both files.
    """
    meta = read_json(run.checkpoint_spec, dict) if run.checkpoint_spec.exists() else {}
    if meta and meta.get("format") not in (CHECKPOINT_FORMAT, FIRST_CHECKPOINT_FORMAT):
        raise RunError(f"{run.checkpoint_spec}: not a pixlearn checkpoint (format {meta.get('format')!r})")
    tensors = read_weights(run.checkpoint)
    state = metadata_json(run.checkpoint, "state", MAX_JSON_DEPTH)
    if state is not None and (not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT):
        raise RunError(f"{run.checkpoint}: the state in its metadata is not a pixlearn checkpoint's")
    if state is None and meta.get("format") != FIRST_CHECKPOINT_FORMAT:  # format 1 kept the state in the JSON only
        raise RunError(
            f"{run.checkpoint}: holds no checkpoint state, so it cannot be matched with {run.checkpoint_spec}; "
            "start the run again (--overwrite, or overwrite=True)"
        )
    state = state if state is not None else meta
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_checked(unwrap(model), model_state, run.checkpoint)
    try:
        slots: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = value
        for index, names in state.get("optim_scalars", {}).items():
            slots.setdefault(int(index), {}).update(names)
        loaded = {"state": slots, "param_groups": state.get("param_groups")}
        problem = optimizer_state_problem(optimizer, loaded)
        if problem is None:
            optimizer.load_state_dict(loaded)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        problem = repr(exc)
    if problem:
        raise RunError(f"{run.checkpoint}: the optimizer state does not fit this run ({problem})")
    return state
