"""Whether what a run directory holds is whole and belongs together: small checks `core.runs` uses.

- `too_deep`: JSON nested deeper than a limit, found by a loop (the depth it checks is the one that
  would overflow a recursive reader or renderer);
- `metadata_json`: a JSON value stored in a safetensors file's metadata (a checkpoint's state
  travels inside its tensor file, so one rename commits both);
- `optimizer_state_problem`: whether a checkpoint's optimizer state fits the optimizer it is loaded into.

    >>> too_deep([[[1]]], limit=3), too_deep([[[[1]]]], limit=3)
    (False, True)
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from pixlearn.core.errors import RunError
from pixlearn.core.optim import Optimizer


def too_deep(data: Any, limit: int) -> bool:
    """True when lists and objects in `data` nest more than `limit` levels."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def metadata_json(path: str | os.PathLike, key: str, limit: int) -> Any:
    """The JSON value under `key` in a safetensors file's metadata; None where the key is absent.

    The file must already have passed `runs.read_weights`' checks; a value that is not JSON, or
    nests more than `limit` levels, is a RunError naming the file.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from exc
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise RunError(f"{path}: its metadata {key!r} is not valid JSON") from None
    except RecursionError:
        value = None
    if value is None or too_deep(value, limit):
        raise RunError(f"{path}: its metadata {key!r} is nested too deeply (more than {limit} levels)")
    return value


def optimizer_state_problem(optimizer: Optimizer, loaded: dict[str, Any]) -> str | None:
    """Why a loaded optimizer state does not fit `optimizer` (settings of other types, a moment of
    another shape), or None. torch's own load_state_dict checks only the group and parameter counts;
    a tampered value would otherwise fail inside the first step of the resumed training."""
    fresh = optimizer.state_dict()
    groups = loaded.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        return f"{len(fresh['param_groups'])} parameter group(s) expected"
    for index, (want, got) in enumerate(zip(fresh["param_groups"], groups, strict=True)):
        problem = _value_problem(want, got, f"param_groups[{index}]")
        if problem:
            return problem
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, slot in loaded.get("state", {}).items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            return f"state for parameter {index!r}, the optimizer has {len(params)}"
        for name, value in slot.items():
            if isinstance(value, torch.Tensor) and value.dim() and value.shape != params[index].shape:
                shape, wanted = tuple(value.shape), tuple(params[index].shape)
                return f"state {name!r} of parameter {index} has shape {shape}, the parameter {wanted}"
    return None


def _value_problem(want: Any, got: Any, where: str) -> str | None:
    """Whether `got` has the structure and types of `want` (keys `got` lacks keep torch's defaults)."""
    if isinstance(want, dict | list | tuple):
        if isinstance(want, dict) != isinstance(got, dict) or not isinstance(got, dict | list | tuple):
            return f"{where} must be {'an object' if isinstance(want, dict) else 'a list'}"
        if isinstance(want, dict):
            pairs = [(f"{where}.{k}", want[k], got[k]) for k in want if k in got]
        elif len(got) != len(want):
            return f"{where} must be a list of {len(want)}"
        else:
            pairs = [(f"{where}[{i}]", w, g) for i, (w, g) in enumerate(zip(want, got, strict=True))]
        for inner, w, g in pairs:
            problem = _value_problem(w, g, inner)
            if problem:
                return problem
        return None
    if isinstance(want, bool) or want is None:
        return None if got is None or isinstance(got, bool) else f"{where} must be true, false or null"
    if isinstance(want, int | float):
        numeric = isinstance(got, int | float) and not isinstance(got, bool)
        return None if numeric and math.isfinite(got) else f"{where} must be a finite number, not {got!r}"
    return None if isinstance(got, type(want)) else f"{where} must be a {type(want).__name__}"
