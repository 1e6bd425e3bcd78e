"""The frozen-feature pass: a pretrained backbone's features of every image, cached on disk and reused
(training with `--freeze`, and the check's embeddings)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.inference.forward import to_input
from pixlearn.core import distributed
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.files import file_sha256
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.pretrained import imagenet_weights

FEATURES_FORMAT = "pixlearn-features/1"
FEATURES_FILE = "features.safetensors"  # in the run directory
FEATURE_BATCH = 32


def feature_key(spec: ModelSpec, config: Any, sets: Sequence[ImageSource]) -> str:
    """A SHA-256 of everything the cached features depend on: weights, network, decoding, files."""

    def stamp(path: str) -> list[Any]:
        try:
            stat = os.stat(path)
        except OSError:
            return [path, -1, -1]
        return [path, stat.st_size, stat.st_mtime_ns]

    record = weights_record(config) or {}
    described = {
        "format": FEATURES_FORMAT,
        "weights": record.get("sha256"),
        "model": spec.model,
        "kwargs": {k: v for k, v in spec.kwargs.items() if k != "num_classes"},
        "decoding": [spec.input_size, spec.color, spec.fit, spec.normalize, spec.tta],
        "precision": spec.precision,
        "files": [[stamp(str(p)) for p in s.paths] for s in sets],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str, allow_nan=False).encode()).hexdigest()


@torch.inference_mode()
def compute_features(model: nn.Module, data: ImageSource, spec: ModelSpec, device: torch.device,
                     tta: bool = False, bf16: bool = False) -> torch.Tensor:  # fmt: skip
    """(N, D) float32 inputs of the model's head for every image, the model in eval mode (with `tta`,
    the mean over each image and its mirror); the backbone under bf16 autocast with `bf16`, channels-last
    (efficientnet-lite0 at 224x224: the forward pass 2.5x float32's images/s in one process, one thread, under
    load; the whole command's features phase 203 images/s on 2 idle cores: bench/bench_transfer.py --parts features)."""
    net = distributed.unwrap(model)
    head = net.get_submodule(head_keys(model)[0].rsplit(".", 1)[0])
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().cpu()))
    was_training = net.training
    net.eval()
    try:
        index = torch.arange(len(data)).split(FEATURE_BATCH)
        for images, _ in data.batches(index):
            x = to_input(images, device, channels_last=True, normalize=spec.normalize)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                net(x)
                if tta:
                    net(x.flip(3))
                    mirrored = captured.pop()
                    captured[-1] = (captured[-1] + mirrored) / 2
    finally:
        hook.remove()
        net.train(was_training)
    width = head.in_features if isinstance(head, nn.Linear) else 0
    return torch.cat(captured) if captured else torch.zeros(0, width)


def read_features(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached features at `path` if it is a whole cache file of `key`, else None (absent, stale, damaged)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FEATURES_FORMAT or meta.get("key") != key:
                return None
            return {name: f.get_tensor(name) for name in ("train", "test")}
    except (SafetensorError, OSError, RunError):
        return None


def write_features(path: Path, features: dict[str, torch.Tensor], key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rundir.atomic_path(path) as tmp:
        tensors = {k: v.contiguous() for k, v in features.items()}
        save_file(tensors, str(tmp), metadata={"format": FEATURES_FORMAT, "key": key})


def weights_file(config: Any) -> Path | None:
    if config.pretrained:
        return imagenet_weights(config.model)
    return Path(config.weights) if config.weights else None


def weights_record(config: Any) -> dict[str, str] | None:
    """{"file": name, "sha256": digest} of the weights a run starts from, or None (random initialisation)."""
    path = weights_file(config)
    return None if path is None else {"file": path.name, "sha256": file_sha256(path)}


def head_keys(model: nn.Module) -> list[str]:
    """Parameter names of the model's head: its last Linear (as pretrained.load_weights)."""
    linears = [name for name, m in distributed.unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(distributed.unwrap(model)).__name__} has no Linear head to train on its own")
    prefix = f"{linears[-1]}." if linears[-1] else ""
    named = distributed.unwrap(model).named_parameters()
    return [k for k, _ in named if k.startswith(prefix) and "." not in k[len(prefix) :]]
