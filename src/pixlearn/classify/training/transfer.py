"""Training from pretrained weights (`--pretrained`, `--weights FILE`): the two modes of transfer learning.

- `--freeze` (a linear probe): the backbone stays as loaded. Each image's features (the input of
  the model's last Linear, the head) are computed once, in eval mode, and only the head is trained
  on them. The features are cached in the run directory (`features.safetensors`) and, with
  `--feature-cache DIR`, in a folder later runs reuse; a cache is keyed on the weights' SHA-256, the
  model, input size, colour, fit, normalisation, TTA and every file's path, size and mtime, so a
  stale one is never read (it is recomputed). With TTA the validation features are the mean of each
  image's and its mirror's: the head is linear, so that is exactly the mean of the two logits.
- fine-tuning (as fastai's `fine_tune`), two phases, each with its own schedule (`phase_steps`; a
  fine-tuning run's default schedule, onecycle, warms up and anneals in each):
  1. the head phase, `head_epochs` epochs: the backbone frozen, the head trained on the linear probe's
     cached features (`FrozenFeatures`), so the phase costs one forward pass per image, once. Its
     epochs see each image as decoded: augmentation and the head's dropout start with the full phase.
  2. the full phase: the whole network, with discriminative learning rates: the head at the
     schedule's rate, the stem at rate / `lr_mult`, the backbone's stages between spaced geometrically
     (`stage_groups` finds them from the network, `stage_scales` spaces them). Its batch norms stay in
     eval mode (`bn_stats` "pretrained", the default: `train_mode` says why) or go to train mode
     (`bn_stats` "batch": batch statistics, running statistics updated with momentum 0.1).

The optimizer has the same parameter groups in both phases (the head's, then one per stage, each named
after its modules), so a checkpoint of either phase resumes exactly; each epoch's phase is the `phase`
column of history.csv.

    >>> transfer_phase(type("C", (), {"pretrained": True, "weights": None, "freeze": False, "head_epochs": 1})(), 0)
    'head'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.evaluation import multilabel
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


def phase_steps(config: Any, step: int, total: int, steps_per_epoch: int) -> tuple[int, int]:
    """(the step within its phase, the phase's steps): each fine-tuning phase has a schedule of its own,
    any other run one over all its steps. The head phase's length does not depend on `epochs`, so a run
    stopped in it and resumed with more epochs repeats the uninterrupted one.

        >>> fine = type("C", (), {"pretrained": True, "weights": None, "freeze": False, "head_epochs": 2})()
        >>> phase_steps(fine, 3, 10, 2), phase_steps(fine, 4, 10, 2)
        ((3, 4), (0, 6))
    """
    if not is_transfer(config) or config.freeze or not config.head_epochs:
        return step, total
    boundary = config.head_epochs * steps_per_epoch
    return (step, boundary) if step < boundary else (step - boundary, total - boundary)


def stage_scales(count: int, lr_mult: float) -> list[float]:
    """The learning-rate scales of `count` backbone groups, stem first: geometric from 1 / lr_mult (the
    stem) towards the head's 1, one equal factor per group. One group (stages not found) takes the middle
    of that range, 1 / sqrt(lr_mult): 0.1 at the default 100, the one backbone rate fine-tuning had before.

        >>> [round(s, 4) for s in stage_scales(4, 100)], stage_scales(1, 100)
        ([0.01, 0.0316, 0.1, 0.3162], [0.1])
    """
    if count == 1:
        return [lr_mult**-0.5]
    return [lr_mult ** (-(count - i) / count) for i in range(count)]


def stage_groups(model: nn.Module) -> list[tuple[str, list[str]]]:
    """The backbone's parameter names by stage, stem first, each as (a name from its modules, names).

    Found from the network: each top-level module before the head that holds parameters is a group
    (EfficientNet-Lite's stem and head_conv, resnet-small's stem), except a sequence of blocks (modules
    whose parameters are all their children's: EfficientNet-Lite's `blocks`, resnet-small's `stages`),
    which is cut into stages where a block's output channels change ("blocks.1-2": blocks 1 and 2). A
    network that is one flat sequence of layers (seed-cnn, airnet-small), or that holds parameters of
    its own outside its modules, is one group, "backbone".
    """
    net = distributed.unwrap(model)
    head = set(head_keys(model))
    backbone = [k for k, _ in net.named_parameters() if k not in head]
    if isinstance(net, nn.Sequential) or list(net.parameters(recurse=False)):
        return [("backbone", backbone)]
    groups: list[tuple[str, list[str]]] = []
    for name, child in net.named_children():
        if _is_blocks(child):
            groups += _stages_of(name, child)
        else:
            groups.append((name, [f"{name}.{k}" for k, _ in child.named_parameters()]))
    groups = [(name, [k for k in keys if k not in head]) for name, keys in groups]
    return [(name, keys) for name, keys in groups if keys]


def _is_blocks(module: nn.Module) -> bool:
    blocks = [m for m in module.children() if any(True for _ in m.parameters())]
    return (
        isinstance(module, nn.Sequential)
        and len(blocks) > 1
        and all(not list(m.parameters(recurse=False)) and _out_channels(m) for m in blocks)
    )


def _out_channels(block: nn.Module) -> int | None:
    """A block's output channels: those of its last convolution (a shortcut's equal its main path's)."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels if convs else None


def _stages_of(name: str, blocks: nn.Module) -> list[tuple[str, list[str]]]:
    """`blocks` cut where the output channels change: a stage's first block changes them, the rest keep them."""
    runs: list[list[str]] = []
    last = None
    for index, block in blocks.named_children():
        channels = _out_channels(block)
        if not runs or (channels is not None and channels != last):
            runs.append([])
        runs[-1].append(index)
        last = channels if channels is not None else last
    groups = []
    for run in runs:
        keys = [f"{name}.{i}.{k}" for i in run for k, _ in blocks.get_submodule(i).named_parameters()]
        groups.append((f"{name}.{run[0]}" if len(run) == 1 else f"{name}.{run[0]}-{run[-1]}", keys))
    return groups


def trainable_groups(model: nn.Module, config: Any) -> list[Any]:
    """The optimizer's parameters: as before for a plain run; the head alone for --freeze (the backbone
    gets requires_grad False); for fine-tuning one named group for the head, then one per stage of the
    backbone (`stage_groups`), stem first, each with its `lr_scale` (`enter_phase` sets them per phase)."""
    if not is_transfer(config):
        return [p for p in model.parameters() if p.requires_grad]
    if distributed.world_size() > 1 and (config.freeze or config.head_epochs):
        raise ConfigError("--freeze and --head-epochs run in one process (not under torchrun) for now")
    named = dict(distributed.unwrap(model).named_parameters())
    head = [named[k] for k in head_keys(model)]
    if config.freeze:
        for k, p in named.items():
            if k not in head_keys(model):
                p.requires_grad_(False)
        return head
    stages = stage_groups(model)
    scales = stage_scales(len(stages), config.lr_mult)
    groups = [{"name": "head", "params": head, "lr_scale": 1.0}]
    return groups + [
        {"name": name, "params": [named[k] for k in keys], "lr_scale": scale}
        for (name, keys), scale in zip(stages, scales, strict=True)
    ]


def enter_phase(model: nn.Module, optimizer: Optimizer, config: Any, epoch: int) -> dict[str, str]:
    """Set the model and optimizer up for `epoch`'s phase; {"phase": ...} for its history row ({} if none).
    The backbone's groups get learning-rate scale 0 and no gradients in the head phase, their stage's
    scale in the full phase (set each epoch: a checkpoint of either phase restores the saved scales)."""
    phase = transfer_phase(config, epoch)
    if phase is None:
        return {}
    if not config.freeze:
        backbone = optimizer.param_groups[1:]
        for group, scale in zip(backbone, stage_scales(len(backbone), config.lr_mult), strict=True):
            group["lr_scale"] = 0.0 if phase == "head" else scale
            for p in group["params"]:
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


# ---------------------------------------------------------------------------------- cached features


@dataclass
class FrozenFeatures:
    """The cached features of the training and held-out images and the head trained on them: made once
    per run by `frozen_features` and handed to the training loop, whose epochs on features (every epoch of
    --freeze, the head phase of fine-tuning: `steps`) call `train_epoch` and `validate` in place of
    loop.train_one_epoch and loop.validate (same arguments). The features are read or computed (`load`)
    when the first such epoch needs them, so a fine-tuning run resumed in its full phase computes none."""

    head: nn.Module
    load: Callable[[], dict[str, torch.Tensor]]  # {"train": (N, D), "test": (M, D)} float32
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    lr_at: Callable[[int, int, int, Any], float]
    head_epochs: int | None = None  # fine-tuning: the epochs on features; None (--freeze): every epoch
    loaded: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def train(self) -> torch.Tensor:
        return self._features()["train"]

    @property
    def test(self) -> torch.Tensor:
        return self._features()["test"]

    def _features(self) -> dict[str, torch.Tensor]:
        if self.loaded is None:
            self.loaded = self.load()
        return self.loaded

    def steps(self, epoch: int, network: tuple[Callable, Callable]) -> tuple[Callable, Callable]:
        """(train_epoch, validate) for `epoch` (from 0): on the features, or `network`'s (the whole network's)."""
        if self.head_epochs is not None and epoch >= self.head_epochs:
            return network
        return self.train_epoch, self.validate

    def train_epoch(self, _model: nn.Module, _data: Any, optimizer: Optimizer, config: Any,
                    epoch: int, device: torch.device, progress: Progress) -> dict[str, float]:  # fmt: skip
        self.head.train()
        steps_per_epoch = math.ceil(len(self.train) / config.batch_size)
        labels = self.train_labels  # every class has training images (checked when decoded)
        classes = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
        weights = sampling.loss_weights(self.train_labels, classes, config)  # --balance, as the CNN's epochs
        order = sampling.epoch_order(self.train_labels, classes, config, epoch)
        batches = ((self.train[i].to(device), self.train_labels[i].to(device)) for i in order)
        loss_sum, correct, seen = optimise(
            batches, self.head, optimizer, config, epoch, steps_per_epoch, self.lr_at, weights, progress
        )
        return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)}

    @torch.no_grad()
    def validate(self, _model: nn.Module, _data: Any, config: Any, device: torch.device) -> dict[str, float]:
        if len(self.test_labels) == 0:
            return {}
        self.head.eval()
        logits = self.head(self.test.to(device)).float().cpu()
        if self.test_labels.ndim == 2:  # many labels per image
            return multilabel.validation_figures(logits, self.test_labels)
        loss = classification_loss(logits, self.test_labels, config.head).item()
        accuracy = (logits.argmax(1) == self.test_labels).float().mean().item()
        counts = confusion_counts(logits.argmax(1), self.test_labels, logits.shape[1]).numpy()
        scores = {f"val_{k}": v for k, v in scores_from_confusion(counts).items()}
        return {"val_loss": loss, "val_accuracy": accuracy, **scores}


def frozen_features(model: nn.Module, spec: ModelSpec, config: Any, run: rundir.RunDir, sets: Sequence[ImageSource],
                    device: torch.device, progress: Progress, lr_at: Callable) -> FrozenFeatures | None:  # fmt: skip
    """For --freeze and for fine-tuning's head phase: the head and, on first use, the features of the train
    and test sets, from the run's or --feature-cache's cache when its key matches, else computed (and
    cached); None for any other run."""
    fine_tuning = is_transfer(config) and not config.freeze and bool(config.head_epochs)
    if not (config.freeze or fine_tuning):
        return None

    def load() -> dict[str, torch.Tensor]:
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
        return cached

    head = distributed.unwrap(model).get_submodule(head_keys(model)[0].rsplit(".", 1)[0])
    head_epochs = config.head_epochs if fine_tuning else None
    return FrozenFeatures(head, load, sets[0].labels, sets[1].labels, lr_at, head_epochs)


def recorded(spec: ModelSpec) -> dict[str, Any]:
    """What metrics.json records of the starting weights."""
    return {"start_weights": spec.start_weights} if spec.start_weights else {}
