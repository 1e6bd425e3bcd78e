"""Features of every checked image: pretrained embeddings, a trained run's, or plain pixels.

- `pretrained`: EfficientNet-Lite0's ImageNet features (the 1,280 inputs of its head; grey images
  through the summed first convolution, as `train --pretrained` feeds them), at the size `check`
  decodes to (112 by default: a quarter of 224's work, and enough for near duplicates and label issues);
- a trained run (`check --run RUN`): its own model's head inputs, the images decoded as it was trained;
- `pixels`: no network at all, each image shrunk to PIXEL_SIDE x PIXEL_SIDE (hash-only near
  duplicates; label issues and outliers from the pixels).

Embeddings are kept in the check directory (`features.safetensors`), keyed on the weights'
SHA-256, the model, the decoding and every file's path, size and mtime (`transfer.read_features`):
a rerun with other thresholds reads them instead of running the network again.

    >>> import torch
    >>> pixel_features(torch.zeros(2, 1, 64, 64, dtype=torch.uint8)).shape
    torch.Size([2, 1024])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pixlearn.classify.data.decoding import ImageSet
from pixlearn.classify.inference.features import compute_features, read_features, write_features
from pixlearn.core.devices import uses_bf16
from pixlearn.core.errors import ConfigError
from pixlearn.core.progress import SILENT, Progress
from pixlearn.core.storage.files import file_sha256
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.pretrained import imagenet_normalisation, imagenet_weights, load_weights
from pixlearn.models.registry import create_model

PRETRAINED_MODEL = "efficientnet-lite0"
PIXEL_SIDE = 32  # pixel features: each image shrunk to 32 x 32 (1,024 values per channel)
CHUNK = 256  # images per progress step while embedding
FORMAT = "pixlearn-check-features/1"


def pixel_features(images: torch.Tensor, side: int = PIXEL_SIDE) -> torch.Tensor:
    """(N, C x side x side) float32 pixels in [0, 1], each image shrunk by area averaging."""
    out = []
    for start in range(0, len(images), 1024):
        x = images[start : start + 1024].float() / 255.0
        out.append(torch.nn.functional.adaptive_avg_pool2d(x, (side, side)).flatten(1))
    return torch.cat(out) if out else torch.zeros(0, images.shape[1] * side * side)


def pretrained_network(channels: int, size: tuple[int, int]) -> tuple[torch.nn.Module, ModelSpec, str]:
    """EfficientNet-Lite0 with its ImageNet weights, its spec (the input normalisation) and the weights' SHA-256.

    Without the weights package this is a ConfigError that says how to install it, or how to check
    without a network (`embeddings="pixels"`): never a silent change of method.
    """
    try:
        weights = imagenet_weights(PRETRAINED_MODEL)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; or check without a network: --embeddings pixels (hashes and pixels only)") from exc
    model = create_model(PRETRAINED_MODEL, in_channels=channels, num_classes=2, input_size=size)
    load_weights(model, weights, skip_head=True)
    color = "grayscale" if channels == 1 else "rgb"
    spec = ModelSpec.classifier(PRETRAINED_MODEL, ["a", "b"], size, color, normalize=imagenet_normalisation())
    return model.eval(), spec, file_sha256(weights)


def network_features(
    model: torch.nn.Module,
    spec: ModelSpec,
    data: ImageSet,
    device: torch.device,
    progress: Progress = SILENT,
) -> torch.Tensor:
    """(N, D) head inputs of `model` for every image of `data` (`transfer.compute_features`), in chunks
    so a progress bar moves."""
    bf16 = uses_bf16(spec.precision or "auto", device)
    model = model.to(device).to(memory_format=torch.channels_last)
    parts = []
    for start in range(0, len(data), CHUNK):
        index = torch.arange(start, min(start + CHUNK, len(data)))
        parts.append(compute_features(model, data.subset(index), spec, device, tta=False, bf16=bf16))
        progress.advance(len(index))
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def features_key(weights_sha: str, spec: ModelSpec, paths: Sequence[str]) -> str:
    """A SHA-256 of everything the embeddings depend on: weights, network, decoding, files."""

    def stamp(path: str) -> list:
        try:
            info = os.stat(path)
        except OSError:
            return [path, -1, -1]
        return [path, info.st_size, info.st_mtime_ns]

    described = {
        "format": FORMAT,
        "weights": weights_sha,
        "model": spec.model,
        "decoding": [spec.input_size, spec.color, spec.fit, spec.normalize, spec.precision],
        "files": [stamp(p) for p in paths],
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str, allow_nan=False).encode()).hexdigest()


def cached_features(place: Path, key: str, compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """(features, whether they came from the cache at `place`); computed and written there otherwise."""
    cached = read_features(place, key)
    if cached is not None:
        return cached["train"], True
    features = compute()
    # transfer's cache format holds a train and a test tensor; a check keeps every image in "train".
    write_features(place, {"train": features, "test": torch.zeros(0, features.shape[1])}, key)
    return features, False
