"""The one optimisation loop (`optimise`): every classifier's epoch, the CNN's and the frozen-feature
head's, one batch at a time with the loss of `inference.heads`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from pixlearn.classify.inference.heads import classification_loss
from pixlearn.core.optim import Optimizer
from pixlearn.core.progress import Progress


def optimise(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: Optimizer,
    config: Any,
    epoch: int,
    steps_per_epoch: int,
    lr_at: Callable[[int, int, int, Any], float],
    weights: torch.Tensor | None,
    progress: Progress,
) -> list[float]:
    """One epoch of optimiser steps over (inputs, labels) batches already on the device: the
    learning rate of each step (scaled per parameter group: transfer's backbone and head), the
    loss, the step, the running figures. Returns [loss sum, correct, seen] of this process."""
    loss_sum = correct = seen = 0.0
    for i, (x, y) in enumerate(batches):
        lr = lr_at(epoch * steps_per_epoch + i, steps_per_epoch * config.epochs, steps_per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        logits = forward(x).float()
        loss = classification_loss(logits, y, config.head, config.label_smoothing, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += hits(logits, y)
        seen += len(y)
        progress.advance(len(y), loss=loss_sum / seen, acc=correct / seen)
    return [loss_sum, correct, seen]


def hits(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Images right: the top class is the label; with many labels per image (multi-hot `y`), the share
    of each image's labels decided right at probability 1/2 (so the running accuracy is 1 - Hamming loss)."""
    if y.ndim == 2:
        return ((logits > 0) == (y > 0.5)).float().mean(1).sum().item()
    return (logits.argmax(1) == y).sum().item()
