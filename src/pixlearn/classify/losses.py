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
    logits: torch.Tensor, target: torch.Tensor, head: str, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean loss of a batch of logits (N, K) against integer targets (N,)."""
    if head == "softmax":
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if head == "sigmoid":
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        if label_smoothing:
            one_hot = one_hot * (1 - label_smoothing) + label_smoothing / 2
        # with_logits is the numerically safe form of sigmoid followed by BCE
        return F.binary_cross_entropy_with_logits(logits, one_hot)
    raise ConfigError(f"unknown head {head!r}; choose one of softmax, sigmoid")


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Class probabilities as the head defines them (the sigmoid head's need not sum to 1)."""
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim=1)


def probability_caption(probs: Mapping[str, float]) -> str:
    """`city:0.43 / nature:0.57`: the label the seed writes under each image of a gallery.

    >>> probability_caption({"city": 0.431, "nature": 0.569})
    'city:0.43 / nature:0.57'
    """
    return " / ".join(f"{c}:{p:.2f}" for c, p in probs.items())
