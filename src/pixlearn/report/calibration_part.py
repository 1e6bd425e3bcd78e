"""The report's reading of probabilities: which rule made the labels (and so the confusion matrix),
balanced scores, calibration (ECE, the reliability diagram, the fitted temperature and its effect on the
validation split), abstaining, and the per-class precision-recall curves.

Reads evaluation.json (and the run's metrics.json for what was fitted at the end of training); files
written before these figures existed give nothing here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixlearn.report import html as h
from pixlearn.report.common import embed, number, read_object


def render_decisions(ev: dict[str, Any], directory: Path, ident: str) -> str:
    """The evaluation section's part on decisions and calibration ("" for an older evaluation.json)."""
    if "balanced_accuracy" not in ev:
        return ""
    body = [
        h.badges(
            {
                "balanced accuracy": _percent(ev.get("balanced_accuracy")),
                "macro-F1": h.fmt(ev.get("macro_f1")),
                "ECE (15 bins)": h.fmt(ev.get("ece")),
                "NLL": h.fmt(ev.get("nll")),
            }
        ),
        h.note(
            f"Predicted labels, and so the confusion matrices above: {ev.get('decision', 'the most probable class')}."
        ),
    ]
    abstention = ev.get("abstention") or {}
    if abstention:
        kept = abstention.get("accuracy_on_kept")
        body.append(
            h.paragraph(
                f"Abstaining where the top probability is below {abstention['abstain_below']:g}: "
                f"{abstention['abstained']:,} images abstained (the abstained column of predictions.csv), coverage "
                f"{_percent(abstention['coverage'])}, accuracy on the rest "
                f"{_percent(kept) if kept is not None else 'undefined (none kept)'}."
            )
        )
    body.append(_calibration(ev, directory, ident))
    body.append(_precision_recall(ev, directory))
    return "\n".join(b for b in body if b)


def _percent(value: Any) -> str:
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


def _calibration(ev: dict[str, Any], directory: Path, ident: str) -> str:
    calibration = ev.get("calibration") or {}
    parts = [h.heading("Calibration")]
    note = str(calibration.get("note", ""))
    temperature = ev.get("temperature")
    if temperature:
        shown = temperature_text(temperature, ev["classes"])
        parts.append(h.paragraph(f"Temperature scaling (logits / T) fitted on the validation split: T = {shown}."))
    else:
        parts.append(
            h.paragraph("Uncalibrated: the network's own probabilities (train with --calibrate to fit a temperature).")
        )
    metrics = read_object(directory / "metrics.json", []) if ident == "evaluation" else None
    parts.append(_scaling_table(ev, metrics or {}, directory.name if ident != "evaluation" else None))
    if metrics and metrics.get("calibration_warning"):
        parts.append(h.paragraph(f"Warning: {metrics['calibration_warning']}."))
    parts.append(
        embed(
            directory / "figures" / "reliability.png",
            "Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration",
            f"Reliability diagram (ECE {h.fmt(ev.get('ece'))}); {note}",
        )
    )
    return "\n".join(p for p in parts if p)


def _scaling_table(ev: dict[str, Any], metrics: dict[str, Any], folder: str | None) -> str:
    """NLL and ECE before and after temperature scaling: on the validation split it was fitted on (the
    run's metrics.json) and on this evaluation's images, held out of that fit, the honest figures."""
    columns: list[tuple[str, dict[str, Any]]] = []
    if "val_ece_before" in metrics:
        columns.append(("validation split", {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}))
    effect = ev.get("temperature_effect") or {}
    if effect and metrics.get("evaluated_on") != "validation":  # else the same images as the column before
        columns.append((f"{folder}/" if folder else "test set", effect))
    if not columns:
        return ""
    header = [""] + [f"{name}, {when}" for name, _ in columns for when in ("before", "after")]
    rows = [
        [label, *[h.fmt(figures.get(f"{key}_{when}")) for _, figures in columns for when in ("before", "after")]]
        for label, key in (("NLL", "nll"), ("ECE (15 bins)", "ece"))
    ]
    caption = "Temperature scaling (ECE on the predicted labels, as the reliability diagram)"
    return h.table(header, rows, caption=caption)


def _precision_recall(ev: dict[str, Any], directory: Path) -> str:
    curves = ev.get("precision_recall") or []
    if not curves:
        return ""
    rows = [[c["class"], h.fmt(c.get("average_precision"))] for c in curves]
    return "\n".join(
        [
            h.heading("Precision and recall per class"),
            h.table(["class", "average precision"], rows, caption="Each class against the rest"),
            embed(
                directory / "figures" / "precision_recall.png",
                "Precision against recall for each class, one against the rest",
                "Precision-recall curves (one class against the rest)",
            ),
        ]
    )
