"""Scores of a set of predictions: confusion counts, balanced accuracy and macro-F1, calibration
error, negative log-likelihood and the reliability table.

Balanced accuracy (the mean of the per-class recalls, over classes with images) and macro-F1 (the
mean F1, over classes that are present or predicted) are scikit-learn's definitions; they are in
every evaluation and can be what early stopping watches.

ECE is torchmetrics' top-label definition (15 equal-width bins, L1) on the label the run predicts: the
confidence is the probability of the predicted label and the accuracy whether that label is right. Without
a threshold the predicted label is the most probable class, and the figure is torchmetrics'
`multiclass_calibration_error`; with a two-class threshold (`inference.decisions.decide`) it is the
threshold's label, whose probability can be under 0.5. For the sigmoid head the confidence is that
class's own output, not a share of a distribution over the classes.

    >>> scores_from_confusion(np.array([[90, 0], [10, 0]]))
    {'balanced_accuracy': 0.5, 'macro_f1': 0.473684}
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pixlearn.classify.evaluation.curves import binary_calibration_error
from pixlearn.classify.inference.heads import top_label

ECE_BINS = 15  # torchmetrics' default and Guo et al.'s


def expected_calibration_error(
    probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, preds: np.ndarray | None = None
) -> float:
    """ECE (15 bins, L1, torchmetrics' definition) of class probabilities (N, K) against integer targets (N,), on the
    predicted labels `preds` (default: the most probable class).

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    confidence, correct = top_label(probs, targets, preds)
    if len(correct) == 0:
        return math.nan
    # Top-label ECE is the binary ECE of (confidence, correct): torchmetrics' multiclass version reduces to
    # it with the argmax. float32 first, as the probabilities are computed, so a sigmoid's 1.0000001 is 1.
    ece = binary_calibration_error(np.asarray(confidence, dtype=np.float32), correct, bins=ECE_BINS)
    return round(ece, 6)


def negative_log_likelihood(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> float:
    """Mean -log p(true class): the loss temperature scaling lowers (clipped at 1e-12, never infinite)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if len(t) == 0:
        return math.nan
    return float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-12, 1.0)).mean())


def reliability(
    probs: np.ndarray, targets: np.ndarray, preds: np.ndarray | None = None, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """The reliability diagram's table: per equal-width confidence bin, its range, image count, mean
    confidence and accuracy of the predicted label (`preds`, default the most probable class; empty bins
    have NaN confidence and accuracy).

    >>> rows = reliability(np.array([[0.95, 0.05], [0.3, 0.7]]), np.array([0, 0]), bins=2)
    >>> [(r["count"], r["accuracy"]) for r in rows]
    [(0, nan), (2, 0.5)]
    """
    confidence, correct = top_label(probs, targets, preds)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "confidence": float(confidence[inside].mean()) if n else math.nan,
                "accuracy": float(correct[inside].mean()) if n else math.nan,
            }
        )
    return rows


def scores_from_confusion(counts: np.ndarray) -> dict[str, float]:
    """Balanced accuracy and macro-F1 of a confusion matrix (rows true, columns predicted).

    From the counts rather than per image, so processes can sum their matrices first.
    """
    counts = np.asarray(counts, dtype=np.float64)
    tp, actual, predicted = np.diag(counts), counts.sum(1), counts.sum(0)
    present = actual > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / actual, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    scored = present | (predicted > 0)
    return {
        "balanced_accuracy": round(float(recall[present].mean()), 6) if present.any() else float("nan"),
        "macro_f1": round(float(f1[scored].mean()), 6) if scored.any() else float("nan"),
    }


def confusion_counts(preds: torch.Tensor, targets: torch.Tensor, classes: int) -> torch.Tensor:
    """K x K counts, rows true, columns predicted."""
    flat = targets.to(torch.long) * classes + preds.to(torch.long)
    return torch.bincount(flat, minlength=classes * classes).reshape(classes, classes)
