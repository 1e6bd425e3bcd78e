"""Training fairly on unbalanced folders: class weights for the loss, or balanced draws.

`--balance weights` weighs each image's loss by n / (K x count of its class) (scikit-learn's
"balanced" class weights), so every class adds the same total to the loss; `--balance sampler`
draws each epoch's images with replacement, each class with the same chance, so batches hold the
classes equally often (as torch's WeightedRandomSampler with weights 1 / count). Both read the
training set's own class counts. The scores that do not reward ignoring a small class are in
`evaluation.scores`.

    >>> labels = torch.tensor([0] * 90 + [1] * 10)
    >>> class_weights(labels, 2).tolist()
    [0.5555555820465088, 5.0]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from pixlearn.classify.data.decoding import is_multi_label, label_counts
from pixlearn.classify.training.inputs import epoch_batches
from pixlearn.core import distributed

BALANCE_MODES = ("none", "weights", "sampler")


def class_counts(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return label_counts(labels, classes)


def class_weights(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """n / (K x count) per class (0 for a class without images), float32; with many labels per image,
    each label's positive weight, negatives / positives (binary cross-entropy's `pos_weight`), so a
    label's present and absent images add the same total to its loss."""
    counts = class_counts(labels, classes).to(torch.float32)
    if is_multi_label(labels):
        return torch.where(counts > 0, (len(labels) - counts) / counts.clamp(min=1), torch.ones_like(counts))
    weights = len(labels) / (classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def loss_weights(labels: torch.Tensor, classes: int, config: Any) -> torch.Tensor | None:
    """The class weights the loss takes under `--balance weights`; None otherwise."""
    return class_weights(labels, classes) if config.balance == "weights" else None


def balanced_draw(labels: torch.Tensor, classes: int, generator: torch.Generator) -> torch.Tensor:
    """len(labels) indices drawn with replacement, every class equally likely (within a class, every
    image equally likely): what `--balance sampler` trains on each epoch."""
    per_image = (1.0 / class_counts(labels, classes).clamp(min=1).to(torch.float64))[labels.to(torch.long)]
    return torch.multinomial(per_image, len(labels), replacement=True, generator=generator)


def epoch_order(labels: torch.Tensor, classes: int, config: Any, epoch: int) -> Iterator[torch.Tensor]:
    """Index batches of this process's share of one epoch: `batches.epoch_batches` (a reshuffle), or
    under `--balance sampler` a balanced draw seeded by (seed, epoch), the same on every process, of
    which each takes its own stride (so a resumed run draws the same epochs again)."""
    if config.balance != "sampler":
        yield from epoch_batches(len(labels), config.batch_size, epoch, config.seed)
        return
    generator = torch.Generator().manual_seed(config.seed * 1_000_033 + epoch)
    rank, world = distributed.rank(), distributed.world_size()
    yield from balanced_draw(labels, classes, generator)[rank::world].split(config.batch_size)
