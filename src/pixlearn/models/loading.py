"""Loading a saved model: the spec (model.json) through the registry, then the safetensors weights.

Loading needs the registry, so it lives here rather than in core.runs.

    >>> from pixlearn.models.loading import load_model
    >>> model, spec = load_model("runs/demo")      # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from pixlearn.core.errors import RunError
from pixlearn.core.runs import load_state_checked, read_spec, read_weights
from pixlearn.core.spec import ModelSpec
from pixlearn.models.registry import UnknownModelError, create_model


def build_from_spec(spec: ModelSpec, source: str | os.PathLike = "model.json") -> nn.Module:
    """The registered network the spec names, built with the spec's constructor arguments."""
    try:
        return create_model(spec.model, spec.task, **spec.kwargs)
    except UnknownModelError as exc:
        raise RunError(f"{source}: {exc}") from exc
    except (TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{source}: the spec's kwargs do not fit model {spec.model!r} ({exc})") from exc


def load_model(
    directory: str | os.PathLike, stem: str = "model", device: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a saved model from its JSON spec and safetensors weights, in eval mode.

    >>> model, spec = load_model("runs/demo")  # doctest: +SKIP
    >>> spec.classes                             # doctest: +SKIP
    ('face', 'other')
    """
    directory = Path(directory)
    spec = read_spec(directory, stem)
    model = build_from_spec(spec, directory / f"{stem}.json")
    weights = directory / f"{stem}.safetensors"
    load_state_checked(model, read_weights(weights), weights)
    return model.to(device).eval(), spec
