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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.evaluation.scores import confusion_counts, scores_from_confusion
from pixlearn.classify.inference.features import (
    FEATURES_FILE,
    compute_features,
    feature_key,
    head_keys,
    read_features,
    weights_file,
    weights_record,
    write_features,
)
from pixlearn.classify.inference.forward import normalise
from pixlearn.classify.inference.heads import classification_loss
from pixlearn.classify.training import sampling
from pixlearn.classify.training.steps import optimise
from pixlearn.core import distributed
from pixlearn.core.devices import uses_bf16
from pixlearn.core.errors import ConfigError
from pixlearn.core.optim import Optimizer
from pixlearn.core.progress import Progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.pretrained import imagenet_normalisation, load_weights, pretrained_models


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


def trainable_groups(model: nn.Module, config: Any) -> list[Any]:
    """The optimizer's parameters: as before for a plain run; the head alone for --freeze (the backbone
    gets requires_grad False); for fine-tuning two groups, head and backbone, with an `lr_scale` each."""
    if not is_transfer(config) or not (config.freeze or config.head_epochs):
        return [p for p in model.parameters() if p.requires_grad]
    if distributed.world_size() > 1:
        raise ConfigError("--freeze and --head-epochs run in one process (not under torchrun) for now")
    named = dict(distributed.unwrap(model).named_parameters())
    head = [named[k] for k in head_keys(model)]
    backbone = [p for k, p in named.items() if k not in head_keys(model)]
    if config.freeze:
        for p in backbone:
            p.requires_grad_(False)
        return head
    return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr_scale": config.backbone_lr_scale}]


def enter_phase(model: nn.Module, optimizer: Optimizer, config: Any, epoch: int) -> dict[str, str]:
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
    """The cached features of the training and held-out images and the head trained on them: made once
    per --freeze run by `frozen_features` and handed to the training loop, whose epochs then call
    `train_epoch` and `validate` in place of loop.train_one_epoch and loop.validate (same arguments)."""

    head: nn.Module
    train: torch.Tensor  # (N, D) float32
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    lr_at: Callable[[int, int, int, Any], float]

    def train_epoch(self, _model: nn.Module, _data: Any, optimizer: Optimizer, config: Any,
                    epoch: int, device: torch.device, progress: Progress) -> dict[str, float]:  # fmt: skip
        self.head.train()
        steps_per_epoch = math.ceil(len(self.train) / config.batch_size)
        classes = int(self.train_labels.max()) + 1  # every class has training images (checked when decoded)
        weights = sampling.loss_weights(self.train_labels, classes, config)  # --balance, as the CNN's epochs
        order = sampling.epoch_order(self.train_labels, classes, config, epoch)
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
        counts = confusion_counts(logits.argmax(1), self.test_labels, logits.shape[1]).numpy()
        scores = {f"val_{k}": v for k, v in scores_from_confusion(counts).items()}
        return {"val_loss": loss, "val_accuracy": accuracy, **scores}


def frozen_features(model: nn.Module, spec: ModelSpec, config: Any, run: rundir.RunDir, sets: Sequence[ImageSource],
                    device: torch.device, progress: Progress, lr_at: Callable) -> FrozenFeatures | None:  # fmt: skip
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
    if distributed.rank() == 0:
        for place in places:
            if read_features(place, key) is None:
                write_features(place, cached, key)
    head = distributed.unwrap(model).get_submodule(head_keys(model)[0].rsplit(".", 1)[0])
    return FrozenFeatures(head, cached["train"], sets[0].labels, cached["test"], sets[1].labels, lr_at)


def recorded(spec: ModelSpec) -> dict[str, Any]:
    """What metrics.json records of the starting weights."""
    return {"start_weights": spec.start_weights} if spec.start_weights else {}
