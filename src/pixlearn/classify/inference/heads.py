"""Loss functions and the output conversions that go with them: small pure functions.

Classifiers return logits. Two heads are offered:

- `softmax`: cross-entropy over softmax probabilities (the default: probabilities sum to 1);
- `sigmoid`: the seed's exact head, a sigmoid per class trained with binary cross-entropy
  on one-hot targets (Keras `binary_crossentropy` over a 2-unit sigmoid layer). With many labels per
  image (`--multi-label`) the targets are multi-hot rows (N, K) and it is the only head.
"""

from __future__ import annotations

import numpy as np
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
    each image's loss weighted by its class's weight, over the sum of the weights (cross_entropy's mean).
    Multi-hot targets (N, K): binary cross-entropy per (image, label), `class_weights` its `pos_weight`."""
    if target.ndim == 2:
        return multi_label_loss(logits, target, label_smoothing, class_weights)
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


def multi_label_loss(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary cross-entropy of every (image, label) pair, averaged; smoothing moves targets towards 1/2."""
    target = target.to(logits.dtype)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / 2
    weight = None if pos_weight is None else pos_weight.to(logits.device, logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def scaled_logits(logits: torch.Tensor, temperature: tuple[float, ...] | None) -> torch.Tensor:
    """logits / T (one T for every output, or one per output column); the logits themselves for None."""
    if temperature is None:
        return logits
    return logits / torch.tensor(temperature, dtype=logits.dtype, device=logits.device)


def probabilities(logits: torch.Tensor, head: str, temperature: tuple[float, ...] | None = None) -> torch.Tensor:
    """Class probabilities of logits (N, K): divided by the fitted `temperature` if any, then as the
    head defines them (the sigmoid head's need not sum to 1). The one conversion of evaluation,
    prediction, export and the check: pass a run's `spec.head, spec.temperature`."""
    logits = scaled_logits(logits, temperature)
    return torch.sigmoid(logits) if head == "sigmoid" else torch.softmax(logits, dim=1)


def top_label(
    probs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, preds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) per image: the probability of the predicted label and whether it is the true
    one; `preds` are the labels the run predicts (default: the most probable class).

    >>> confidence, correct = top_label(np.array([[0.55, 0.45]]), np.array([1]), preds=np.array([1]))
    >>> confidence.tolist(), correct.tolist()  # a threshold of 0.4 on the second class picked it
    ([0.45], [True])
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    labels = p.argmax(1) if preds is None else np.asarray(preds, dtype=np.int64)
    return p[np.arange(len(t)), labels], labels == t
