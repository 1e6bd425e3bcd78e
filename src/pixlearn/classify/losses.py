"""Loss functions and the output conversions that go with them: small pure functions.

Classifiers return logits. Two heads are offered:

- `softmax`: cross-entropy over softmax probabilities (the default: probabilities sum to 1);
- `sigmoid`: the seed's exact head, a sigmoid per class trained with binary cross-entropy
  on one-hot targets (Keras `binary_crossentropy` over a 2-unit sigmoid layer).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from pixlearn.core.errors import ConfigError


def classification_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    head: str,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean loss of a batch of logits (N, K) against integer targets (N,); with `class_weights` (K,),
    each image's loss weighted by its class's weight, over the sum of the weights (cross_entropy's mean)."""
    if head == "softmax":
        weight = None if class_weights is None else class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
    if head == "sigmoid":
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        if label_smoothing:
            one_hot = one_hot * (1 - label_smoothing) + label_smoothing / 2
        # with_logits is the numerically safe form of sigmoid followed by BCE
        if class_weights is None:
            return F.binary_cross_entropy_with_logits(logits, one_hot)
        per_image = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").mean(1)
        w = class_weights.to(logits.device, logits.dtype)[target]
        return (per_image * w).sum() / w.sum().clamp(min=torch.finfo(w.dtype).tiny)
    raise ConfigError(f"unknown head {head!r}; choose one of softmax, sigmoid")


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Class probabilities as the head defines them (the sigmoid head's need not sum to 1)."""
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim=1)


CAPTION_CLASSES = 3  # more than this many classes: the caption names the most probable ones


def probability_caption(probs: Mapping[str, float]) -> str:
    """`city:0.43 / nature:0.57`: the label the seed writes under each image of a gallery; with
    more than three classes the three most probable, then an ellipsis (ten would not fit under a
    thumbnail, and would shrink it).

    >>> probability_caption({"city": 0.431, "nature": 0.569})
    'city:0.43 / nature:0.57'
    >>> probability_caption({str(d): p for d, p in enumerate([0.01, 0.9, 0.05, 0.04, 0, 0, 0, 0, 0, 0])})
    '1:0.90 / 2:0.05 / 3:0.04 / ...'
    """
    if len(probs) <= CAPTION_CLASSES:
        return " / ".join(f"{c}:{p:.2f}" for c, p in probs.items())
    top = sorted(probs.items(), key=lambda item: -item[1])[:CAPTION_CLASSES]
    return " / ".join(f"{c}:{p:.2f}" for c, p in top) + " / ..."
