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

from pixlearn.core import runs
from pixlearn.core.spec import ModelSpec
from pixlearn.report import html as h
from pixlearn.report.common import (
    cell_value,
    column_series,
    embed,
    gather_history,
    gather_model_summary,
    guarded,
    limited,
    number,
    read_object,
    read_spec_if_present,
    render_model_summary,
    render_overview,
    render_problems,
)
from pixlearn.report.html import Section

MAX_WEIGHT_VALUES = 400  # tensors up to this size are printed in full, as the seed prints its 9 weights


def field_parts(run: runs.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    problems: list[str] = []  # malformed files: each leaves its part out and is listed at the end
    spec = read_spec_if_present(run)
    metrics = read_object(run.metrics, problems) or {}
    headline = {"model": spec.model if spec else metrics.get("model", "?")}
    for key, label, unit in (("psnr", "PSNR", " dB"), ("test_psnr", "held-out PSNR", " dB"), ("ssim", "SSIM", "")):
        if number(metrics.get(key)) is not None:
            headline[label] = h.fmt(float(metrics[key])) + unit
    for key in ("params", "seconds"):
        if key in metrics:
            headline[key] = h.fmt(metrics[key])
    if not run.metrics.exists():
        headline["status"] = "unfinished"
    history = guarded(problems, run.history, lambda: gather_history(run.history))
    config, weights = read_object(run.config, problems), run.path / "weights.json"
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
            + guarded(problems, weights, lambda: render_weights(read_object(weights, problems)), ""),
        ),
    ]
    return headline, [*parts, render_problems(problems)]


def render_field_images(directory: Path) -> str:
    figures = directory / "figures"
    cells = [
        embed(directory / "original.png", "The original image", "Original"),
        embed(directory / "reconstruction.png", "The image rendered by the trained network", "Reconstruction"),
        embed(figures / "error_map.png", "Per-pixel error between original and reconstruction", "Error map"),
    ]
    cells = [c for c in cells if c]
    if not cells:  # only the combined figure was written
        cells = [embed(figures / "side_by_side.png", "Original and reconstruction side by side", "Side by side")]
    cells = [c for c in cells if c]
    return h.grid(cells) if cells else h.note("No images in this run (original.png, reconstruction.png).")


def render_field_history(history: list[dict[str, float | None]] | None, run: runs.RunDir) -> Section | None:
    if not history:
        fallback = embed(run.figure("psnr.png"), "PSNR during training", "PSNR during training")
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


def render_field_overview(spec: ModelSpec | None, metrics: dict[str, Any], config: dict[str, Any] | None) -> str:
    parts = [h.heading("Metrics") + (h.key_values(metrics) if metrics else h.note("metrics.json is missing."))]
    if spec is not None and spec.image is not None:
        image = dataclasses.asdict(spec.image)
        parts.append(h.heading("Image") + h.key_values({**image, "coordinates": spec.coords}))
    if config:
        parts.append(h.heading("Configuration (config.json)") + h.key_values(config))
    return h.grid(parts)


def render_weights(weights: Any) -> str:
    """The seed prints model$get_weights(); small tensors are shown in full, large ones by shape only."""
    if not isinstance(weights, dict) or not weights:
        return ""
    blocks = []
    for name, tensor in weights.items():
        shape = tensor.get("shape", []) if isinstance(tensor, dict) else []
        values = tensor.get("values") if isinstance(tensor, dict) else tensor
        count = math.prod(shape) if shape else 0
        text = _matrix_text(values) if count <= MAX_WEIGHT_VALUES else f"({count:,} values, in weights.npz)"
        blocks.append(f"{name}  shape {tuple(shape)}\n{text}")
    return h.details("Weights (weights.json), as the seed prints model$get_weights()", h.pre("\n\n".join(blocks)))


def _matrix_text(values: Any) -> str:
    if isinstance(values, list) and values and isinstance(values[0], list):
        return "\n".join("  ".join(f"{v: .6g}" for v in row) for row in values)
    if isinstance(values, list):
        return "  ".join(f"{v: .6g}" for v in values)
    return str(values)


# ---------------------------------------------------------------------------------- comparison


def compare_parts(run: runs.RunDir) -> tuple[dict[str, Any], list[Section | None]]:
    rows = runs.read_json(run.path / "compare.json", list)
    if not all(isinstance(r, dict) for r in rows):
        raise runs.RunError(f"{run.path / 'compare.json'}: expected a list of rows (JSON objects)")
    best = max((r for r in rows if number(r.get("psnr")) is not None), key=lambda r: float(r["psnr"]), default=None)
    headline: dict[str, Any] = {"models": len(rows)}
    if best:
        headline["best PSNR"] = f"{h.fmt(float(best['psnr']))} dB ({best.get('model', '?')})"
    problems: list[str] = []
    metrics, config = read_object(run.metrics, problems), read_object(run.config, problems)
    parts = [
        Section("comparison", "Comparison", render_compare_table(rows)),
        Section("grid", "Reconstructions", render_compare_images(run, problems)),
        guarded(problems, run.path / "models", lambda: render_compare_curves(run.path / "models")),
        Section("overview", "Metrics and settings", render_overview(config, _without_rows(metrics))),
    ]
    return headline, [*parts, render_problems(problems)]


def _without_rows(metrics: Any) -> dict[str, Any]:
    # compare's metrics.json repeats the table's rows; the table above already shows them
    return {k: v for k, v in metrics.items() if k != "rows"} if isinstance(metrics, dict) else {}


def render_compare_table(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    body = [[r.get(c, "") if not isinstance(r.get(c), dict | list) else h.compact(r[c]) for c in columns] for r in rows]
    return h.table(columns, body, caption="One row per model (compare.json)")


def render_compare_images(run: runs.RunDir, problems: list[str]) -> str:
    grid = embed(
        run.figure("compare_grid.png"), "Every model's reconstruction of the image, side by side", "All models"
    )
    cards = []
    for sub in sorted(p for p in (run.path / "models").glob("*") if p.is_dir()):
        psnr = number((read_object(sub / "metrics.json", problems) or {}).get("psnr"))
        caption = sub.name + (f": {psnr:.2f} dB" if psnr is not None else "")
        cards.append(embed(sub / "reconstruction.png", f"Reconstruction by {sub.name}", caption, max_side=360))
    original = embed(run.path / "original.png", "The original image", "Original", max_side=360)
    cards = [c for c in [original, *cards] if c]
    return grid + (h.grid(cards, "cards") if cards else "") or h.note("No figures in this comparison.")


def render_compare_curves(models: Path) -> Section | None:
    """Every model's PSNR against training seconds: the models share a time budget, not a step count."""
    series, axis = [], "seconds"
    for i, sub in enumerate(sorted(p for p in models.glob("*") if p.is_dir())):
        history = gather_history(sub / "history.csv")
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
