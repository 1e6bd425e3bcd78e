"""A model's files in a run directory: safetensors weights and the JSON spec, written and read."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from pixlearn.core.distributed import unwrap
from pixlearn.core.errors import RunError
from pixlearn.core.storage.files import check_regular_file, open_data_file
from pixlearn.core.storage.rundir import atomic_path, read_json, write_json
from pixlearn.core.storage.spec import (
    MAX_SPEC_BYTES,
    MAX_WEIGHT_BYTES,
    MAX_WEIGHT_HEADER_BYTES,
    SPEC_NAME,
    SPEC_VERSION,
    ModelSpec,
)

SPEC_FORMAT = f"{SPEC_NAME}/{SPEC_VERSION}"


def save_model(model: nn.Module, spec: ModelSpec, directory: str | os.PathLike, stem: str = "model") -> None:
    """Write `stem.safetensors` (weights) and `stem.json` (the spec) into `directory`."""
    directory = Path(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in plain_state_dict(model).items()}
    with atomic_path(directory / f"{stem}.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": SPEC_FORMAT, "model": spec.model})
    write_json(directory / f"{stem}.json", spec.to_dict())


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    # DistributedDataParallel and torch.compile wrap the model; save the inner one's names.
    return unwrap(model).state_dict()


def read_spec(directory: str | os.PathLike, stem: str = "model") -> ModelSpec:
    """The checked spec `stem.json` (at most MAX_SPEC_BYTES: a huge file is refused unread)."""
    path = Path(directory) / f"{stem}.json"
    info = check_regular_file(path)
    if info is not None and info.st_size > MAX_SPEC_BYTES:
        raise RunError(f"{path}: {info.st_size:,} bytes, over the limit of {MAX_SPEC_BYTES:,} bytes for a model spec")
    return ModelSpec.from_dict(read_json(path), path)


def _safetensors_head(path: Path) -> tuple[os.stat_result, int]:
    """The file's size and its header's declared length; a pickle, a zip or garbage is refused unread."""
    info = check_regular_file(path)  # safetensors maps the file itself: a FIFO must not reach it
    with open_data_file(path, "rb") as f:
        head = f.read(9)
    # safetensors starts with an 8-byte header length, then the JSON header's "{". The length's
    # first byte may well be 0x80, so a pickle is recognised only once the "{" is missing.
    if head[8:9] != b"{":
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise RunError(f"{path}: looks like a pickle / torch.save file; only safetensors weights are loaded")
        raise RunError(f"{path}: not a valid safetensors file (no safetensors header)")
    assert info is not None
    return info, int.from_bytes(head[:8], "little")


def read_weights_header(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a safetensors file's tensors, from its header alone (no tensor is read).

    The file must be at most MAX_WEIGHT_BYTES and its header at most MAX_WEIGHT_HEADER_BYTES;
    safetensors checks that the header's tensors cover the file exactly, so the size bounds them too.
    """
    path = Path(path)
    info, header_bytes = _safetensors_head(path)
    if info.st_size > MAX_WEIGHT_BYTES:
        raise RunError(f"{path}: {info.st_size:,} bytes, over the limit of {MAX_WEIGHT_BYTES:,} bytes for weights")
    if header_bytes > MAX_WEIGHT_HEADER_BYTES:
        raise RunError(f"{path}: a {header_bytes:,}-byte header, over the limit of {MAX_WEIGHT_HEADER_BYTES:,} bytes")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from exc


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a zip, garbage) is refused unread, and so is
    a tensor holding NaN or infinity (`check_finite`)."""
    path = Path(path)
    _safetensors_head(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from exc
    check_finite(tensors, path)
    return tensors


def check_finite(tensors: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN or infinity, naming the file and the first such tensor.

    The one check of every weights file pixlearn loads (`read_weights`: a run's model, `--weights`,
    a checkpoint, the best epoch's): a network with one NaN weight computes NaN for every image, so
    training would go on with loss nan and prediction write NaN probabilities, all without a word.
    """
    for name, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int(tensor.numel() - torch.isfinite(tensor).sum())
            if bad:
                raise RunError(
                    f"{source}: tensor {name!r} holds {bad:,} values that are NaN or infinite (of "
                    f"{tensor.numel():,}); weights must be finite numbers"
                )


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | os.PathLike) -> None:
    """Load weights whose names and shapes must match the model exactly."""
    expected = model.state_dict()
    check_shapes({k: t.shape for k, t in expected.items()}, {k: t.shape for k, t in state.items()}, source)
    for key, tensor in expected.items():
        if state[key].is_floating_point() != tensor.is_floating_point():
            # load_state_dict would cast silently (an int tensor truncated into float weights).
            raise RunError(f"{source}: tensor {key!r} is {state[key].dtype}, the model needs {tensor.dtype}")
    model.load_state_dict(state, strict=True)


def check_shapes(
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    source: str | os.PathLike,
    model: str = "the model",
) -> None:
    """Refuse weights (`found`: name -> shape) whose names or shapes differ from the model's."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        raise RunError(f"{source}: weights do not match {model} (missing {missing[:5]}, unexpected {extra[:5]})")
    for key, shape in expected.items():
        if tuple(found[key]) != tuple(shape):
            raise RunError(f"{source}: tensor {key!r} has shape {tuple(found[key])}, {model} needs {tuple(shape)}")
