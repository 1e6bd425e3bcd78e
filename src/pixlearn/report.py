"""report.html: everything a run directory holds, in one self-contained page.

`write_report(run_dir)` reads the files of a finished (or interrupted) run and writes
`RUN/report.html`: figures embedded as thumbnails, tables, and training charts whose points
show their values on hover. The page loads nothing from anywhere else (a content security
policy forbids it), so it can be mailed, archived or opened offline.

It detects the kind of run from its files:
  - classification (model.json "task" == "classify", or data_summary.json): data, model,
    training history, confusion matrices, per-class scores, mistakes, predictions;
  - image fitting (model.json "task" == "field"): original, reconstruction and error map side
    by side, the PSNR curve, metrics, the model;
  - a comparison of image-fitting models (compare.json): the table, the grid, every model's curve.

Each section is built in two steps: a `gather_*` function reads the files into plain data (or
None when the run has no such part) and a `render_*` function turns that data into HTML.

    >>> from pixlearn.report import write_report
    >>> write_report("runs/demo")          # doctest: +SKIP
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import datetime
import json
import math
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report_html as h
from . import runs
from .images import ImageError
from .report_html import Section, Series

KINDS = ("classify", "field", "compare")
LOG_TAIL = 40  # log lines shown at the end of the page
MAX_TABLE_ROWS = 100  # longer tables (skipped files, predictions) show this many and say how many more
MAX_MISTAKE_ROWS = 16  # the seed shows 16 mistakes


def write_report(run_dir: str | os.PathLike) -> Path:
    """Write RUN/report.html (atomically) from the files in the run directory; return its path."""
    run = runs.RunDir(run_dir)
    text = render_report(run.path)
    runs.write_text(run.report, text)
    return run.report


def render_report(run_dir: str | os.PathLike) -> str:
    """The report of a run directory as one HTML string."""
    run = runs.RunDir(run_dir)
    if not run.path.is_dir():
        raise runs.RunError(f"{run.path}: not a directory")
    kind = run_kind(run.path)
    builders = {"classify": classification_parts, "field": field_parts, "compare": compare_parts}
    headline, parts = builders[kind](run)
    subtitle = {
        "classify": "Image classification run",
        "field": "Image fitting run: one image learned as a function of its pixel coordinates",
        "compare": "Comparison of image-fitting models on one image",
    }[kind]
    parts = [p for p in parts if p is not None]
    log = render_log(gather_log(run))
    if log:
        parts.append(log)
    return h.page(f"pixlearn report: {run.path.name or run.path}", subtitle, headline, parts, _footer(run))


def run_kind(run_dir: str | os.PathLike) -> str:
    """classify, field or compare, from the files present; RunError when it is no run directory."""
    path = Path(run_dir)
    if (path / "compare.json").exists():
        return "compare"
    if (path / "model.json").exists():
        task = runs.read_json(path / "model.json").get("task")
        if task in ("classify", "field"):
            return task
        raise runs.RunError(f"{path / 'model.json'}: unknown task {task!r} (expected classify or field)")
    if (path / "data_summary.json").exists():
        return "classify"  # interrupted before the model was saved
    raise runs.RunError(f"{path}: not a pixlearn run directory (no model.json, compare.json or data_summary.json)")


def _footer(run: runs.RunDir) -> str:
    try:
        version = metadata.version("pixlearn")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Written by pixlearn {version} on {when} from the files in {run.path}."


# ---------------------------------------------------------------------------------- reading helpers


def _json(path: Path) -> Any:
    return runs.read_json(path) if path.exists() else None


def _csv(path: Path) -> list[dict[str, str]] | None:
    return runs.read_csv(path) if path.exists() else None


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _embed(path: Path, alt: str, caption: str = "", max_side: int = h.THUMB_SIDE) -> str:
    """A figure from an image file; a missing file gives nothing, an unreadable one a visible note."""
    if not path.exists():
        return ""
    try:
        uri, width, height = h.thumbnail_uri(path, max_side)
    except ImageError as exc:
        return h.note(f"figure {path.name} could not be read: {exc}")
    return h.figure(uri, width, height, alt, caption, pixelated=max(width, height) < 256)


def _limited(rows: list, what: str, limit: int = MAX_TABLE_ROWS) -> tuple[list, str]:
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], h.note(f"Showing the first {limit:,} of {len(rows):,} {what}.")


def gather_model_summary(run: runs.RunDir, input_shape_of) -> dict[str, Any] | None:
    """Layer rows and parameter counts of the saved model, or the reason it cannot be rebuilt."""
    if not run.spec.exists() or not run.weights.exists():
        return None
    from .summary import count_params, summarize

    try:
        model, spec = runs.load_model(run.path)
    except runs.RunError as exc:
        return {"error": str(exc)}
    rows = summarize(model, input_shape_of(spec))
    total, trainable = count_params(model)
    return {"spec": spec, "rows": rows, "total": total, "trainable": trainable}


def render_model_summary(data: dict[str, Any] | None) -> str:
    if data is None:
        return h.note("No saved model (model.json / model.safetensors) in this run.")
    if "error" in data:
        return h.note(f"The model could not be rebuilt for its summary: {data['error']}")
    rows = [[f"{r.name} ({r.kind})", _shape(r.output_shape), r.params] for r in data["rows"]]
    rows.append(["Total params", "", data["total"]])
    rows.append(["Trainable params", "", data["trainable"]])
    rows.append(["Non-trainable params", "", data["total"] - data["trainable"]])
    spec = data["spec"]
    return h.key_values({"model": spec["model"], "constructor arguments": spec["kwargs"]}) + h.table(
        ["Layer (type)", "Output Shape", "Param #"], rows, caption="Model summary (Keras layout, channels last)"
    )


def _shape(shape: tuple) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def gather_log(run: runs.RunDir) -> list[str] | None:
    if not run.log_file.exists():
        return None
    lines = run.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    return lines[-LOG_TAIL:]


def render_log(lines: list[str] | None) -> Section | None:
    if not lines:
        return None
    return Section("log", "Log", h.details(f"Last {len(lines)} lines of log.txt", h.pre("\n".join(lines))))


# ---------------------------------------------------------------------------------- classification


def classification_parts(run: runs.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    spec = _json(run.spec) or {}
    metrics = _json(run.metrics) or {}
    summary = _json(run.data_summary)
    history = gather_history(run.history)
    evaluation = _json(run.path / "evaluation.json")
    headline = {
        "model": spec.get("model", "?"),
        "classes": len(spec.get("classes") or (summary or {}).get("classes", [])),
    }
    if "test_accuracy" in metrics:
        headline["test accuracy"] = h.percent(metrics["test_accuracy"])
    headline["epochs"] = metrics.get("epochs_run", len(history or []))
    if not run.metrics.exists():
        headline["status"] = "unfinished"
    parts = [
        Section("overview", "Run", render_overview(_json(run.config), metrics)),
        render_data(summary, run),
        Section("model", "Model", render_model_summary(gather_model_summary(run, _image_input_shape))),
        render_history(history),
        render_evaluation_section(evaluation, run.path, "evaluation", "Evaluation"),
        render_mistakes(gather_mistakes(run.path / "predictions.csv"), run.path),
        render_predictions(gather_predictions(run.path / "predictions_unlabeled.csv"), run),
    ]
    parts += [
        render_evaluation_section(_json(sub / "evaluation.json"), sub, f"evaluation-{i}", f"Evaluation: {sub.name}")
        for i, sub in enumerate(sorted(p for p in (run.path / "evaluations").glob("*") if p.is_dir()), 1)
    ]
    return headline, parts


def _image_input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    return (spec["kwargs"]["in_channels"], *spec["input_size"])


def render_overview(config: dict[str, Any] | None, metrics: dict[str, Any]) -> str:
    parts = []
    if metrics:
        parts.append(h.heading("Final metrics") + h.key_values(metrics))
    else:
        parts.append(h.note("metrics.json is missing: the run did not finish."))
    if config:
        parts.append(h.heading("Configuration (config.json)") + h.key_values(config))
    return h.grid(parts)


def render_data(summary: dict[str, Any] | None, run: runs.RunDir) -> Section | None:
    if summary is None:
        return None
    classes, splits = summary["classes"], list(summary["images"])
    per_class = summary.get("per_class", {})
    rows = [[c, *[per_class.get(s, {}).get(c, 0) for s in splits]] for c in classes]
    rows.append(["total", *[summary["images"][s] for s in splits]])
    body = [h.table(["class", *splits], rows, caption="Images per class and split")]
    size_rows = [[s, d["count"], *_size_cells(d)] for s, d in summary.get("sizes", {}).items() if d.get("count")]
    body.append(
        h.table(
            ["split", "images", "width min / median / max", "height min / median / max", "most common sizes"],
            size_rows,
            caption="Original image sizes (before resizing to "
            + "x".join(str(v) for v in summary.get("size", []))
            + ", "
            + str(summary.get("fit", ""))
            + ")",
        )
    )
    skipped = summary.get("skipped", [])
    body.append(h.heading(f"Skipped files ({len(skipped):,})"))
    if skipped:
        shown, more = _limited(skipped, "skipped files")
        body.append(h.table(["split", "path", "reason"], [[s["split"], s["path"], s["reason"]] for s in shown]) + more)
    else:
        body.append(h.note("Every file found was used."))
    body.append(
        _embed(run.figure("samples.png"), "A sample of training images with their labels", "Sample training images")
    )
    return Section("data", "Data", "\n".join(body))


def _size_cells(d: dict[str, Any]) -> list[str]:
    def triple(k: str) -> str:
        return f"{d[k]['min']} / {h.fmt(d[k]['median'])} / {d[k]['max']}"

    common = ", ".join(f"{m['size']} ({m['images']})" for m in d.get("most_common", []))
    return [triple("width"), triple("height"), common]


def gather_history(path: Path) -> list[dict[str, float | None]] | None:
    rows = _csv(path)
    if not rows:
        return None
    return [{k: _number(v) for k, v in row.items()} for row in rows]


def render_history(history: list[dict[str, float | None]] | None) -> Section | None:
    if not history:
        return None
    charts = [
        h.line_chart(
            _epoch_series(history, key), f"{key.capitalize()} per epoch", "epoch", key, chart_id=f"chart-{key}"
        )
        for key in ("loss", "accuracy")
    ]
    columns = [c for c in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds") if c in history[0]]
    table = h.table(columns, [[_cell_value(row.get(c)) for c in columns] for row in history])
    return Section("history", "Training history", "\n".join(charts) + h.details("Values per epoch", table))


def _cell_value(value: float | None) -> Any:
    if value is None:
        return ""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


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


def render_evaluation_section(ev: dict[str, Any] | None, directory: Path, ident: str, title: str) -> Section | None:
    if ev is None:
        return None
    classes = ev["classes"]
    body = [
        h.badges({"images": ev["images"], "accuracy": h.percent(ev["accuracy"])}),
        h.grid(
            [
                h.heat_table(ev["confusion_matrix"], classes, "Confusion matrix (counts)", "count"),
                h.heat_table(ev["confusion_proportions"], classes, "Confusion matrix (share of all images)", "share"),
            ]
        ),
        h.heat_table(
            ev["conditional_error_rates"],
            classes,
            "Conditional rates P(predicted | true): each row sums to 100%",
            "rate",
        ),
        render_error_sentences(ev),
        h.table(
            ["class", "precision", "recall", "F1", "support"],
            [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in ev["per_class"]],
            caption="Per-class precision, recall and F1",
        ),
    ]
    if ev.get("most_confused"):
        shown, more = _limited(ev["most_confused"], "confused pairs", 20)
        body.append(h.table(["true", "predicted as", "images"], shown, caption="Most confused pairs") + more)
    if ident != "evaluation":  # evaluations/NAME keep their own galleries; the main ones have a section
        body.append(_mistake_figures(directory))
    if ev.get("skipped"):
        shown, more = _limited(ev["skipped"], "skipped files")
        body.append(h.table(["path", "reason"], [[s["path"], s["reason"]] for s in shown], "Skipped files") + more)
    return Section(ident, title, "\n".join(body))


def render_error_sentences(ev: dict[str, Any]) -> str:
    """The seed's reading of the matrix: P(predicted j | true i) for every kind of mistake."""
    classes, rates, counts = ev["classes"], ev["conditional_error_rates"], ev["confusion_matrix"]
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
    rows = _csv(path)
    if rows is None:
        return None
    classes = [k[2:] for k in (rows[0].keys() if rows else []) if k.startswith("p_")]
    wrong = [r for r in rows if r["true"] != r["predicted"]]
    wrong.sort(key=lambda r: -(_number(r.get(f"p_{r['predicted']}")) or 0.0))
    return {"classes": classes, "total": len(rows), "wrong": wrong}


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
                " / ".join(f"{c}:{_number(r.get('p_' + c)) or 0:.2f}" for c in classes),
            ]
            for r in wrong[:MAX_MISTAKE_ROWS]
        ]
        caption = f"The {len(rows)} most confident mistakes, with the probability of each class"
        body.append(h.table(["image", "true", "predicted", "probabilities"], rows, caption=caption))
    body.append(_mistake_figures(directory))
    return Section("mistakes", "Misclassified images", "\n".join(body))


def _mistake_figures(directory: Path) -> str:
    figures = directory / "figures"
    return "".join(
        [
            _embed(
                figures / "misclassified.png",
                "A random sample of misclassified images, each with its predicted label and class probabilities",
                "Misclassified images (random sample, as the seed draws them); red: probability of each class",
            ),
            _embed(
                figures / "confident_mistakes.png",
                "The misclassified images the model was most sure about, with class probabilities",
                "Most confident mistakes first",
            ),
        ]
    )


def gather_predictions(path: Path) -> dict[str, Any] | None:
    rows = _csv(path)
    if rows is None:
        return None
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    return {"rows": rows, "counts": counts}


def render_predictions(data: dict[str, Any] | None, run: runs.RunDir) -> Section | None:
    gallery = _embed(
        run.figure("predictions.png"), "Unlabelled images with the label the model predicts", "Predictions"
    )
    if data is None and not gallery:
        return None
    body = []
    if data is not None:
        body.append(h.table(["predicted label", "images"], sorted(data["counts"].items()), caption="Predicted labels"))
    body.append(gallery)
    if data is not None and data["rows"]:
        header = list(data["rows"][0])
        shown, more = _limited(data["rows"], "predictions", 50)
        rows = [[r[k] if not k.startswith("p_") else _number(r[k]) for k in header] for r in shown]
        body.append(h.details("Predictions per image (predictions_unlabeled.csv)", h.table(header, rows) + more))
    return Section("predictions", "Predictions on new images", "\n".join(body))


# ---------------------------------------------------------------------------------- image fitting


def field_parts(run: runs.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    spec = _json(run.spec) or {}
    metrics = _json(run.metrics) or {}
    headline = {"model": spec.get("model", metrics.get("model", "?"))}
    for key, label, unit in (("psnr", "PSNR", " dB"), ("test_psnr", "held-out PSNR", " dB"), ("ssim", "SSIM", "")):
        if _number(metrics.get(key)) is not None:
            headline[label] = h.fmt(float(metrics[key])) + unit
    for key in ("params", "seconds"):
        if key in metrics:
            headline[key] = h.fmt(metrics[key])
    if not run.metrics.exists():
        headline["status"] = "unfinished"
    history = gather_history(run.history)
    parts = [
        Section("images", "Original, reconstruction and error", render_field_images(run.path)),
        render_field_history(history, run),
        Section("overview", "Metrics and settings", render_field_overview(spec, metrics, _json(run.config))),
        Section(
            "model",
            "Model",
            render_model_summary(gather_model_summary(run, _coord_input_shape))
            + render_weights(_json(run.path / "weights.json")),
        ),
    ]
    return headline, parts


def _coord_input_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    return (int(spec["kwargs"].get("in_features", 2)),)


def render_field_images(directory: Path) -> str:
    figures = directory / "figures"
    cells = [
        _embed(directory / "original.png", "The original image", "Original"),
        _embed(directory / "reconstruction.png", "The image rendered by the trained network", "Reconstruction"),
        _embed(figures / "error_map.png", "Per-pixel error between original and reconstruction", "Error map"),
    ]
    cells = [c for c in cells if c]
    if not cells:  # only the combined figure was written
        cells = [_embed(figures / "side_by_side.png", "Original and reconstruction side by side", "Side by side")]
    cells = [c for c in cells if c]
    return h.grid(cells) if cells else h.note("No images in this run (original.png, reconstruction.png).")


def render_field_history(history: list[dict[str, float | None]] | None, run: runs.RunDir) -> Section | None:
    if not history:
        fallback = _embed(run.figure("psnr.png"), "PSNR during training", "PSNR during training")
        return Section("history", "Training", fallback) if fallback else None
    x = "step" if "step" in history[0] else "epoch"
    psnr = [
        _column_series(history, x, k, label, i)
        for i, (k, label) in enumerate((("psnr", "PSNR"), ("test_psnr", "held-out PSNR")))
    ]
    loss = [_column_series(history, x, "loss", "loss", 0)]
    charts = h.line_chart([s for s in psnr if s], "PSNR during training", x, "PSNR (dB)", chart_id="chart-psnr")
    charts += h.line_chart([s for s in loss if s], "Loss during training", x, "loss", log_y=True, chart_id="chart-loss")
    columns = [c for c in history[0] if c]
    shown, more = _limited(history, "logged steps", 200)
    table = h.table(columns, [[_cell_value(r.get(c)) for c in columns] for r in shown]) + more
    return Section("history", "Training", charts + h.details("Values per logged step", table))


def _column_series(history: list[dict[str, float | None]], x: str, key: str, label: str, index: int) -> Series | None:
    points = [(r[x], r[key]) for r in history if r.get(key) is not None and r.get(x) is not None]
    if not points:
        return None
    return Series(label, [p[0] for p in points], [p[1] for p in points], h.PALETTE[index], dashed=index > 0)


def render_field_overview(spec: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any] | None) -> str:
    parts = [h.heading("Metrics") + (h.key_values(metrics) if metrics else h.note("metrics.json is missing."))]
    image = spec.get("image")
    if image:
        parts.append(h.heading("Image") + h.key_values({**image, "coordinates": spec.get("coords", "")}))
    if config:
        parts.append(h.heading("Configuration (config.json)") + h.key_values(config))
    return h.grid(parts)


def render_weights(weights: Any) -> str:
    """The seed prints model$get_weights(); small models show theirs, large ones only say so."""
    if weights is None:
        return ""
    text = json.dumps(weights, indent=1)
    if len(text) > 20_000:
        return h.note("weights.json is too large to show here; the weights are in weights.npz.")
    return h.details("Weights (weights.json)", h.pre(text))


# ---------------------------------------------------------------------------------- comparison


def compare_parts(run: runs.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    rows = runs.read_json(run.path / "compare.json")
    if not isinstance(rows, list):
        raise runs.RunError(f"{run.path / 'compare.json'}: expected a list of rows")
    best = max((r for r in rows if _number(r.get("psnr")) is not None), key=lambda r: float(r["psnr"]), default=None)
    headline: dict[str, Any] = {"models": len(rows)}
    if best:
        headline["best PSNR"] = f"{h.fmt(float(best['psnr']))} dB ({best.get('model', '?')})"
    metrics = _json(run.metrics)
    parts = [
        Section("comparison", "Comparison", render_compare_table(rows)),
        Section("grid", "Reconstructions", render_compare_images(run)),
        render_compare_curves(run.path / "models"),
        Section("overview", "Metrics and settings", render_overview(_json(run.config), metrics or {})),
    ]
    return headline, parts


def render_compare_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    body = [
        [r.get(c, "") if not isinstance(r.get(c), dict | list) else h._compact(r[c]) for c in columns] for r in rows
    ]
    return h.table(columns, body, caption="One row per model (compare.json)")


def render_compare_images(run: runs.RunDir) -> str:
    grid = _embed(
        run.figure("compare_grid.png"), "Every model's reconstruction of the image, side by side", "All models"
    )
    cards = []
    for sub in sorted(p for p in (run.path / "models").glob("*") if p.is_dir()):
        psnr = _number((_json(sub / "metrics.json") or {}).get("psnr"))
        caption = sub.name + (f": {psnr:.2f} dB" if psnr is not None else "")
        cards.append(_embed(sub / "reconstruction.png", f"Reconstruction by {sub.name}", caption, max_side=360))
    original = _embed(run.path / "original.png", "The original image", "Original", max_side=360)
    cards = [c for c in [original, *cards] if c]
    return grid + (h.grid(cards, "cards") if cards else "") or h.note("No figures in this comparison.")


def render_compare_curves(models: Path) -> Section | None:
    series = []
    for i, sub in enumerate(sorted(p for p in models.glob("*") if p.is_dir())):
        history = gather_history(sub / "history.csv")
        if history and "psnr" in history[0]:
            s = _column_series(history, "step" if "step" in history[0] else "epoch", "psnr", sub.name, 0)
            if s:
                s.color = h.PALETTE[i % len(h.PALETTE)]
                series.append(s)
    if not series:
        return None
    return Section(
        "curves", "PSNR curves", h.line_chart(series, "PSNR during training, every model", "step", "PSNR (dB)")
    )
