"""Loss functions and the output conversions that go with them: small pure functions.

Classifiers return logits. Two heads are offered:

- `softmax`: cross-entropy over softmax probabilities (the default: probabilities sum to 1);
- `sigmoid`: the seed's exact head, a sigmoid per class trained with binary cross-entropy
  on one-hot targets (Keras `binary_crossentropy` over a 2-unit sigmoid layer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HEADS: tuple[str, ...] = ("softmax", "sigmoid")


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
    raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Class probabilities as the head defines them (the sigmoid head's need not sum to 1)."""
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim=1)


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


def psnr_from_mse(mse_value: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for values in [0, peak]."""
    if mse_value <= 0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse_value)
