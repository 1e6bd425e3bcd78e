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


def _calibration(ev: dict[str, Any], directory: Path, ident: str) -> str:
    calibration = ev.get("calibration") or {}
    parts = [h.heading("Calibration")]
    note = str(calibration.get("note", ""))
    temperature = ev.get("temperature")
    if temperature:
        shown = ", ".join(f"{t:.3f}" for t in temperature)
        parts.append(h.paragraph(f"Temperature scaling fitted on the validation split: T = {shown} (logits / T)."))
    else:
        parts.append(
            h.paragraph("Uncalibrated: the network's own probabilities (train with --calibrate to fit a temperature).")
        )
    metrics = read_object(directory / "metrics.json", []) if ident == "evaluation" else None
    if metrics and "val_ece_before" in metrics:
        rows = [
            ["NLL", h.fmt(metrics["val_nll_before"]), h.fmt(metrics["val_nll_after"])],
            ["ECE (15 bins)", h.fmt(metrics["val_ece_before"]), h.fmt(metrics["val_ece_after"])],
        ]
        parts.append(h.table(["on the validation split", "before", "after"], rows, caption="Temperature scaling"))
    parts.append(
        embed(
            directory / "figures" / "reliability.png",
            "Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration",
            f"Reliability diagram (ECE {h.fmt(ev.get('ece'))}); {note}",
        )
    )
    return "\n".join(p for p in parts if p)


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
