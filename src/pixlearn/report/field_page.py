"""The image-fitting parts of report.html: one fit (images, curves, metrics, model) and a comparison.

Read from the run directories written by fit_image (original.png, reconstruction.png,
figures/error_map.png, history.csv with step / loss / psnr, metrics.json, weights.json) and by
compare (compare.json, figures/compare_grid.png, models/NAME/).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from pixlearn.core.storage import rundir
from pixlearn.core.storage.field_records import CompareMetrics, CompareRow, FitMetrics, ReadableWeights, StepRow
from pixlearn.core.storage.records import RunConfig
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.report import html as h
from pixlearn.report.html import Section
from pixlearn.report.parts import (
    cell_value,
    column_series,
    embed,
    gather_history,
    gather_model_summary,
    guarded,
    history_numbers,
    limited,
    number,
    read_record,
    read_spec_if_present,
    render_model_summary,
    render_overview,
    render_problems,
)

MAX_WEIGHT_VALUES = 400  # tensors up to this size are printed in full, as the seed prints its 9 weights


def field_parts(run: rundir.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    problems: list[str] = []  # malformed files: each leaves its part out and is listed at the end
    spec = read_spec_if_present(run)
    metrics = read_record(FitMetrics, run.metrics, problems)
    headline: dict[str, Any] = {"model": spec.model if spec else (metrics.model if metrics else "?")}
    if metrics is not None:
        headline |= _fit_headline(metrics)
    if not run.metrics.exists():
        headline["status"] = "unfinished"
    rows = guarded(problems, run.history, lambda: gather_history(run.history, StepRow))
    history = history_numbers(rows) if rows else None
    config, weights = read_record(RunConfig, run.config, problems), run.path / ReadableWeights.FILE
    parts = [
        Section("images", "Original, reconstruction and error", render_field_images(run.path)),
        guarded(problems, run.history, lambda: render_field_history(history, run)),
        guarded(
            problems,
            run.metrics,
            lambda: Section("overview", "Metrics and settings", render_field_overview(spec, metrics, config)),
        ),
        Section(
            "model",
            "Model",
            render_model_summary(gather_model_summary(run))
            + guarded(problems, weights, lambda: render_weights(read_record(ReadableWeights, weights, problems)), ""),
        ),
    ]
    return headline, [*parts, render_problems(problems)]


def _fit_headline(metrics: FitMetrics) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for label, value, unit in (
        ("PSNR", metrics.psnr, " dB"),
        ("held-out PSNR", metrics.test_psnr, " dB"),
        ("SSIM", metrics.ssim, ""),
    ):
        if (x := number(value)) is not None:
            shown[label] = h.fmt(x) + unit
    for key, amount in (("params", metrics.params), ("seconds", metrics.seconds)):
        if amount is not None:
            shown[key] = h.fmt(amount)
    return shown


def render_field_images(directory: Path) -> str:
    figures = directory / "figures"
    cells = [
        embed(directory / "original.png", "The original image", "Original", within=directory),
        embed(
            directory / "reconstruction.png",
            "The image rendered by the trained network",
            "Reconstruction",
            within=directory,
        ),
        embed(
            figures / "error_map.png",
            "Per-pixel error between original and reconstruction",
            "Error map",
            within=directory,
        ),
    ]
    cells = [c for c in cells if c]
    if not cells:  # only the combined figure was written
        side = figures / "side_by_side.png"
        cells = [embed(side, "Original and reconstruction side by side", "Side by side", within=directory)]
    cells = [c for c in cells if c]
    return h.grid(cells) if cells else h.note("No images in this run (original.png, reconstruction.png).")


def render_field_history(history: list[dict[str, float | None]] | None, run: rundir.RunDir) -> Section | None:
    if not history:
        fallback = embed(run.figure("psnr.png"), "PSNR during training", "PSNR during training", within=run.path)
        return Section("history", "Training", fallback) if fallback else None
    x = "step" if "step" in history[0] else "epoch"
    psnr = [
        column_series(history, x, k, label, i)
        for i, (k, label) in enumerate((("psnr", "PSNR"), ("test_psnr", "held-out PSNR")))
    ]
    loss = [column_series(history, x, "loss", "loss", 0)]
    charts = h.line_chart([s for s in psnr if s], "PSNR during training", x, "PSNR (dB)", chart_id="chart-psnr")
    charts += h.line_chart([s for s in loss if s], "Loss during training", x, "loss", log_y=True, chart_id="chart-loss")
    columns = [c for c in history[0] if c]
    shown, more = limited(history, "logged steps", 200)
    table = h.table(columns, [[cell_value(r.get(c)) for c in columns] for r in shown]) + more
    return Section("history", "Training", charts + h.details("Values per logged step", table))


def render_field_overview(spec: ModelSpec | None, metrics: FitMetrics | None, config: RunConfig | None) -> str:
    shown = h.key_values(metrics.content()) if metrics is not None else h.note("metrics.json is missing.")
    parts = [h.heading("Metrics") + shown]
    if spec is not None and spec.image is not None:
        image = dataclasses.asdict(spec.image)
        parts.append(h.heading("Image") + h.key_values({**image, "coordinates": spec.coords}))
    if config and config.options:
        parts.append(h.heading("Configuration (config.json)") + h.key_values(config.options))
    return h.grid(parts)


def render_weights(weights: ReadableWeights | None) -> str:
    """The seed prints model$get_weights(); small tensors are shown in full, large ones by shape only."""
    if weights is None or not weights.tensors:
        return ""
    blocks = []
    for name, tensor in weights.tensors.items():
        count = math.prod(tensor.shape) if tensor.shape else 0
        text = _matrix_text(tensor.values) if count <= MAX_WEIGHT_VALUES else f"({count:,} values, in weights.npz)"
        blocks.append(f"{name}  shape {tensor.shape}\n{text}")
    return h.details("Weights (weights.json), as the seed prints model$get_weights()", h.pre("\n\n".join(blocks)))


def _matrix_text(values: Any) -> str:
    if isinstance(values, list) and values and isinstance(values[0], list):
        return "\n".join("  ".join(f"{v: .6g}" for v in row) for row in values)
    if isinstance(values, list):
        return "  ".join(f"{v: .6g}" for v in values)
    return str(values)


# ---------------------------------------------------------------------------------- comparison


def compare_parts(run: rundir.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    rows = CompareRow.read_list(run.path / CompareRow.FILE)  # the page is this table: without it, no report
    scored = [(psnr, r.model) for r in rows if (psnr := number(r.psnr)) is not None]
    best = max(scored, key=lambda pair: pair[0], default=None)
    headline: dict[str, Any] = {"models": len(rows)}
    if best:
        headline["best PSNR"] = f"{h.fmt(best[0])} dB ({best[1]})"
    problems: list[str] = []
    metrics, config = read_record(CompareMetrics, run.metrics, problems), read_record(RunConfig, run.config, problems)
    options = config.options if config else None
    parts = [
        Section("comparison", "Comparison", render_compare_table(rows)),
        Section("grid", "Reconstructions", render_compare_images(run, problems)),
        guarded(problems, run.path / "models", lambda: render_compare_curves(run.path / "models")),
        Section("overview", "Metrics and settings", render_overview(options, _without_rows(metrics))),
    ]
    return headline, [*parts, render_problems(problems)]


def _without_rows(metrics: CompareMetrics | None) -> dict[str, Any]:
    # compare's metrics.json repeats the table's rows; the table above already shows them
    return {k: v for k, v in metrics.content().items() if k != "rows"} if metrics is not None else {}


def render_compare_table(rows: list[CompareRow]) -> str:
    table = [r.content() for r in rows]
    columns: list[str] = []
    for r in table:
        columns += [k for k in r if k not in columns]
    body = [[h.compact(r[c]) if c in r else "" for c in columns] for r in table]
    return h.table(columns, body, caption="One row per model (compare.json)")


def render_compare_images(run: rundir.RunDir, problems: list[str]) -> str:
    grid = embed(
        run.figure("compare_grid.png"),
        "Every model's reconstruction of the image, side by side",
        "All models",
        within=run.path,
    )
    cards = []
    for sub in sorted(p for p in (run.path / "models").glob("*") if p.is_dir()):
        metrics = read_record(FitMetrics, sub / FitMetrics.FILE, problems)
        psnr = number(metrics.psnr) if metrics is not None else None
        caption = sub.name + (f": {psnr:.2f} dB" if psnr is not None else "")
        cards.append(
            embed(sub / "reconstruction.png", f"Reconstruction by {sub.name}", caption, max_side=360, within=run.path)
        )
    original = embed(run.path / "original.png", "The original image", "Original", max_side=360, within=run.path)
    cards = [c for c in [original, *cards] if c]
    return grid + (h.grid(cards, "cards") if cards else "") or h.note("No figures in this comparison.")


def render_compare_curves(models: Path) -> Section | None:
    """Every model's PSNR against training seconds: the models share a time budget, not a step count."""
    series, axis = [], "seconds"
    for i, sub in enumerate(sorted(p for p in models.glob("*") if p.is_dir())):
        rows = gather_history(sub / StepRow.FILE, StepRow)
        history = history_numbers(rows) if rows else None
        if not history or "psnr" not in history[0]:
            continue
        axis = "seconds" if "seconds" in history[0] else "step"
        s = column_series(history, axis, "psnr", sub.name, 0)
        if s:
            s.color, s.dashed = h.PALETTE[i % len(h.PALETTE)], False
            series.append(s)
    if not series:
        return None
    chart = h.line_chart(series, "PSNR during training, every model", axis, "PSNR (dB)", chart_id="chart-compare")
    return Section("curves", "PSNR curves", chart)
