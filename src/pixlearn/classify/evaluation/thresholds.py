"""Operating points: which label a probability becomes, fitted on the validation split.

- Two classes: a threshold on one class's probability, chosen for a target recall (`--target-recall
  nature=0.95`: the highest threshold whose validation recall of nature is at least 0.95) or at equal
  error rates (`--equal-error`: the second class's false-positive and false-negative rates as close as
  the validation split allows). It is saved in the model spec and `inference.decisions.decide`
  applies it wherever a label is predicted (evaluation, prediction); without one, the most probable
  class (the seed's which.max).
- Any number of classes: `--abstain-below P` marks images whose top probability is under P as
  abstained (a column beside the label, never a made-up class that could collide with a real one);
  evaluations give the coverage and the accuracy on the images kept.
- Per-class precision-recall curves and average precision (one class against the rest), for the report.

    >>> recall_rule("nature=0.95")
    ('nature', 0.95)
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.evaluation import curves, multilabel
from pixlearn.classify.evaluation.calibration import bound_warning, fit_temperature
from pixlearn.classify.evaluation.scores import expected_calibration_error, negative_log_likelihood
from pixlearn.classify.inference.decisions import abstained, decide
from pixlearn.classify.inference.forward import spec_logits
from pixlearn.classify.inference.heads import probabilities
from pixlearn.core.errors import ConfigError, DataError
from pixlearn.core.storage.spec import ModelSpec

MAX_CURVE_POINTS = 200  # per class in evaluation.json: enough for a smooth curve at any set size


def recall_rule(text: str) -> tuple[str, float]:
    """`nature=0.95` -> ("nature", 0.95) (TrainConfig has checked the form)."""
    name, _, value = text.strip().rpartition("=")
    return name.strip(), float(value)


def check_rule(config: Any, classes: list[str] | tuple[str, ...]) -> None:
    """Refuse a threshold option the data cannot take, before any epoch is trained."""
    if getattr(config, "multi_label", False):
        multilabel.recall_targets(config.target_recall, classes)
        return
    if not (config.target_recall or config.equal_error):
        return
    flag = "--target-recall" if config.target_recall else "--equal-error"
    if len(classes) != 2:
        raise ConfigError(
            f"{flag}: a decision threshold is for two classes, the data has {len(classes)}; "
            "use --abstain-below for any number of classes"
        )
    if config.target_recall:
        name = recall_rule(config.target_recall)[0]
        if name not in classes:
            near = difflib.get_close_matches(name, list(classes), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"--target-recall: class {name!r} is not one of {', '.join(classes)}{hint}")


def recall_threshold(scores: np.ndarray, positives: np.ndarray, recall: float) -> float:
    """The highest threshold t with recall(score >= t) >= `recall` (the most precise such point)."""
    if not positives.any():
        raise DataError("no validation image of the class whose recall is targeted: no threshold can be fitted")
    _, recalls, thresholds = curves.precision_recall_curve(scores, positives)
    reached = recalls[:-1] >= recall - 1e-12  # the last point (recall 0) has no threshold
    return float(thresholds[reached].max())


def equal_error_threshold(scores: np.ndarray, positives: np.ndarray) -> float:
    """The threshold where the false-positive rate comes closest to the false-negative rate."""
    if positives.all() or not positives.any():
        raise DataError("--equal-error needs validation images of both classes")
    fpr, tpr, thresholds = curves.roc_curve(scores, positives)
    gap = np.abs(fpr - (1 - tpr))
    return float(min(thresholds[int(gap.argmin())], 1.0))  # the first point is "above every score"


def choose_threshold(probs: np.ndarray, targets: np.ndarray, classes: tuple[str, ...], config: Any) -> dict:
    """The spec's `threshold` for `--target-recall CLASS=R` or `--equal-error`, from validation probabilities."""
    if config.target_recall:
        name, recall = recall_rule(config.target_recall)
        rule = f"recall {name}={recall:g}"
    else:
        name, recall, rule = classes[1], math.nan, "equal error rates"
    k = classes.index(name)
    scores = np.asarray(probs[:, k], dtype=np.float64)
    positives = np.asarray(targets) == k
    value = recall_threshold(scores, positives, recall) if config.target_recall else None
    if value is None:
        value = equal_error_threshold(scores, positives)
    return {"class": name, "value": round(value, 8), "rule": rule}


def coverage(probs: np.ndarray, targets: np.ndarray, preds: np.ndarray, below: float | None) -> dict[str, Any]:
    """What abstaining keeps: the share of images answered and the accuracy on them."""
    if below is None:
        return {}
    skip = abstained(probs, below)
    kept = ~skip
    accuracy = float((preds[kept] == targets[kept]).mean()) if kept.any() else None  # none kept
    return {"abstain_below": below, "abstained": int(skip.sum()), "coverage": float(kept.mean()) if len(kept) else 0.0,
            "accuracy_on_kept": accuracy}  # fmt: skip


def precision_recall_curves(probs: np.ndarray, targets: np.ndarray, classes: list[str]) -> list[dict[str, Any]]:
    """Per class (one against the rest): average precision and up to MAX_CURVE_POINTS (recall, precision)."""
    found = []
    scores_all = np.asarray(probs, dtype=np.float64)
    for k, name in enumerate(classes):
        positives = np.asarray(targets) == k
        if not positives.any():
            found.append({"class": name, "average_precision": math.nan, "recall": [], "precision": []})
            continue
        precision, recall, _ = curves.precision_recall_curve(scores_all[:, k], positives)
        step = max(1, math.ceil(len(recall) / MAX_CURVE_POINTS))
        keep = np.unique(np.r_[np.arange(0, len(recall), step), len(recall) - 1])
        ap = curves.average_precision(scores_all[:, k], positives)
        found.append({"class": name, "average_precision": round(ap, 6), "recall": recall[keep].round(5).tolist(),
                      "precision": precision[keep].round(5).tolist()})  # fmt: skip
    return found


def temperature_effect(
    before: np.ndarray,
    after: np.ndarray,
    targets: np.ndarray,
    classes: tuple[str, ...] | list[str],
    threshold: dict | None,
) -> dict[str, float]:
    """NLL and ECE of probabilities before and after temperature scaling, each ECE on the labels predicted
    from them. A threshold picks the same images either way (scaling is monotone in its class's logit, and
    recall and ROC points follow the order alone; up to ties where float32 probabilities saturate at 1), so
    its labels serve both; without one, each set's most probable class."""
    after_labels = decide(after, classes, threshold)
    before_labels = after_labels if threshold else decide(before, classes, None)
    return {
        "nll_before": round(negative_log_likelihood(before, targets), 6),
        "nll_after": round(negative_log_likelihood(after, targets), 6),
        "ece_before": expected_calibration_error(before, targets, before_labels),
        "ece_after": expected_calibration_error(after, targets, after_labels),
    }


def scaling_warning(effect: dict[str, float], images: int) -> str | None:
    """A warning where temperature scaling made the validation ECE worse (None where it did not)."""
    if not effect["ece_after"] > effect["ece_before"]:
        return None
    return (
        f"temperature scaling raised the validation ECE from {effect['ece_before']:.4f} to "
        f"{effect['ece_after']:.4f} ({images} validation images; the scaling minimises NLL, not ECE): a larger "
        "--val-split may fit it better, and without --calibrate the probabilities stay as trained"
    )


def wanted(config: Any) -> bool:
    return bool(
        getattr(config, "multi_label", False)
        or config.calibrate
        or config.target_recall
        or config.equal_error
        or config.abstain_below is not None
    )


def fitted_spec(
    model: nn.Module, spec: ModelSpec, val_set: ImageSource, config: Any, device: torch.device, final: str = "test"
) -> tuple[ModelSpec, dict[str, Any]]:
    """The spec with what `config` asks fitted on the validation split (`val_set`): the temperature
    (`--calibrate`), then the two-class threshold on the calibrated probabilities, and `--abstain-below`;
    the metrics that say what was fitted, on what, NLL / ECE before and after (each ECE on the labels
    predicted, the threshold's where there is one) and `calibration_warning` where the ECE rose or the
    temperature is a bound of its search (`calibration.bound_warning`; training logs it too)."""
    if not wanted(config):
        return spec, {}
    if spec.multi_label:
        return _fitted_label_thresholds(model, spec, val_set, config, device, final)
    spec = dataclasses.replace(spec, abstain_below=config.abstain_below)
    if not (config.calibrate or config.target_recall or config.equal_error):
        return spec, {}
    if len(val_set) == 0:
        raise DataError("no validation images to fit --calibrate / the threshold on")
    logits = spec_logits(model, val_set.images, device, spec)
    labels = val_set.labels
    metrics: dict[str, Any] = {"decisions_fitted_on": _fitted_on(final, len(labels))}
    uncalibrated = spec
    if config.calibrate:
        spec = dataclasses.replace(spec, temperature=fit_temperature(logits, labels, spec.head))
    # calibrated where asked: the threshold is fitted on these
    after = probabilities(logits, spec.head, spec.temperature).numpy()
    if config.target_recall or config.equal_error:
        threshold = choose_threshold(after, labels.numpy(), spec.classes, config)
        spec = dataclasses.replace(spec, threshold=threshold)
        metrics["threshold"] = threshold
    if config.calibrate:  # after the threshold: the ECE is of the labels the run will predict
        before = probabilities(logits, uncalibrated.head, uncalibrated.temperature).numpy()
        effect = temperature_effect(before, after, labels.numpy(), spec.classes, spec.threshold)
        metrics |= {"temperature": list(spec.temperature or ()), **{f"val_{k}": v for k, v in effect.items()}}
        warnings = [scaling_warning(effect, len(labels)), bound_warning(spec.temperature or (), len(labels))]
        if any(warnings):
            metrics["calibration_warning"] = "; ".join(w for w in warnings if w)
    spec.check()
    return spec, metrics


def _fitted_on(final: str, images: int) -> str:
    note = "the validation split held out of the training folder"
    if final == "validation":  # no test/ folder: the final figures are on the same images
        note += "; it is also the set the final figures are from (no test set), so they read optimistic"
    return f"{note} ({images} images)"


def _fitted_label_thresholds(
    model: nn.Module, spec: ModelSpec, val_set: ImageSource, config: Any, device: torch.device, final: str
) -> tuple[ModelSpec, dict[str, Any]]:
    """Many labels per image: each label's temperature (`--calibrate`), then each label's threshold on the
    calibrated probabilities (maximum F1, or `--target-recall LABEL=R`); 1/2 each without a validation set."""
    if len(val_set) == 0:
        return spec, {}
    logits = spec_logits(model, val_set.images, device, spec)
    truth = val_set.labels.numpy()
    metrics: dict[str, Any] = {"decisions_fitted_on": _fitted_on(final, len(truth))}
    if config.calibrate:
        before = probabilities(logits, spec.head, spec.temperature).numpy()
        spec = dataclasses.replace(spec, temperature=fit_temperature(logits, val_set.labels, spec.head))
        after = probabilities(logits, spec.head, spec.temperature).numpy()
        metrics["temperature"] = list(spec.temperature or ())
        metrics["val_ece_before"] = _mean_label_ece(before, truth)
        metrics["val_ece_after"] = _mean_label_ece(after, truth)
        warning = bound_warning(spec.temperature or (), len(truth))
        if warning:
            metrics["calibration_warning"] = warning
    probs = probabilities(logits, spec.head, spec.temperature).numpy()
    fitted = multilabel.fit_thresholds(
        probs, truth, spec.classes, multilabel.recall_targets(config.target_recall, spec.classes)
    )
    spec = dataclasses.replace(spec, label_thresholds=tuple(fitted["values"]))
    metrics["label_thresholds"] = dict(zip(spec.classes, fitted["values"], strict=True))
    spec.check()
    return spec, metrics


def _mean_label_ece(probs: np.ndarray, truth: np.ndarray) -> float:
    """The mean over labels of each label's calibration error (its probability against its presence)."""
    return round(float(np.mean([curves.binary_calibration_error(probs[:, k], truth[:, k] > 0.5)
                                for k in range(probs.shape[1])])), 6)  # fmt: skip
