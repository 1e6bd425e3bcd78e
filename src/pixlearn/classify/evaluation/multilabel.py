"""Scores and decisions for many labels per image (`--multi-label`): each label is its own yes-or-no
question, answered by its sigmoid and its threshold.

- Thresholds per label, fitted on the validation split: the one of maximum F1 (the default), or the
  highest whose recall reaches a target (`--target-recall LABEL=R,LABEL=R`). A label without a
  positive validation image keeps 1/2.
- Ranking: average precision per label and its mean over labels (macro mAP, every label alike) and
  over every (image, label) pair (micro mAP, frequent labels weigh more), scikit-learn's definitions.
- Decisions: precision, recall, F1 and support per label; subset accuracy (every label of an image
  right), Hamming loss (the share of (image, label) pairs wrong), label cardinality (labels per image,
  given and predicted); per-label calibration error (a label's probability against how often it is there).

    >>> probs = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6], [0.3, 0.1]])
    >>> truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    >>> best_f1_threshold(probs[:, 0], truth[:, 0] == 1)
    0.8
    >>> scores = multi_label_scores(probs, truth, (0.5, 0.5))
    >>> scores["subset_accuracy"], scores["hamming_loss"], scores["map_macro"]
    (1.0, 0.0, 1.0)
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pixlearn.classify.evaluation import curves
from pixlearn.classify.inference import decisions
from pixlearn.classify.inference.heads import multi_label_loss
from pixlearn.core.errors import ConfigError

DEFAULT_THRESHOLD = decisions.LABEL_SET_THRESHOLD
MAX_CURVE_POINTS = 200  # per label in evaluation.json, as the single-label curves


def recall_targets(text: str | None, classes: Sequence[str]) -> dict[str, float]:
    """`--target-recall cat=0.9,dog=0.8` -> {"cat": 0.9, "dog": 0.8}; a label not in `classes` is refused."""
    targets: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, value = part.strip().rpartition("=")
        name = name.strip()
        if name not in classes:
            near = difflib.get_close_matches(name, list(classes), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"--target-recall: label {name!r} is not one of {', '.join(classes)}{hint}")
        try:
            recall = float(value)
        except ValueError:
            raise ConfigError(f"--target-recall: {part.strip()!r} is not LABEL=RECALL") from None
        if not 0 < recall <= 1:
            raise ConfigError(f"--target-recall: the recall of {name!r} must be above 0 and at most 1, got {value}")
        targets[name] = recall
    return targets


def best_f1_threshold(scores: np.ndarray, positives: np.ndarray) -> float:
    """The threshold t (a score) whose decisions `score >= t` have the highest F1; ties: the highest t."""
    if not positives.any():
        return DEFAULT_THRESHOLD
    precision, recall, thresholds = curves.precision_recall_curve(scores, positives)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return float(thresholds[best].max())


def recall_threshold(scores: np.ndarray, positives: np.ndarray, recall: float) -> float:
    """The highest threshold whose recall is at least `recall` (the most precise such point)."""
    if not positives.any():
        return DEFAULT_THRESHOLD
    _, recalls, thresholds = curves.precision_recall_curve(scores, positives)
    return float(thresholds[recalls[:-1] >= recall - 1e-12].max())


def fit_thresholds(probs: np.ndarray, truth: np.ndarray, classes: Sequence[str], targets: dict[str, float]) -> dict:
    """Each label's threshold on validation probabilities, and the rule that chose it."""
    values, rules = [], []
    for k, name in enumerate(classes):
        positives = truth[:, k] > 0.5
        if name in targets:
            values.append(recall_threshold(probs[:, k], positives, targets[name]))
            rules.append(f"recall {targets[name]:g}")
        else:
            values.append(best_f1_threshold(probs[:, k], positives))
            rules.append("best F1" if positives.any() else "0.5 (no positive validation image)")
    return {"values": [round(v, 8) for v in values], "rules": rules}


def decide(probs: np.ndarray, thresholds: Sequence[float] | None) -> np.ndarray:
    """(N, K) bool: each label present where its probability reaches its threshold (`decisions.present`)."""
    return decisions.present(probs, thresholds)


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else math.nan


def per_label(probs: np.ndarray, truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Per label: support, average precision, precision, recall, F1, ECE and its precision-recall curve."""
    rows = []
    for k, name in enumerate(classes):
        positives, said = truth[:, k] > 0.5, predicted[:, k]
        tp, fp, fn = int((said & positives).sum()), int((said & ~positives).sum()), int((~said & positives).sum())
        precision, recall = _safe_ratio(tp, tp + fp), _safe_ratio(tp, tp + fn)
        row: dict[str, Any] = {
            "label": name, "support": int(positives.sum()), "predicted": int(said.sum()),
            "average_precision": curves.average_precision(probs[:, k], positives) if positives.any() else math.nan,
            "precision": precision, "recall": recall, "f1": _safe_ratio(2 * tp, 2 * tp + fp + fn),
            "ece": curves.binary_calibration_error(probs[:, k], positives),
        }  # fmt: skip
        row.update(_curve(probs[:, k], positives))
        rows.append(row)
    return rows


def _curve(scores: np.ndarray, positives: np.ndarray) -> dict[str, list[float]]:
    if not positives.any():
        return {"recall_curve": [], "precision_curve": []}
    precision, recall, _ = curves.precision_recall_curve(scores, positives)
    step = max(1, math.ceil(len(recall) / MAX_CURVE_POINTS))
    keep = np.unique(np.r_[np.arange(0, len(recall), step), len(recall) - 1])
    return {"recall_curve": recall[keep].round(5).tolist(), "precision_curve": precision[keep].round(5).tolist()}


def multi_label_scores(
    probs: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] | None, classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Every figure of a multi-label evaluation (module docstring), with the per-label rows under `labels`."""
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth) > 0.5
    classes = list(classes) if classes is not None else [str(k) for k in range(probs.shape[1])]
    predicted = decide(probs, thresholds)
    rows = per_label(probs, truth, predicted, classes)
    ranked = [r["average_precision"] for r in rows if not math.isnan(r["average_precision"])]
    return {
        "images": len(probs),
        "map_macro": float(np.mean(ranked)) if ranked else math.nan,
        "map_micro": curves.average_precision(probs.ravel(), truth.ravel()) if truth.any() else math.nan,
        "subset_accuracy": float((predicted == truth).all(1).mean()) if len(probs) else math.nan,
        "hamming_loss": float((predicted != truth).mean()) if len(probs) else math.nan,
        "cardinality_given": float(truth.sum(1).mean()) if len(probs) else math.nan,
        "cardinality_predicted": float(predicted.sum(1).mean()) if len(probs) else math.nan,
        "macro_f1": float(np.nanmean([r["f1"] for r in rows])) if rows and truth.any() else math.nan,
        "labels": rows,
    }


def co_occurrence(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(K, K) counts: row i, column j is how many images carrying label i were given label j by the model."""
    return (np.asarray(truth, dtype=np.int64).T @ np.asarray(predicted, dtype=np.int64)).astype(np.int64)


def epoch_scores(probs: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """A validation epoch's figures at 1/2 (history.csv): accuracy is 1 - Hamming loss, so the columns
    every run has keep their meaning of "share decided right"."""
    scores = multi_label_scores(probs, truth, None)
    predicted, given = decide(probs, None), np.asarray(truth) > 0.5
    balanced = [
        (_safe_ratio((p & g).sum(), g.sum()) + _safe_ratio((~p & ~g).sum(), (~g).sum())) / 2
        for p, g in zip(predicted.T, given.T, strict=True)
    ]
    return {
        "accuracy": 1.0 - scores["hamming_loss"],
        "subset_accuracy": scores["subset_accuracy"],
        "map": scores["map_macro"],
        "macro_f1": scores["macro_f1"],
        "balanced_accuracy": float(np.nanmean(balanced)) if len(balanced) else math.nan,
    }


def validation_figures(logits: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """An epoch's `val_` columns of a multi-label run from the validation logits (N, K) and multi-hot truth."""
    loss = multi_label_loss(logits.float(), truth).item()
    scores = epoch_scores(torch.sigmoid(logits.float()).numpy(), truth.numpy())
    return {"val_loss": loss, **{f"val_{k}": v for k, v in scores.items()}}
