"""Ranking and calibration curves of binary scores in numpy: precision-recall, average precision, ROC
and the binned calibration error, as torchmetrics and scikit-learn define them.

Why not torchmetrics, which pixlearn used for these: importing it imports every domain it covers (audio,
text, detection, scipy.signal), which cost every `train`, `evaluate` and `check` a few seconds of
start-up, about a third of a small run (bench/README.md, "Start-up: the evaluation's imports"). These
four functions are a few lines each; tests compare them with torchmetrics and scikit-learn on random,
tied and degenerate inputs (tests/classify/evaluation/test_curves.py).

    >>> scores, positives = np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False])
    >>> precision, recall, thresholds = precision_recall_curve(scores, positives)
    >>> precision.tolist(), recall.tolist(), thresholds.tolist()
    ([0.5, 0.666..., 0.5, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, 0.0], [0.1, 0.3, 0.8, 0.9])
    >>> round(average_precision(scores, positives), 4)
    0.8333
"""

from __future__ import annotations

import numpy as np


def ranked_counts(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives, true positives, threshold) at each distinct score, highest score first: the
    counts of images scored at or above it (scikit-learn's `_binary_clf_curve`, torchmetrics' alike)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], np.asarray(positives, dtype=bool).ravel()[order]
    last_of_each = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1] if len(ranked) else np.array([], int)
    true_positives = np.cumsum(hits, dtype=np.float64)[last_of_each]
    false_positives = 1.0 + last_of_each - true_positives
    return false_positives, true_positives, ranked[last_of_each]


def precision_recall_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds): one point per distinct score, recall falling, then the point
    (recall 0, precision 1) with no threshold; thresholds rising. `positives` must hold at least one."""
    false_positives, true_positives, thresholds = ranked_counts(scores, positives)
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """The precision at each recall step weighted by the recall gained (no interpolation)."""
    precision, recall, _ = precision_recall_curve(scores, positives)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), from (0, 0) at threshold 1 (torchmetrics'
    "above every probability") through every distinct score, falling. Needs both kinds of image."""
    false_positives, true_positives, thresholds = ranked_counts(scores, positives)
    false_positives, true_positives = np.r_[0.0, false_positives], np.r_[0.0, true_positives]
    return false_positives / false_positives[-1], true_positives / true_positives[-1], np.r_[1.0, thresholds]


def binary_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """L1 expected calibration error over `bins` equal-width confidence bins, torchmetrics' binning: a bin
    holds low <= c < high, and a confidence of exactly 1 is a bin of its own. Empty input: NaN."""
    confidence = np.clip(np.asarray(confidence, dtype=np.float64).ravel(), 0.0, 1.0)
    if not len(confidence):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1, dtype=np.float32).astype(np.float64)
    index = np.searchsorted(edges, confidence, side="right") - 1
    summed_confidence = np.bincount(index, weights=confidence, minlength=bins + 1)
    summed_correct = np.bincount(index, weights=np.asarray(correct, dtype=np.float64).ravel(), minlength=bins + 1)
    return float(np.abs(summed_correct - summed_confidence).sum() / len(confidence))
