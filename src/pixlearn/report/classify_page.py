"""The classification parts of report.html: data, model, training history, evaluation, mistakes, predictions.

Everything the folder-classification seed shows in its figures and tables, read from the run
directory written by train / evaluate / predict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import (
    ClassScores,
    DataSummary,
    EpochRow,
    EvaluationRecord,
    MultiLabelEvaluationRecord,
    SideRange,
    SplitSizes,
    TrainingMetrics,
)
from pixlearn.core.storage.records import RunConfig
from pixlearn.report import html as h
from pixlearn.report.calibration_part import render_decisions
from pixlearn.report.html import Section, Series
from pixlearn.report.multilabel_part import render_multi_label_evaluation
from pixlearn.report.parts import (
    cell_value,
    embed,
    gather_history,
    gather_model_summary,
    guarded,
    history_numbers,
    limited,
    number,
    read_csv_if_present,
    read_record,
    read_spec_if_present,
    render_model_summary,
    render_problems,
)
from pixlearn.report.run_summary import gather_run_summary, render_run

MAX_MISTAKE_ROWS = 16  # the seed shows 16 mistakes


def classification_parts(run: rundir.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    problems: list[str] = []  # malformed files: each leaves its part out and is listed at the end
    spec = read_spec_if_present(run)
    metrics = read_record(TrainingMetrics, run.metrics, problems)
    summary = read_record(DataSummary, run.data_summary, problems)
    config = read_record(RunConfig, run.config, problems)
    epochs = guarded(problems, run.history, lambda: gather_history(run.history, EpochRow))
    classes = spec.classes if spec else (summary.classes if summary else ())
    headline: dict[str, Any] = {
        "model": spec.model if spec else (config.model if config and config.model else "?"),
        "classes": len(classes),
    }
    headline |= _metrics_headline(metrics, epochs)
    if spec is not None and spec.start_weights:  # transfer learning: the weights training started from
        headline["weights"] = f"{spec.start_weights['file']} (SHA-256 {spec.start_weights['sha256'][:12]}...)"
    if not run.metrics.exists():
        headline["status"] = "unfinished"
    predictions, unlabeled = run.path / "predictions.csv", run.path / "predictions_unlabeled.csv"
    many = bool(spec and spec.multi_label)  # many labels per image: their own evaluation part and galleries
    overview = lambda: Section("overview", "Run", _render_run(run, problems, metrics, config, epochs, many))  # noqa: E731
    parts = [
        guarded(problems, run.config, overview),
        guarded(problems, run.data_summary, lambda: render_data(summary, run)),
        Section("model", "Model", render_model_summary(gather_model_summary(run))),
        guarded(problems, run.history, lambda: render_history(epochs, _phase_marks(epochs))),
        render_lr_found(metrics, run),
        _evaluation_part(problems, run.path, "evaluation", "Evaluation", many),
        None
        if many
        else guarded(problems, predictions, lambda: render_mistakes(gather_mistakes(predictions), run.path)),
        None if many else guarded(problems, unlabeled, lambda: render_predictions(gather_predictions(unlabeled), run)),
    ]
    parts += [
        _evaluation_part(problems, sub, f"evaluation-{i}", f"Evaluation: {sub.name}", many)
        for i, sub in enumerate(sorted(p for p in (run.path / "evaluations").glob("*") if p.is_dir()), 1)
    ]
    return headline, [*parts, render_problems(problems)]


def _metrics_headline(metrics: TrainingMetrics | None, epochs: list[EpochRow] | None) -> dict[str, Any]:
    """The final accuracy, the saved epoch and the epochs run (history.csv's where metrics.json is missing)."""
    if metrics is None:
        return {"epochs": len(epochs or [])}
    headline: dict[str, Any] = {}
    if number(metrics.test_map_macro) is not None:  # many labels per image: ranking, and every label right
        where = "validation" if metrics.evaluated_on == "validation" else "test"
        headline[f"{where} mAP"] = h.fmt(float(metrics.test_map_macro))  # type: ignore[arg-type]
        headline[f"{where} subset accuracy"] = h.percent(float(metrics.test_subset_accuracy or 0.0))
    elif number(metrics.test_accuracy) is not None:  # from the validation split where there is no test set
        named = "validation accuracy" if metrics.evaluated_on == "validation" else "test accuracy"
        headline[named] = h.percent(float(metrics.test_accuracy))  # type: ignore[arg-type]
    if metrics.best_epoch is not None:
        headline["best epoch (saved)"] = metrics.best_epoch
    headline["epochs"] = metrics.epochs_run if metrics.epochs_run is not None else len(epochs or [])
    return headline


def _render_run(
    run: rundir.RunDir,
    problems: list[str],
    metrics: TrainingMetrics | None,
    config: RunConfig | None,
    epochs: list[EpochRow] | None,
    many: bool = False,
) -> str:
    evaluation = None if many else read_record(EvaluationRecord, run.path / EvaluationRecord.FILE, problems)
    summary = read_record(DataSummary, run.data_summary, [])  # its problems: Data's
    classes = evaluation.classes if evaluation else ()  # the spec's, in its order: names the temperatures
    return render_run(gather_run_summary(metrics, evaluation, summary, epochs), metrics, config, classes)


def _evaluation_part(problems: list[str], directory: Path, ident: str, title: str, many: bool) -> Section | None:
    path = directory / EvaluationRecord.FILE
    if many:
        return guarded(problems, path, lambda: render_multi_label_evaluation(
            read_record(MultiLabelEvaluationRecord, path, problems), directory, ident, title))  # fmt: skip
    return guarded(
        problems,
        path,
        lambda: render_evaluation_section(read_record(EvaluationRecord, path, problems), directory, ident, title),
    )


def render_data(summary: DataSummary | None, run: rundir.RunDir) -> Section | None:
    if summary is None:
        return None
    splits = list(summary.images)
    per_class = summary.per_class
    rows = [[c, *[per_class.get(s, {}).get(c, 0) for s in splits]] for c in summary.classes]
    rows.append(["total", *[summary.images[s] for s in splits]])
    body = [h.table(["class", *splits], rows, caption="Images per class and split")]
    if summary.validation is not None:  # which set validated each epoch, which gave the final figures
        body.append(h.note(summary.validation.text))
    size_rows = [[s, d.count, *_size_cells(d)] for s, d in summary.sizes.items() if d.count]
    resized = "x".join(str(v) for v in reversed(summary.size or ()))  # [height, width], shown WIDTHxHEIGHT
    body.append(
        h.table(
            ["split", "images", "width min / median / max", "height min / median / max", "most common sizes"],
            size_rows,
            caption=f"Original image sizes (before resizing to {resized}, {summary.fit or ''})",
        )
    )
    skipped = list(summary.skipped)
    body.append(h.heading(f"Skipped files ({len(skipped):,})"))
    if skipped:
        shown, more = limited(skipped, "skipped files")
        body.append(h.table(["split", "path", "reason"], [[s.split or "", s.path, s.reason] for s in shown]) + more)
    else:
        body.append(h.note("Every file found was used."))
    body.append(
        embed(
            run.figure("samples.png"),
            "A sample of training images with their labels",
            "Sample training images",
            within=run.path,
        )
    )
    return Section("data", "Data", "\n".join(body))


def _size_cells(d: SplitSizes) -> list[str]:
    def triple(r: SideRange | None) -> str:
        return f"{r.min} / {h.fmt(r.median)} / {r.max}" if r is not None else ""

    common = ", ".join(f"{m.size} ({m.images})" for m in d.most_common)
    return [triple(d.width), triple(d.height), common]


def render_history(epochs: list[EpochRow] | None, marks: list[tuple[float, str]] | None = None) -> Section | None:
    """Loss and accuracy charts and the table; `marks`: (epoch, label) vertical lines (fine-tuning's start)."""
    if not epochs:
        return None
    history = history_numbers(epochs)
    charts = [
        h.line_chart(
            _epoch_series(history, key),
            f"{key.capitalize()} per epoch",
            "epoch",
            key,
            chart_id=f"chart-{key}",
            marks=marks or (),
        )
        for key in ("loss", "accuracy")
    ]
    names = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "lr")
    columns = [c for c in (*names, "seconds") if any(row.get(c) is not None for row in history)]
    table = h.table(columns, [[cell_value(row.get(c)) for c in columns] for row in history])
    if marks:
        head = marks[0][0] - 0.5
        charts.insert(0, h.note(f"Epochs 1-{head:g}: the head only (backbone frozen); then the whole network."))
    return Section("history", "Training history", "\n".join(charts) + h.details("Values per epoch", table))


def _phase_marks(epochs: list[EpochRow] | None) -> list[tuple[float, str]]:
    """Where fine-tuning starts: the first epoch of phase `full` after `head` epochs (history.csv's phase)."""
    rows = epochs or []
    for before, row in zip(rows, rows[1:], strict=False):
        if before.phase == "head" and row.phase == "full":
            return [(row.epoch - 0.5, "fine-tuning starts")]
    return []


def _epoch_series(history: list[dict[str, float | None]], key: str) -> list[Series]:
    out = []
    for prefix, label, color, dashed in (
        ("", "training", h.PALETTE[0], False),
        ("val_", "validation", h.PALETTE[1], True),
    ):
        points = [(row["epoch"], row.get(prefix + key)) for row in history if row.get(prefix + key) is not None]
        if points:
            out.append(Series(f"{label} {key}", [p[0] for p in points], [p[1] for p in points], color, dashed))
    return out


def render_evaluation_section(ev: EvaluationRecord | None, directory: Path, ident: str, title: str) -> Section | None:
    if ev is None:
        return None
    classes = list(ev.classes)
    body = [
        h.badges({"images": ev.images, "accuracy": h.percent(ev.accuracy)}),
        h.grid(
            [
                h.heat_table(ev.confusion_matrix, classes, "Confusion matrix (counts)", "count"),
                h.heat_table(ev.confusion_proportions, classes, "Confusion matrix (share of all images)", "share"),
            ]
        ),
        h.heat_table(
            ev.conditional_error_rates,
            classes,
            "Conditional rates P(predicted | true): each row sums to 100%",
            "rate",
        ),
        render_error_sentences(ev),
        h.table(
            ["class", "precision", "recall", "F1", "support"],
            [[r.name, *_scores(r), r.support] for r in ev.per_class],
            caption="Per-class precision, recall and F1",
        ),
    ]
    body.append(render_decisions(ev, directory, ident))  # labels' rule, balanced scores, calibration, PR curves
    if ev.most_confused:
        shown, more = limited([list(pair) for pair in ev.most_confused], "confused pairs", 20)
        body.append(h.table(["true", "predicted as", "images"], shown, caption="Most confused pairs") + more)
    if ident != "evaluation":  # evaluations/NAME keep their own galleries; the main ones have a section
        body.append(_mistake_figures(directory))
    if ev.skipped:
        shown, more = limited(list(ev.skipped), "skipped files")
        body.append(h.table(["path", "reason"], [[s.path, s.reason] for s in shown], "Skipped files") + more)
    return Section(ident, title, "\n".join(body))


def _scores(row: ClassScores) -> list[str]:
    # four decimals, as the command line's tables print them: 1.0000, not 1
    return [f"{v:.4f}" for v in (row.precision, row.recall, row.f1)]


def render_error_sentences(ev: EvaluationRecord) -> str:
    """The seed's reading of the matrix: P(predicted j | true i) for every kind of mistake."""
    classes, rates, counts = ev.classes, ev.conditional_error_rates, ev.confusion_matrix
    items = []
    for i, true in enumerate(classes):
        for j, pred in enumerate(classes):
            if i == j:
                continue
            rate = rates[i][j]
            value = "undefined (no images of this class)" if rate < 0 else f"{100 * rate:.1f}%"
            items.append(
                f"<li>P(predicted {h.esc(pred)} | true {h.esc(true)}) = {h.esc(value)}"
                f" ({counts[i][j]:,} of {sum(counts[i]):,})</li>"
            )
    if len(items) > 40:
        return h.note("Conditional error rates: see the table above (too many classes to list).")
    return "<h3>Conditional error rates</h3><ul>" + "".join(items) + "</ul>"


def gather_mistakes(path: Path) -> dict[str, Any] | None:
    """Misclassified test images from predictions.csv, the most confident first."""
    rows = read_csv_if_present(path)
    if rows is None:
        return None
    classes = [k[2:] for k in (rows[0].keys() if rows else []) if k.startswith("p_")]
    wrong = [r for r in rows if r["true"] != r["predicted"]]
    wrong.sort(key=lambda r: -(number(r.get(f"p_{r['predicted']}")) or 0.0))
    return {"classes": classes, "total": len(rows), "wrong": wrong, "note": _rows_note(rows)}


def _rows_note(rows: list[dict[str, str]]) -> str:
    """What a prediction CSV's `note` column says of its probabilities (the sigmoid head's), or ""."""
    return str(rows[0].get("note") or "") if rows else ""  # a CSV column only the sigmoid head's CSVs have


def render_mistakes(data: dict[str, Any] | None, directory: Path) -> Section | None:
    if data is None:
        return None
    wrong, classes = data["wrong"], data["classes"]
    body = [h.paragraph(f"{len(wrong):,} of {data['total']:,} test images are misclassified.")]
    if wrong:
        rows = [
            [
                r["path"],
                r["true"],
                r["predicted"],
                " / ".join(f"{c}:{number(r.get('p_' + c)) or 0:.2f}" for c in classes),
            ]
            for r in wrong[:MAX_MISTAKE_ROWS]
        ]
        caption = f"The {len(rows)} most confident mistakes, with the probability of each class"
        caption += f" ({data['note']})" if data["note"] else ""
        body.append(h.table(["image", "true", "predicted", "probabilities"], rows, caption=caption))
    body.append(_mistake_figures(directory))
    return Section("mistakes", "Misclassified images", "\n".join(body))


def _mistake_figures(directory: Path) -> str:
    figures = directory / "figures"
    return "".join(
        [
            embed(
                figures / "misclassified.png",
                "A random sample of misclassified images, each with its predicted label and class probabilities",
                "Misclassified images (random sample, as the seed draws them); red: probability of each class",
                within=directory,
            ),
            embed(
                figures / "misclassified_gradcam.png",
                "The same misclassified images with a Grad-CAM heat map over each",
                "What the network looked at (--explain): Grad-CAM of the predicted class, red where the evidence "
                "for it is strongest",
                within=directory,
            ),
            embed(
                figures / "confident_mistakes.png",
                "The misclassified images the model was most sure about, with class probabilities",
                "Most confident mistakes first",
                within=directory,
            ),
        ]
    )


def gather_predictions(path: Path) -> dict[str, Any] | None:
    rows = read_csv_if_present(path)
    if rows is None:
        return None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    return {"rows": rows, "counts": counts}


def render_predictions(data: dict[str, Any] | None, run: rundir.RunDir) -> Section | None:
    gallery = embed(
        run.figure("predictions.png"),
        "Unlabelled images with the label the model predicts",
        "Predictions",
        within=run.path,
    )
    gallery += embed(
        run.figure("predictions_gradcam.png"),
        "The same images with a Grad-CAM heat map over each",
        "What the network looked at (--explain): Grad-CAM of the predicted class, red where the evidence is strongest",
        within=run.path,
    )
    if data is None and not gallery:
        return None
    body = []
    if data is not None:
        body.append(h.table(["predicted label", "images"], sorted(data["counts"].items()), caption="Predicted labels"))
    body.append(gallery)
    if data is not None and data["rows"]:
        header = [k for k in data["rows"][0] if k != "note"]  # the note, the same on every row, goes in the title
        shown, more = limited(data["rows"], "predictions", 50)
        rows = [[r[k] if not k.startswith("p_") else number(r[k]) for k in header] for r in shown]
        note = _rows_note(data["rows"])
        title = "Predictions per image (predictions_unlabeled.csv" + (f"; {note})" if note else ")")
        body.append(h.details(title, h.table(header, rows) + more))
    return Section("predictions", "Predictions on new images", "\n".join(body))


def render_lr_found(metrics: TrainingMetrics | None, run: rundir.RunDir) -> Section | None:
    """`--lr auto`: the rate each phase trained at, how it was found, and each sweep's curve."""
    found = metrics.lr_found if metrics is not None else None
    if not found:
        return None
    rows = [[f.phase or "every epoch", f"{f.lr:.3g}", f.rule, Path(f.sweep).name] for f in found]
    caption = "--lr auto: a learning-rate sweep on the training split at the start of each phase (config.json: auto)"
    body = [h.table(["phase", "learning rate", "rule", "sweep"], rows, caption=caption)]
    for f in found:
        where = f" ({f.phase} phase)" if f.phase else ""
        figure = run.figure(Path(f.sweep).stem + ".png")  # a name from metrics.json: only its stem is used
        alt = f"The loss against the learning rate in the sweep{where}, the chosen rate marked"
        body.append(embed(figure, alt, f"Learning-rate sweep{where}: {f.rule} {f.lr:.3g}", within=run.path))
    return Section("lr-find", "Learning rate", "\n".join(body))
