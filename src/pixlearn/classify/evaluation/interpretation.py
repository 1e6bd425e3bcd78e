"""Evaluating a trained classifier: the questions the seed asks of its model, as methods.

    >>> from pixlearn.classify.evaluation.interpretation import evaluate
    >>> ev = evaluate("runs/city", "data/test").evaluation    # doctest: +SKIP
    >>> ev.accuracy, ev.conditional_error_rates()["city", "nature"]   # doctest: +SKIP
    (0.95, 0.069)    # P(predicted nature | true city), the seed's P(Nature|City)

Every method returns data (arrays, lists); `write_evaluation` renders files and figures.
Confusion matrices have true labels in rows and predicted labels in columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.classify.config import EvaluateConfig, TrainConfig, read_config
from pixlearn.classify.data.decoding import HWCImages, ImageSource, decode_options, load_images
from pixlearn.classify.data.folders import LabelRule, Sample, label_csv_splits, label_names, scan_folder
from pixlearn.classify.evaluation import scores, thresholds
from pixlearn.classify.evaluation.multilabel_files import MultiLabelEvaluation, write_multi_label_evaluation
from pixlearn.classify.inference import decisions, wording
from pixlearn.classify.inference.forward import spec_logits
from pixlearn.classify.inference.heads import probabilities
from pixlearn.classify.inference.wording import probability_caption
from pixlearn.core.devices import resolve_device
from pixlearn.core.errors import ConfigError, DataError, RunError
from pixlearn.core.imaging import figures
from pixlearn.core.imaging.images import check_pixel_limit, pixel_limit
from pixlearn.core.progress import make_progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import EvaluationRecord, MultiLabelEvaluationRecord
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.loading import load_model
from pixlearn.models.saliency import GradCam, explained_name

GALLERY_ORDERS = ("random", "confident")  # random: seeded, as the seed draws; confident: most confident first


@dataclass(frozen=True)
class ClassMatrix:
    """A K x K table over the class names, rows true and columns predicted, indexed by name or number.

    >>> m = ClassMatrix(np.array([[0.9, 0.1], [0.2, 0.8]]), ("city", "nature"))
    >>> float(m["city", "nature"]), float(m[1, 0])
    (0.1, 0.2)
    >>> m.to_dict()["nature"]
    {'city': 0.2, 'nature': 0.8}
    """

    values: np.ndarray
    classes: tuple[str, ...]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
            return self.values[self.classes.index(key[0]), self.classes.index(key[1])]
        return self.values[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(self.values, dtype=dtype)

    def __len__(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, dict[str, float]]:
        """{true class: {predicted class: value}}."""
        rows = zip(self.classes, self.values.tolist(), strict=True)
        return {t: dict(zip(self.classes, row, strict=True)) for t, row in rows}


@dataclass
class Evaluation:
    """Probabilities of a model on a labelled image set, and the figures derived from them."""

    classes: list[str]
    targets: np.ndarray  # (N,) true class indices
    probs: np.ndarray  # (N, K) class probabilities as the model's head defines them
    paths: list[str]
    images: HWCImages  # [index] -> (n, H, W, C) uint8 arrays, for galleries
    skipped: list[tuple[str, str]]
    directory: Path | None = None  # where evaluate() wrote its files
    head: str = "softmax"  # the sigmoid head's probabilities need not sum to 1
    threshold: dict[str, Any] | None = None  # the spec's two-class operating point (decisions.decide)
    abstain_below: float | None = None  # top probability under which an image is marked abstained
    temperature: tuple[float, ...] | None = None  # the spec's, already applied to `probs`
    uncalibrated: np.ndarray | None = None  # (N, K) probabilities without the temperature, where there is one

    @classmethod
    def from_model(cls, model: nn.Module, spec: ModelSpec, data: ImageSource, device: torch.device) -> Evaluation:
        """Run `model` over an image set whose classes follow spec.classes."""
        logits = spec_logits(model, data.images, device, spec)
        probs = probabilities(logits, spec.head, spec.temperature).numpy()  # the spec's temperature, then its head
        raw = probabilities(logits, spec.head).numpy() if spec.temperature else None
        return cls(
            list(spec.classes),
            data.labels.numpy(),
            probs,
            list(data.paths),
            data.gallery_images(),
            list(data.skipped),
            head=spec.head,
            threshold=spec.threshold,
            abstain_below=spec.abstain_below,
            temperature=spec.temperature,
            uncalibrated=raw,
        )

    @property
    def preds(self) -> np.ndarray:
        """Predicted class per image: the highest probability, as the seed's which.max, or the class the
        spec's threshold picks (`decisions.decide`)."""
        return decisions.decide(self.probs, self.classes, self.threshold)

    def decision_rule(self) -> str:
        """Which rule turned probabilities into the predicted labels (and so made the confusion matrix)."""
        t = self.threshold
        if t is None:
            return "the most probable class"
        other = next(c for c in self.classes if c != t["class"])
        chosen = f"{t['rule']}, chosen on the validation split"
        return f"{t['class']} where P({t['class']}) >= {t['value']:.4f}, else {other} ({chosen})"

    def balanced_scores(self) -> dict[str, float]:
        """Balanced accuracy (mean per-class recall) and macro-F1."""
        return scores.scores_from_confusion(self.confusion_matrix().values)

    def calibration(self) -> dict[str, Any]:
        """ECE (15 bins, torchmetrics' top-label definition), NLL and the reliability diagram's bins, all on
        the labels predicted (`preds`: the threshold's where the spec has one) and their probabilities."""
        return {
            "ece": scores.expected_calibration_error(self.probs, self.targets, self.preds),
            "nll": round(scores.negative_log_likelihood(self.probs, self.targets), 6),
            "bins": scores.reliability(self.probs, self.targets, self.preds),
            "note": self.confidence_note(),
        }

    def confidence_note(self) -> str:
        """What the ECE's confidence is: the probability of the label predicted, by the rule that predicted it."""
        rule = "the most probable class" if self.threshold is None else "the threshold's pick (it can be under 0.5)"
        note = f"confidence: the probability of the predicted label, {rule}"
        head = wording.head_note(self.head)
        return f"{note}; {head}" if head else note

    def temperature_effect(self) -> dict[str, float]:
        """NLL and ECE of these images before and after the spec's temperature ({} without one): held out
        of the validation split the temperature was fitted on, so these are the honest figures."""
        if self.uncalibrated is None or not len(self.targets):
            return {}
        return thresholds.temperature_effect(self.uncalibrated, self.probs, self.targets, self.classes, self.threshold)

    def precision_recall(self) -> list[dict[str, Any]]:
        """Per class, one against the rest: average precision and the precision-recall curve."""
        return thresholds.precision_recall_curves(self.probs, self.targets, self.classes)

    def abstained(self) -> np.ndarray:
        """True for images whose top probability is below `abstain_below`."""
        return decisions.abstained(self.probs, self.abstain_below)

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.targets).mean()) if len(self.targets) else float("nan")

    def confusion_matrix(self) -> ClassMatrix:
        """Counts: row i, column j = images of true class i predicted as j."""
        k = len(self.classes)
        counts = np.bincount(self.targets * k + self.preds, minlength=k * k).reshape(k, k)
        return ClassMatrix(counts, tuple(self.classes))

    def confusion_proportions(self) -> ClassMatrix:
        """Counts divided by the number of images: the seed's `table(...)/length(tpred)`."""
        counts = self.confusion_matrix().values
        return ClassMatrix(counts / max(1, counts.sum()), tuple(self.classes))

    def conditional_error_rates(self) -> ClassMatrix:
        """P(predicted j | true i): each row of the confusion matrix over its total (NaN if empty);
        `rates["city", "nature"]` is the seed's P(Nature | City)."""
        counts = self.confusion_matrix().values.astype(float)
        totals = counts.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return ClassMatrix(np.where(totals > 0, counts / totals, np.nan), tuple(self.classes))

    def per_class(self) -> list[dict[str, Any]]:
        """Precision, recall, F1 and support of each class."""
        counts = self.confusion_matrix().values.astype(float)
        rows = []
        for i, name in enumerate(self.classes):
            tp = counts[i, i]
            predicted, actual = counts[:, i].sum(), counts[i, :].sum()
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(actual)})
        return rows

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(true, predicted, count) for off-diagonal cells, most frequent first."""
        counts = self.confusion_matrix().values
        cells = [
            (self.classes[i], self.classes[j], int(counts[i, j]))
            for i in range(len(self.classes))
            for j in range(len(self.classes))
            if i != j and counts[i, j] >= min_count
        ]
        return sorted(cells, key=lambda c: -c[2])

    def mistakes(self, k: int = 16, order: str = "random", seed: int = 123) -> np.ndarray:
        """Indices of up to k misclassified images: a seeded random sample (as the seed draws
        with set.seed(123)) or, with order="confident", the most confident mistakes first."""
        wrong = np.flatnonzero(self.preds != self.targets)
        if order == "confident":
            confidence = self.probs[wrong, self.preds[wrong]]
            return wrong[np.argsort(-confidence, kind="stable")][:k]
        if order != "random":
            raise ConfigError(f"order must be random or confident, got {order!r}")
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(wrong, size=min(k, len(wrong)), replace=False)) if len(wrong) else wrong

    def top_losses(self, k: int = 16) -> np.ndarray:
        """Indices of the k images with the highest loss (lowest probability of the true class)."""
        true_prob = self.probs[np.arange(len(self.targets)), self.targets]
        return np.argsort(true_prob, kind="stable")[:k]

    def probability_caption(self, i: int) -> str:
        """`city:0.43 / nature:0.57`, the seed's label under each mistake."""
        return probability_caption(dict(zip(self.classes, self.probs[i].tolist(), strict=True)))

    def to_dict(self) -> dict[str, Any]:
        calibrated = self.calibration()
        return {
            "images": len(self.targets),
            "accuracy": self.accuracy,
            **self.balanced_scores(),
            "ece": calibrated["ece"],
            "nll": calibrated["nll"],
            "classes": self.classes,
            "head": self.head,
            "decision": self.decision_rule(),
            "threshold": self.threshold,
            "temperature": list(self.temperature) if self.temperature else None,
            "temperature_effect": self.temperature_effect(),
            "abstention": thresholds.coverage(self.probs, self.targets, self.preds, self.abstain_below),
            "calibration": calibrated,
            "precision_recall": self.precision_recall(),
            "confusion_matrix": self.confusion_matrix().values.tolist(),
            "confusion_proportions": self.confusion_proportions().values.round(6).tolist(),
            "conditional_error_rates": np.nan_to_num(self.conditional_error_rates().values, nan=-1).round(6).tolist(),
            "per_class": self.per_class(),
            "most_confused": self.most_confused(),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def evaluate_set(
    model: nn.Module, spec: ModelSpec, data: ImageSource, device: torch.device | None = None
) -> Evaluation:
    return Evaluation.from_model(model, spec, data, device or resolve_device("auto"))


def write_evaluation(
    ev: Evaluation,
    directory: str | os.PathLike,
    history: list[dict[str, float]] | None = None,
    train_set=None,
    gallery_order: str = "random",
    explainer: GradCam | None = None,
) -> None:
    """evaluation.json, confusion_matrix.csv, per_class.csv, predictions.csv and the figures; with an
    `explainer`, the mistakes gallery again with Grad-CAM overlays (misclassified_gradcam.png)."""
    directory = Path(directory)
    fig_dir = directory / "figures"
    EvaluationRecord.from_dict(ev.to_dict(), directory / EvaluationRecord.FILE).write(directory / EvaluationRecord.FILE)
    counts, props = ev.confusion_matrix().values, ev.confusion_proportions().values
    rundir.write_csv(
        directory / "confusion_matrix.csv",
        ["true \\ predicted", *ev.classes],
        [[c, *counts[i].tolist()] for i, c in enumerate(ev.classes)],
    )
    rundir.write_csv(
        directory / "per_class.csv",
        ["class", "precision", "recall", "f1", "support"],
        [
            [r["class"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", r["support"]]
            for r in ev.per_class()
        ],
    )
    _write_predictions(ev, directory / "predictions.csv")
    _write_calibration_figures(ev, fig_dir)
    if history:
        figures.save(figures.plot_history(history), fig_dir / "history.png")
    figures.save(
        figures.plot_confusion_matrix(counts, ev.classes, "Confusion matrix (counts)"), fig_dir / "confusion_matrix.png"
    )
    figures.save(
        figures.plot_confusion_matrix(props, ev.classes, "Confusion matrix (share of all images)", ".2f"),
        fig_dir / "confusion_proportions.png",
    )
    if train_set is not None and len(train_set):
        pick = np.random.default_rng(0).choice(len(train_set), size=min(8, len(train_set)), replace=False)
        samples = train_set.images[torch.as_tensor(np.sort(pick))].permute(0, 2, 3, 1).numpy()
        titles = [train_set.classes[int(train_set.labels[i])] for i in np.sort(pick)]
        figures.save(figures.image_grid(samples, titles, title="Sample training images"), fig_dir / "samples.png")
    for order, name in ((gallery_order, "misclassified.png"), ("confident", "confident_mistakes.png")):
        picked = ev.mistakes(16, order=order)
        if len(picked):
            fig = figures.image_grid(
                ev.images[picked],
                [f"pred: {ev.classes[ev.preds[i]]} (true: {ev.classes[ev.targets[i]]})" for i in picked],
                [ev.probability_caption(i) for i in picked],
                title=wording.gallery_title(
                    "Misclassified images" + (", most confident first" if order == "confident" else ""), ev.head
                ),
            )
            figures.save(fig, fig_dir / name)
    picked = ev.mistakes(16, order=gallery_order)
    if explainer is not None and len(picked):
        titles = [f"pred: {ev.classes[ev.preds[i]]} (true: {ev.classes[ev.targets[i]]})" for i in picked]
        fig = explainer.gallery(ev.images[picked], ev.preds[picked], titles, "Misclassified images")
        figures.save(fig, explained_name(fig_dir / "misclassified.png"))


def _write_predictions(ev: Evaluation, path: Path) -> None:
    """predictions.csv: path, true, predicted, `abstained` where abstaining was asked for, p_CLASS each, and
    for the sigmoid head a `note` column saying the probabilities need not sum to 1."""
    marked = ev.abstain_below is not None
    note = wording.csv_note(ev.head)
    header = ["path", "true", "predicted", *(["abstained"] if marked else []), *[f"p_{c}" for c in ev.classes], *note]
    rows = []
    for p, t, q, a, prob in zip(ev.paths, ev.targets, ev.preds, ev.abstained(), ev.probs, strict=True):
        flag = [str(bool(a)).lower()] if marked else []
        rows.append([p, ev.classes[t], ev.classes[q], *flag, *[f"{v:.6f}" for v in prob], *note.values()])
    rundir.write_csv(path, header, rows)


def _write_calibration_figures(ev: Evaluation, fig_dir: Path) -> None:
    """The reliability diagram and the per-class precision-recall curves."""
    if not len(ev.targets):
        return
    calibrated = ev.calibration()
    title = f"Reliability (ECE {calibrated['ece']:.4f}, 15 bins)"
    figures.save(figures.plot_reliability(calibrated["bins"], title, calibrated["note"]), fig_dir / "reliability.png")
    figures.save(
        figures.plot_precision_recall(ev.precision_recall(), "Precision-recall per class (one against the rest)"),
        fig_dir / "precision_recall.png",
    )


@dataclass(frozen=True)
class EvaluateResult:
    """What `evaluate` wrote: the folder, evaluation.json's typed record (`metrics`: accuracy, balanced
    scores, calibration, the confusion matrix...; for many labels per image mAP, subset accuracy, Hamming
    loss and the per-label table) and the evaluation itself for further questions."""

    directory: Path
    metrics: EvaluationRecord | MultiLabelEvaluationRecord
    evaluation: Evaluation | MultiLabelEvaluation


def evaluate(
    run: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: EvaluateConfig = EvaluateConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
) -> EvaluateResult:
    """Evaluate the model of `run` on the labelled images under `data` (a split folder such as
    data/test, or a root holding test/); results go to `out` (None: RUN/evaluations/NAME, the
    folder's name). Labels follow the run's own rule unless `config.labels` is given.
    `config.abstain_below`: mark images whose top probability is under it (None: the run's own, if any).
    `config.explain`: Grad-CAM overlays of the mistakes gallery (models.saliency). `progress`: None shows
    it when stderr is a terminal, True always, False never (`core.progress`)."""
    config.check()
    check_pixel_limit(config.max_pixels)
    run_dir = rundir.RunDir(run)
    dev = resolve_device(config.device)
    model, spec = load_model(run_dir.path, device=dev)
    if spec.task != "classify":
        raise RunError(f"{run_dir.path}: holds a {spec.task} model, not a classifier")
    data = Path(data)
    root = data / "test" if (data / "test").is_dir() else data
    trained = read_config(run_dir.config) if run_dir.config.exists() else TrainConfig()
    samples, unlabeled = _labelled_samples(root, spec, trained, config)
    if not samples:
        raise DataError(f"{root}: no labelled images found")
    unknown = sorted(label_names(samples) - set(spec.classes))
    if unknown:
        raise DataError(
            f"{root}: class(es) the model was not trained on: {', '.join(unknown)} (it knows {list(spec.classes)})"
        )
    with pixel_limit(config.max_pixels), make_progress(progress) as bar:
        bar.task("decode", len(samples))
        data_set = load_images(samples, decode_options(spec), spec.classes, strict=config.strict, progress=bar)
    data_set.skipped += unlabeled
    name = root.resolve().stem if root.is_file() else root.resolve().name  # a CSV's name without .csv
    directory = Path(out) if out else run_dir.path / "evaluations" / (name or "data")
    if spec.multi_label:
        return _evaluate_label_sets(model, spec, data_set, dev, run_dir, directory, config)
    ev = Evaluation.from_model(model, spec, data_set, dev)
    ev.abstain_below = spec.abstain_below if config.abstain_below is None else config.abstain_below
    ev.directory = directory
    with run_dir.lock_for(ev.directory):  # writing into the run directory: one writer at a time
        explainer = GradCam.for_spec(model, spec) if config.explain else None
        write_evaluation(ev, ev.directory, gallery_order=config.gallery_order, explainer=explainer)
    return EvaluateResult(ev.directory, EvaluationRecord.read(ev.directory), ev)


def _labelled_samples(
    root: Path, spec: ModelSpec, trained: TrainConfig, config: EvaluateConfig
) -> tuple[list[Sample], list[tuple[str, str]]]:
    """The labelled images to score: a label CSV's rows (its `test` rows where it names splits), or a
    folder labelled by the run's rule (or `config.labels` / `config.groups`)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root}: expected a folder of images or a label CSV")
        found = label_csv_splits(root, trained.label_sep if spec.multi_label else None)
        return found.get("test", found.get("all", [s for part in found.values() for s in part])), []
    groups = trained.groups if config.groups is None else config.groups
    rule = LabelRule(config.labels or trained.labels, {k: tuple(v) for k, v in groups.items()})
    if spec.multi_label:
        raise DataError(f"{root}: a model of many labels per image is evaluated on a label CSV of path,labels")
    return scan_folder(root, rule)


def _evaluate_label_sets(
    model: nn.Module, spec: ModelSpec, data_set: ImageSource, device: torch.device, run_dir: rundir.RunDir,
    directory: Path, config: EvaluateConfig,
) -> EvaluateResult:  # fmt: skip
    ev = MultiLabelEvaluation.from_model(model, spec, data_set, device)
    ev.directory = directory
    with run_dir.lock_for(directory):
        explainer = GradCam.for_spec(model, spec) if config.explain else None
        record = write_multi_label_evaluation(ev, directory, explainer=explainer)
    return EvaluateResult(directory, record, ev)


__all__ = ["EvaluateResult", "Evaluation", "evaluate", "evaluate_set", "write_evaluation"]
