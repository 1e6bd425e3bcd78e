"""A multi-label evaluation, asked and written: the model's probabilities on a labelled set, each label
decided by its threshold, and the files a run or `pixlearn evaluate` leaves for it: evaluation.json
(`MultiLabelEvaluationRecord`), per_label.csv (sorted by average precision), co_occurrence.csv (given
labels in rows, predicted in columns), predictions.csv (path, given, predicted, p_LABEL each) and the
figures (per-label precision-recall curves, galleries of false positives and false negatives per label
with every label's probability, Grad-CAM for each predicted label with `--explain`).

    >>> ev = MultiLabelEvaluation(["cat", "dog"], np.array([[1, 0], [1, 1]]), np.array([[0.9, 0.2], [0.6, 0.4]]),
    ...                           ["a.png", "b.png"], None, [], thresholds=(0.5, 0.5))
    >>> ev.predicted.tolist(), ev.label_text(ev.predicted[1])
    ([[True, False], [True, False]], 'cat')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.classify.data.decoding import HWCImages, ImageSource
from pixlearn.classify.data.label_sets import DEFAULT_SEPARATOR
from pixlearn.classify.evaluation import multilabel
from pixlearn.classify.inference.forward import spec_logits
from pixlearn.classify.inference.heads import probabilities
from pixlearn.classify.inference.wording import probability_caption
from pixlearn.core.imaging import figures
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import MultiLabelEvaluationRecord
from pixlearn.core.storage.spec import ModelSpec

GALLERY = 8  # images per label in each of the false-positive and false-negative galleries
GALLERY_LABELS = 6  # labels with galleries: the most frequent (the report names the others' counts)


@dataclass
class MultiLabelEvaluation:
    """Probabilities of a multi-label model on a labelled set, and the figures derived from them."""

    classes: list[str]
    truth: np.ndarray  # (N, K) 0/1: the labels given
    probs: np.ndarray  # (N, K) each label's probability (its sigmoid, after its temperature)
    paths: list[str]
    images: HWCImages | None  # [index] -> (n, H, W, C) uint8 arrays, for galleries
    skipped: list[tuple[str, str]]
    thresholds: tuple[float, ...] | None = None  # each label's (None: 1/2)
    temperature: tuple[float, ...] | None = None
    directory: Path | None = None

    @classmethod
    def from_model(
        cls, model: nn.Module, spec: ModelSpec, data: ImageSource, device: torch.device
    ) -> MultiLabelEvaluation:
        logits = spec_logits(model, data.images, device, spec)
        probs = probabilities(logits, spec.head, spec.temperature).numpy()
        return cls(list(spec.classes), data.labels.numpy(), probs, list(data.paths), data.gallery_images(),
                   list(data.skipped), spec.label_thresholds, spec.temperature)  # fmt: skip

    @property
    def predicted(self) -> np.ndarray:
        """(N, K) bool: the labels each image is given (its probability at or above its threshold)."""
        return multilabel.decide(self.probs, self.thresholds)

    def label_text(self, row: np.ndarray) -> str:
        """The labels of one (K,) row, joined as the CSVs join them."""
        return DEFAULT_SEPARATOR.join(c for c, on in zip(self.classes, np.asarray(row) > 0.5, strict=True) if on)

    def scores(self) -> dict[str, Any]:
        return multilabel.multi_label_scores(self.probs, self.truth, self.thresholds, self.classes)

    def co_occurrence(self) -> np.ndarray:
        return multilabel.co_occurrence(self.truth > 0.5, self.predicted)

    def errors(self, k: int, kind: str) -> np.ndarray:
        """Images of label k given wrongly (`fp`: predicted, not there) or missed (`fn`), most confident first."""
        there, said = self.truth[:, k] > 0.5, self.predicted[:, k]
        wrong = np.flatnonzero(said & ~there) if kind == "fp" else np.flatnonzero(~said & there)
        confidence = self.probs[wrong, k] if kind == "fp" else -self.probs[wrong, k]
        return wrong[np.argsort(-confidence, kind="stable")]

    def to_dict(self) -> dict[str, Any]:
        found = self.scores()
        rows = sorted(found.pop("labels"), key=_by_average_precision)
        return {**found, "classes": self.classes, "thresholds": list(self.thresholds) if self.thresholds else None,
                "temperature": list(self.temperature) if self.temperature else None, "per_label": rows,
                "co_occurrence": self.co_occurrence().tolist(),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}  # fmt: skip


def _by_average_precision(row: dict[str, Any]) -> tuple[bool, float]:
    ap = row["average_precision"]
    return (ap != ap, -ap if ap == ap else 0.0)  # NaN (no positive image) last


def write_multi_label_evaluation(
    ev: MultiLabelEvaluation, directory: str | os.PathLike, history: list[dict[str, float]] | None = None,
    explainer: Any = None,
) -> MultiLabelEvaluationRecord:  # fmt: skip
    """Every file of the module docstring into `directory` (figures under figures/); returns the record."""
    directory = Path(directory)
    record = MultiLabelEvaluationRecord.from_dict(ev.to_dict(), directory / MultiLabelEvaluationRecord.FILE)
    record.write(directory / MultiLabelEvaluationRecord.FILE)
    table = ev.to_dict()["per_label"]
    rundir.write_csv(
        directory / "per_label.csv",
        ["label", "average_precision", "precision", "recall", "f1", "support", "predicted", "ece", "threshold"],
        [[r["label"], *(f"{r[k]:.4f}" for k in ("average_precision", "precision", "recall", "f1")), r["support"],
          r["predicted"], f"{r['ece']:.4f}", f"{_threshold(ev, r['label']):.4f}"] for r in table],
    )  # fmt: skip
    counts = ev.co_occurrence()
    rundir.write_csv(directory / "co_occurrence.csv", ["given \\ predicted", *ev.classes],
                     [[c, *counts[i].tolist()] for i, c in enumerate(ev.classes)])  # fmt: skip
    rundir.write_csv(
        directory / "predictions.csv",
        ["path", "given", "predicted", *[f"p_{c}" for c in ev.classes]],
        [[p, ev.label_text(t), ev.label_text(q), *[f"{v:.6f}" for v in prob]]
         for p, t, q, prob in zip(ev.paths, ev.truth, ev.predicted, ev.probs, strict=True)],
    )  # fmt: skip
    _write_figures(ev, directory / "figures", table, history, explainer)
    return record


def _threshold(ev: MultiLabelEvaluation, label: str) -> float:
    return ev.thresholds[ev.classes.index(label)] if ev.thresholds else multilabel.DEFAULT_THRESHOLD


def _write_figures(
    ev: MultiLabelEvaluation, fig_dir: Path, table: list[dict[str, Any]], history: Any, explainer: Any
) -> None:
    if history:
        figures.save(figures.plot_history(history), fig_dir / "history.png")
    if not len(ev.truth):
        return
    curves = [{"class": r["label"], "average_precision": r["average_precision"], "recall": r["recall_curve"],
               "precision": r["precision_curve"]} for r in table]  # fmt: skip
    figures.save(figures.plot_precision_recall(curves, "Precision-recall per label"), fig_dir / "precision_recall.png")
    figures.save(
        figures.plot_confusion_matrix(ev.co_occurrence(), ev.classes, "Labels given (rows) and predicted (columns)"),
        fig_dir / "co_occurrence.png",
    )
    if ev.images is None:
        return
    frequent = np.argsort(-ev.truth.sum(0), kind="stable")[:GALLERY_LABELS]
    for k in frequent.tolist():
        for kind, what in (("fp", "given wrongly"), ("fn", "missed")):
            picked = ev.errors(k, kind)[:GALLERY]
            if not len(picked):
                continue
            titles = [f"given: {ev.label_text(ev.truth[i]) or '(none)'}" for i in picked]
            captions = [probability_caption(dict(zip(ev.classes, ev.probs[i].tolist(), strict=True))) for i in picked]
            title = f"{ev.classes[k]} {what} (threshold {_threshold(ev, ev.classes[k]):.2f}), most confident first"
            figures.save(figures.image_grid(ev.images[picked], titles, captions, title=title),
                         fig_dir / f"label_{k}_{kind}.png")  # fmt: skip
    if explainer is not None:
        _write_explained(ev, fig_dir, explainer)


def _write_explained(ev: MultiLabelEvaluation, fig_dir: Path, explainer: Any) -> None:
    """Grad-CAM for each predicted label of the first images (one overlay per (image, label))."""
    rows = [(i, k) for i in range(min(len(ev.truth), GALLERY)) for k in np.flatnonzero(ev.predicted[i]).tolist()]
    if not rows:
        return
    index = np.array([i for i, _ in rows])
    targets = np.array([k for _, k in rows])
    titles = [f"{ev.classes[k]} ({ev.probs[i, k]:.2f})" for i, k in rows]
    fig = explainer.gallery(ev.images[index], targets, titles, "What the network looked at, per predicted label")
    figures.save(fig, fig_dir / "predicted_labels_gradcam.png")
