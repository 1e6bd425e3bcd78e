"""Training from pretrained weights (`--pretrained`, `--weights FILE`): the two modes of transfer learning.

- `--freeze` (a linear probe): the backbone stays as loaded. Each image's features (the input of
  the model's last Linear, the head) are computed once, in eval mode, and only the head is trained
  on them. The features are cached in the run directory (`features.safetensors`) and, with
  `--feature-cache DIR`, in a folder later runs reuse; a cache is keyed on the weights' SHA-256, the
  model, input size, colour, fit, normalisation, TTA and every file's path, size and mtime, so a
  stale one is never read (it is recomputed). With TTA the validation features are the mean of each
  image's and its mirror's: the head is linear, so that is exactly the mean of the two logits.
- fine-tuning (as fastai's `fine_tune`): `head_epochs` epochs (default 1) train the head with the
  backbone frozen (no gradients, learning rate 0) and its batch norms in eval mode, so they
  normalise with the pretrained running statistics and do not update them; then the whole network
  trains, the backbone at `backbone_lr_scale` (default 0.1) times the schedule's learning rate, its
  batch norms still in eval mode (`bn_stats` "pretrained", the default: `train_mode` says why) or in
  train mode (`bn_stats` "batch": batch statistics, running statistics updated with momentum 0.1).

The optimizer has the same parameter groups in both phases (head, backbone), so a checkpoint of
either phase resumes exactly; each epoch's phase is the `phase` column of history.csv.

    >>> transfer_phase(type("C", (), {"pretrained": True, "weights": None, "freeze": False, "head_epochs": 1})(), 0)
    'head'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from pixlearn.classify import balance
from pixlearn.classify.batches import normalise, optimise, rank_and_world, to_input
from pixlearn.classify.decoding import ImageSource
from pixlearn.classify.losses import classification_loss
from pixlearn.core import distributed, runs
from pixlearn.core.devices import uses_bf16
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.files import file_sha256
from pixlearn.core.progress import Silent
from pixlearn.core.spec import ModelSpec
from pixlearn.models.pretrained import imagenet_normalisation, imagenet_weights, load_weights, pretrained_models

FEATURES_FORMAT = "pixlearn-features/1"
FEATURES_FILE = "features.safetensors"  # in the run directory
FEATURE_BATCH = 32
_FROZEN: weakref.WeakKeyDictionary[nn.Module, FrozenFeatures] = weakref.WeakKeyDictionary()  # model -> its features


def is_transfer(config: Any) -> bool:
    return bool(config.pretrained or config.weights)


def transfer_phase(config: Any, epoch: int) -> str | None:
    """'head' (backbone frozen), 'full' (the whole network) or None (not a transfer run) for an epoch (from 0)."""
    if not is_transfer(config):
        return None
    return "head" if config.freeze or epoch < (config.head_epochs or 0) else "full"


def input_normalisation(model: str) -> tuple[float, float] | None:
    """The (mean, std) a model's inputs are normalised with (its ImageNet weights'), pretrained or not."""
    return imagenet_normalisation(model) if model in pretrained_models() else None


def normalised(x: torch.Tensor, config: Any) -> torch.Tensor:
    """A training batch in [0, 1], augmented, normalised as the run's spec.normalize says (batches.normalise)."""
    return normalise(x, input_normalisation(config.model))


def inference_options(config: Any, device: torch.device) -> tuple[bool, tuple[float, float] | None]:
    """(bf16, normalize) for batches.predict_logits during training, as the saved spec will have them."""
    return uses_bf16(config.precision, device), input_normalisation(config.model)


def spec_fields(config: Any) -> dict[str, Any]:
    """The ModelSpec fields a transfer run adds: the input normalisation and the starting weights."""
    return {"normalize": input_normalisation(config.model), "start_weights": weights_record(config)}


def started(model: nn.Module, config: Any) -> nn.Module:
    """`model` with the run's starting weights loaded (`load_start`)."""
    load_start(model, config)
    return model


def epoch_steps(model: nn.Module, train_one_epoch: Callable, validate: Callable) -> tuple[Callable, Callable]:
    """The epoch's (train, validate) functions: the FrozenFeatures' for a --freeze run, else those given."""
    frozen = _FROZEN.get(runs.unwrap(model))
    return (frozen.train_epoch, frozen.validate) if frozen is not None else (train_one_epoch, validate)


def weights_file(config: Any) -> Path | None:
    if config.pretrained:
        return imagenet_weights(config.model)
    return Path(config.weights) if config.weights else None


def weights_record(config: Any) -> dict[str, str] | None:
    """{"file": name, "sha256": digest} of the weights a run starts from, or None (random initialisation)."""
    path = weights_file(config)
    return None if path is None else {"file": path.name, "sha256": file_sha256(path)}


def load_start(model: nn.Module, config: Any) -> list[str]:
    """Load the run's starting weights into `model` (the head left new where its shape differs);
    the names of the tensors left as built."""
    path = weights_file(config)
    return [] if path is None else load_weights(model, path, skip_head=True)


def input_notes(config: Any, color: str) -> list[str]:
    """What the data summary says about how images reach a pretrained network."""
    notes = []
    if input_normalisation(config.model) is not None:
        mean, std = input_normalisation(config.model)  # type: ignore[misc]
        notes.append(f"inputs normalised as (x - {mean}) / {std}, as {config.model}'s ImageNet weights expect")
    if not is_transfer(config):
        return notes
    notes.append("transparent images are composited on a white background")
    if color == "grayscale":
        notes.append(
            "grey images: one input channel; the RGB weights of the first convolution are summed over the "
            "colours (the same logits as the grey image copied into R, G and B)"
        )
    return notes


# ---------------------------------------------------------------------------------- phases


def head_keys(model: nn.Module) -> list[str]:
    """Parameter names of the model's head: its last Linear (as pretrained.load_weights)."""
    linears = [name for name, m in runs.unwrap(model).named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(runs.unwrap(model)).__name__} has no Linear head to train on its own")
    prefix = f"{linears[-1]}." if linears[-1] else ""
    return [k for k, _ in runs.unwrap(model).named_parameters() if k.startswith(prefix) and "." not in k[len(prefix) :]]


def trainable_groups(model: nn.Module, config: Any) -> list[Any]:
    """The optimizer's parameters: as before for a plain run; the head alone for --freeze (the backbone
    gets requires_grad False); for fine-tuning two groups, head and backbone, with an `lr_scale` each."""
    if not is_transfer(config) or not (config.freeze or config.head_epochs):
        return [p for p in model.parameters() if p.requires_grad]
    if distributed.world_size() > 1:
        raise ConfigError("--freeze and --head-epochs run in one process (not under torchrun) for now")
    named = dict(runs.unwrap(model).named_parameters())
    head = [named[k] for k in head_keys(model)]
    backbone = [p for k, p in named.items() if k not in head_keys(model)]
    if config.freeze:
        for p in backbone:
            p.requires_grad_(False)
        return head
    return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr_scale": config.backbone_lr_scale}]


def enter_phase(model: nn.Module, optimizer: torch.optim.Optimizer, config: Any, epoch: int) -> dict[str, str]:
    """Set the model and optimizer up for `epoch`'s phase; {"phase": ...} for its history row ({} if none)."""
    phase = transfer_phase(config, epoch)
    if phase is None:
        return {}
    if not config.freeze and len(optimizer.param_groups) == 2:
        backbone = optimizer.param_groups[1]
        backbone["lr_scale"] = 0.0 if phase == "head" else config.backbone_lr_scale
        for p in backbone["params"]:
            p.requires_grad_(phase == "full")
    return {"phase": phase}


def train_mode(model: nn.Module, config: Any) -> None:
    """model.train(), but batch norms stay in eval mode, normalising with the pretrained running
    statistics and keeping them, where their parameters are all frozen (the head phase) and, when
    fine-tuning with `bn_stats` "pretrained", throughout (their scale and shift still train).

    Why "pretrained" by default: on 1,000 Fashion-MNIST images (bench/bench_transfer.py) fine-tuning
    reached 86.5% with the pretrained statistics and 83.6% with each batch's (8 epochs): batch
    statistics of 32 grey, upscaled images move every layer's inputs away from what ImageNet's
    training left, and the evaluation then uses running averages of those noisy statistics."""
    model.train()
    keep_all = is_transfer(config) and not config.freeze and config.bn_stats == "pretrained"
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        frozen = not any(p.requires_grad for p in params)
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and (keep_all or frozen):
            m.eval()


# ---------------------------------------------------------------------------------- --freeze


@dataclass
class FrozenFeatures:
    """The cached features of the training and held-out images and the head trained on them.
    `train_epoch` and `validate` stand in for training.train_one_epoch and training.validate."""

    head: nn.Module
    train: torch.Tensor  # (N, D) float32
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    lr_at: Callable[[int, int, int, Any], float]

    def train_epoch(self, _model: nn.Module, _data: Any, optimizer: torch.optim.Optimizer, config: Any,
                    epoch: int, device: torch.device, progress: Silent) -> dict[str, float]:  # fmt: skip
        self.head.train()
        steps_per_epoch = math.ceil(len(self.train) / config.batch_size)
        classes = int(self.train_labels.max()) + 1  # every class has training images (checked when decoded)
        weights = balance.loss_weights(self.train_labels, classes, config)  # --balance, as the CNN's epochs
        order = balance.epoch_order(self.train_labels, classes, config, epoch)
        batches = ((self.train[i].to(device), self.train_labels[i].to(device)) for i in order)
        loss_sum, correct, seen = optimise(
            batches, self.head, optimizer, config, epoch, steps_per_epoch, self.lr_at, weights, progress
        )
        return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)}

    @torch.no_grad()
    def validate(self, _model: nn.Module, _data: Any, config: Any, device: torch.device) -> dict[str, float]:
        if len(self.test) == 0:
            return {}
        self.head.eval()
        logits = self.head(self.test.to(device)).float().cpu()
        loss = classification_loss(logits, self.test_labels, config.head).item()
        accuracy = (logits.argmax(1) == self.test_labels).float().mean().item()
        counts = balance.confusion_counts(logits.argmax(1), self.test_labels, logits.shape[1]).numpy()
        scores = {f"val_{k}": v for k, v in balance.scores_from_confusion(counts).items()}
        return {"val_loss": loss, "val_accuracy": accuracy, **scores}


def frozen_features(model: nn.Module, spec: ModelSpec, config: Any, run: runs.RunDir, sets: Sequence[ImageSource],
                    device: torch.device, progress: Silent, lr_at: Callable) -> FrozenFeatures | None:  # fmt: skip
    """For --freeze: the features of the train and test sets, from the run's or --feature-cache's
    cache when its key matches, else computed (and cached); None for any other run."""
    if not config.freeze:
        return None
    key = feature_key(spec, config, sets)
    places = [run.path / FEATURES_FILE]
    if config.feature_cache:
        places.append(Path(config.feature_cache) / f"features-{key[:24]}.safetensors")
    cached = next((c for c in map(lambda p: read_features(p, key), places) if c is not None), None)
    if cached is None:
        progress.note("computing the frozen backbone's features once per image")
        bf16 = uses_bf16(config.precision, device)
        cached = {
            "train": compute_features(model, sets[0], spec, device, tta=False, bf16=bf16),
            "test": compute_features(model, sets[1], spec, device, tta=spec.tta, bf16=bf16),
        }
    if rank_and_world()[0] == 0:
        for place in places:
            if read_features(place, key) is None:
                write_features(place, cached, key)
    head = runs.unwrap(model).get_submodule(head_keys(model)[0].rsplit(".", 1)[0])
    frozen = FrozenFeatures(head, cached["train"], sets[0].labels, cached["test"], sets[1].labels, lr_at)
    _FROZEN[runs.unwrap(model)] = frozen
    return frozen


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
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


@torch.inference_mode()
def compute_features(model: nn.Module, data: ImageSource, spec: ModelSpec, device: torch.device,
                     tta: bool = False, bf16: bool = False) -> torch.Tensor:  # fmt: skip
    """(N, D) float32 inputs of the model's head for every image, the model in eval mode (with `tta`,
    the mean over each image and its mirror); the backbone under bf16 autocast with `bf16`, channels-last
    (efficientnet-lite0 at 224x224: the forward pass 2.5x float32's images/s in one process, one thread, under
    load; the whole command's features phase 203 images/s on 2 idle cores: bench/bench_transfer.py --parts features)."""
    net = runs.unwrap(model)
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
    with runs.atomic_path(path) as tmp:
        tensors = {k: v.contiguous() for k, v in features.items()}
        save_file(tensors, str(tmp), metadata={"format": FEATURES_FORMAT, "key": key})


def recorded(spec: ModelSpec) -> dict[str, Any]:
    """What metrics.json records of the starting weights."""
    return {"start_weights": spec.start_weights} if spec.start_weights else {}
