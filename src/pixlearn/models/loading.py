"""Loading a saved model: the spec (model.json) through the registry, then the safetensors weights.

Loading needs the registry, so it lives here rather than in core.runs. Nothing is allocated for a
spec until it is known to fit its weights: the spec's limits (core.spec) are checked first, then
the weights file's size and header (names and shapes, no data), then the network is built on the
meta device (shapes without memory) and compared with the header; only then is it built for real
and loaded. A tampered model.json that claims a huge input, image or network is refused at once.

    >>> from pixlearn.models.loading import load_model
    >>> model, spec = load_model("runs/demo")      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from pixlearn.core.errors import RunError
from pixlearn.core.storage.rundir import RunDir
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.core.storage.weights import check_shapes, load_state_checked, read_spec, read_weights, read_weights_header
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
    RunDir(directory).check_not_being_written()  # a run still training has half its files
    spec = read_spec(directory, stem)  # ModelSpec.check: the spec's own limits
    source, weights = directory / f"{stem}.json", directory / f"{stem}.safetensors"
    check_against_weights(spec, read_weights_header(weights), source, weights)
    model = build_from_spec(spec, source)
    load_state_checked(model, read_weights(weights), weights)
    return model.to(device).eval(), spec


def check_against_weights(
    spec: ModelSpec, header: dict[str, tuple[int, ...]], source: str | os.PathLike, weights: str | os.PathLike
) -> None:
    """Refuse a spec whose network's tensor names and shapes differ from the weights file's header.

    The network is built on the meta device, so a kwarg that makes it huge (siren's `hidden`) costs
    no memory; one that makes it deep (`layers`) is stopped once it has registered more tensors
    than the header holds, so building it costs no time either.
    """
    budget = 2 * len(header) + 16  # non-persistent buffers are registered but not saved
    try:
        with torch.device("meta"), _tensor_budget(budget):
            model = build_from_spec(spec, source)
    except _OverBudget:
        raise RunError(
            f"{weights}: weights do not match the network {Path(source).name} describes (it has more than "
            f"{budget} tensors, the weights {len(header)})"
        ) from None
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    check_shapes(shapes, header, weights, f"the network {Path(source).name} describes")


class _OverBudget(Exception):  # noqa: N818 - internal signal, never escapes check_against_weights
    pass


@contextlib.contextmanager
def _tensor_budget(limit: int) -> Iterator[None]:
    """Raise _OverBudget inside the block once this thread's modules register more than `limit`
    parameters and buffers."""
    thread, count = threading.get_ident(), 0

    def hook(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal count
        if tensor is not None and threading.get_ident() == thread:
            count += 1
            if count > limit:
                raise _OverBudget

    handles = [register_module_parameter_registration_hook(hook), register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
