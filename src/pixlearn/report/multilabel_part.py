"""The evaluation part of report.html for many labels per image: the figures of the whole set, the
per-label table sorted by average precision, the labels given against the labels predicted, the
per-label precision-recall curves and the galleries of each label's false positives and negatives."""

from __future__ import annotations

from pathlib import Path

from pixlearn.core.storage.classify_records import LabelScores, MultiLabelEvaluationRecord
from pixlearn.report import html as h
from pixlearn.report.html import Section
from pixlearn.report.parts import embed, limited


def render_multi_label_evaluation(
    ev: MultiLabelEvaluationRecord | None, directory: Path, ident: str, title: str
) -> Section | None:
    if ev is None:
        return None
    classes = list(ev.classes)
    body = [
        h.badges(
            {
                "images": ev.images,
                "mAP (macro)": h.fmt(ev.map_macro),
                "mAP (micro)": h.fmt(ev.map_micro),
                "subset accuracy": h.percent(ev.subset_accuracy),
                "Hamming loss": h.fmt(ev.hamming_loss),
                "labels per image": f"{h.fmt(ev.cardinality_given, 2)} given, "
                f"{h.fmt(ev.cardinality_predicted, 2)} predicted",
            }
        ),
        h.paragraph(
            "Each label is its own question: present where its probability reaches its threshold, fitted on the "
            "validation split (maximum F1 unless a target recall was asked). Subset accuracy counts the images "
            "whose every label is right; the Hamming loss is the share of (image, label) pairs wrong."
        ),
        h.table(
            ["label", "AP", "precision", "recall", "F1", "support", "predicted", "ECE", "threshold"],
            [_row(r, ev) for r in ev.per_label],
            caption="Per label, best average precision first",
        ),
    ]
    if ev.co_occurrence:
        body.append(h.heat_table(ev.co_occurrence, classes, "Images with the label of the row, given the label of "
                                 "the column by the model (the diagonal: found)", "count"))  # fmt: skip
    body.append(_figures(directory))
    if ev.skipped:
        shown, more = limited(list(ev.skipped), "skipped files")
        body.append(h.table(["path", "reason"], [[s.path, s.reason] for s in shown], "Skipped files") + more)
    return Section(ident, title, "\n".join(body))


def _row(r: LabelScores, ev: MultiLabelEvaluationRecord) -> list[str | int]:
    threshold = ev.thresholds[list(ev.classes).index(r.label)] if ev.thresholds else 0.5
    scores = (r.average_precision, r.precision, r.recall, r.f1)
    return [r.label, *(h.fmt(v) for v in scores), r.support, r.predicted, h.fmt(r.ece), h.fmt(threshold)]


def _figures(directory: Path) -> str:
    folder = directory / "figures"
    named = [
        ("precision_recall.png", "Precision-recall per label"),
        ("co_occurrence.png", "Labels given and predicted"),
    ]
    named += [(p.name, p.stem.replace("_", " ")) for p in sorted(folder.glob("label_*_f[pn].png"))]
    named += [("predicted_labels_gradcam.png", "Grad-CAM of each predicted label")]
    shown = [
        embed(folder / name, caption, caption, within=directory) for name, caption in named if (folder / name).exists()
    ]
    return h.grid(shown) if shown else ""
