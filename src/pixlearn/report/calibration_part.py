"""The report's reading of probabilities: which rule made the labels (and so the confusion matrix),
balanced scores, calibration (ECE, the reliability diagram, the fitted temperature and its effect on the
validation split), abstaining, and the per-class precision-recall curves.

Reads evaluation.json (and the run's metrics.json for what was fitted at the end of training); files
written before these figures existed give nothing here.
"""

from __future__ import annotations

from pathlib import Path

from pixlearn.core.storage.classify_records import EvaluationRecord, TemperatureEffect, TrainingMetrics
from pixlearn.report import html as h
from pixlearn.report.parts import embed, number, read_record


def render_decisions(ev: EvaluationRecord, directory: Path, ident: str) -> str:
    """The evaluation section's part on decisions and calibration ("" for an older evaluation.json)."""
    if ev.balanced_accuracy is None:
        return ""
    body = [
        h.badges(
            {
                "balanced accuracy": _percent(ev.balanced_accuracy),
                "macro-F1": h.fmt(ev.macro_f1),
                "ECE (15 bins)": h.fmt(ev.ece),
                "NLL": h.fmt(ev.nll),
            }
        ),
        h.note(f"Predicted labels, and so the confusion matrices above: {ev.decision}."),
    ]
    if ev.abstention is not None:
        a, kept = ev.abstention, ev.abstention.accuracy_on_kept
        body.append(
            h.paragraph(
                f"Abstaining where the top probability is below {a.abstain_below:g}: "
                f"{a.abstained:,} images abstained (the abstained column of predictions.csv), coverage "
                f"{_percent(a.coverage)}, accuracy on the rest "
                f"{_percent(kept) if kept is not None else 'undefined (none kept)'}."
            )
        )
    body.append(_calibration(ev, directory, ident))
    body.append(_precision_recall(ev, directory))
    return "\n".join(b for b in body if b)


def _percent(value: float | None) -> str:
    v = number(value)
    return h.percent(v) if v is not None else "-"


def temperature_text(temperature: list[float] | tuple[float, ...], classes: list[str] | tuple[str, ...]) -> str:
    """The fitted temperatures named by class: one per class output (sigmoid head), or one for all.

    >>> temperature_text([0.109, 0.139], ["city", "nature"])
    'city 0.109, nature 0.139 (one per class output)'
    >>> temperature_text([1.5], ["city", "nature"])
    '1.500 (one for every class)'
    """
    if len(temperature) == len(classes) and len(classes) > 1:
        named = ", ".join(f"{c} {t:.3f}" for c, t in zip(classes, temperature, strict=True))
        return f"{named} (one per class output)"
    return ", ".join(f"{t:.3f}" for t in temperature) + " (one for every class)"


def _calibration(ev: EvaluationRecord, directory: Path, ident: str) -> str:
    note = ev.calibration.note if ev.calibration is not None else ""
    parts = [h.heading("Calibration")]
    if ev.temperature:
        shown = temperature_text(ev.temperature, ev.classes)
        parts.append(h.paragraph(f"Temperature scaling (logits / T) fitted on the validation split: T = {shown}."))
    else:
        parts.append(
            h.paragraph("Uncalibrated: the network's own probabilities (train with --calibrate to fit a temperature).")
        )
    metrics = read_record(TrainingMetrics, directory / TrainingMetrics.FILE, []) if ident == "evaluation" else None
    parts.append(_scaling_table(ev, metrics, directory.name if ident != "evaluation" else None))
    if metrics is not None and metrics.calibration_warning:
        parts.append(h.paragraph(f"Warning: {metrics.calibration_warning}."))
    parts.append(
        embed(
            directory / "figures" / "reliability.png",
            "Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration",
            f"Reliability diagram (ECE {h.fmt(ev.ece)}); {note}",
            within=directory,
        )
    )
    return "\n".join(p for p in parts if p)


def _scaling_table(ev: EvaluationRecord, metrics: TrainingMetrics | None, folder: str | None) -> str:
    """NLL and ECE before and after temperature scaling: on the validation split it was fitted on (the
    run's metrics.json) and on this evaluation's images, held out of that fit, the honest figures."""
    columns: list[tuple[str, TemperatureEffect]] = []
    if metrics is not None and (fitted_on := metrics.validation_effect()) is not None:
        columns.append(("validation split", fitted_on))
    same_images = metrics is not None and metrics.evaluated_on == "validation"  # as the column before
    if ev.temperature_effect is not None and not same_images:
        columns.append((f"{folder}/" if folder else "test set", ev.temperature_effect))
    if not columns:
        return ""
    header = [""] + [f"{name}, {when}" for name, _ in columns for when in ("before", "after")]
    rows = [
        [label, *[h.fmt(getattr(effect, f"{key}_{when}")) for _, effect in columns for when in ("before", "after")]]
        for label, key in (("NLL", "nll"), ("ECE (15 bins)", "ece"))
    ]
    caption = "Temperature scaling (ECE on the predicted labels, as the reliability diagram)"
    return h.table(header, rows, caption=caption)


def _precision_recall(ev: EvaluationRecord, directory: Path) -> str:
    curves = ev.precision_recall
    if not curves:
        return ""
    rows = [[c.name, h.fmt(c.average_precision)] for c in curves]
    return "\n".join(
        [
            h.heading("Precision and recall per class"),
            h.table(["class", "average precision"], rows, caption="Each class against the rest"),
            embed(
                directory / "figures" / "precision_recall.png",
                "Precision against recall for each class, one against the rest",
                "Precision-recall curves (one class against the rest)",
                within=directory,
            ),
        ]
    )
