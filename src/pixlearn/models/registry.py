"""The model registry: every network pixlearn can build, by name.

The CLI's choices, the API's `list_models()` and the report all read this one table, so they
always list the same set. A constructor registers itself with `@register_model`:

    >>> from pixlearn.models.registry import create_model, list_models
    >>> "seed-cnn" in list_models("classify")
    True
    >>> model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    >>> sum(p.numel() for p in model.parameters())
    120242
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from pixlearn.core.errors import ConfigError, PixlearnError

Task = Literal["classify", "field"]
TASKS: tuple[str, ...] = ("classify", "field")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: Task  # "classify": images -> class logits; "field": (x, y) coordinates -> colour
    builder: Callable[..., nn.Module]
    description: str
    default_size: int | None = None  # classifiers: the input side used when no size is given
    min_size: int | None = None  # classifiers: the smallest input side the network is built for
    size_arg: str | None = None  # field models: the integer constructor argument that sets the size (`sized_kwargs`)

    def check_input_size(self, size: int) -> None:
        """Refuse an input side below `min_size` (the network would run, but it was not designed for it)."""
        if self.min_size is not None and size < self.min_size:
            raise InputTooSmallError(
                f"{self.name} needs inputs of at least {self.min_size}x{self.min_size}, got {size}x{size}"
            )


_REGISTRY: dict[str, ModelEntry] = {}


class InputTooSmallError(ConfigError):
    """An input size the chosen network cannot (or was not built to) take."""


class UnknownModelError(PixlearnError, KeyError):
    """A model name that is not registered (for the task asked); suggests the closest names."""

    def __init__(self, name: str, task: str | None = None):
        names = list_models(task)
        close = difflib.get_close_matches(str(name), names, n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        kind = f" {task}" if task else ""
        self.name = name
        super().__init__(f"unknown model {name!r}{hint} (registered{kind} models: {', '.join(names) or 'none'})")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


def register_model(
    name: str,
    task: Task,
    description: str,
    default_size: int | None = None,
    min_size: int | None = None,
    size_arg: str | None = None,
) -> Callable:
    """Decorator: register a constructor under `name`. Names are unique across tasks."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, task, builder, description, default_size, min_size, size_arg)
        return builder

    return decorate


def get_entry(name: str, task: Task | None = None) -> ModelEntry:
    entry = _REGISTRY.get(name)
    if entry is None or (task is not None and entry.task != task):
        raise UnknownModelError(name, task)
    return entry


def create_model(name: str, task: Task | None = None, **kwargs) -> nn.Module:
    """Build the registered model `name` with its keyword arguments (the JSON spec stores them)."""
    return get_entry(name, task).builder(**kwargs)


def list_models(task: Task | None = None) -> list[str]:
    """Registered model names, optionally only those of one task, in registration order."""
    return [e.name for e in _REGISTRY.values() if task is None or e.task == task]


def describe_models(task: Task | None = None) -> list[ModelEntry]:
    return [e for e in _REGISTRY.values() if task is None or e.task == task]


def parameter_count(name: str, **kwargs) -> int:
    """Parameters of the registered model `name` built with `kwargs`, on the meta device (no memory)."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


def sized_kwargs(name: str, target: int, **kwargs) -> tuple[dict, int] | None:
    """`kwargs` with the model's size argument (`size_arg`) set so that it has about `target`
    parameters (the closest count, searched by bisection; counts grow with the argument), and that
    count; None for a model of fixed size.

    >>> import pixlearn.models
    >>> kwargs, params = sized_kwargs("siren", 50_000, out_features=1)
    >>> kwargs["hidden"], params
    (128, 50049)
    """
    knob = get_entry(name).size_arg
    if knob is None:
        return None
    low, high = 1, 2
    while parameter_count(name, **kwargs, **{knob: high}) < target and high < 1 << 40:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if parameter_count(name, **kwargs, **{knob: middle}) < target:
            low = middle
        else:
            high = middle
    counts = {v: parameter_count(name, **kwargs, **{knob: v}) for v in (low, high)}
    best = min(counts, key=lambda v: abs(counts[v] - target))
    return {**kwargs, knob: best}, counts[best]
