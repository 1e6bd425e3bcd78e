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
Modules: report_data (reading, shared parts), report_classify, report_field (fit and compare),
report_html (escaping, tables, thumbnails, SVG charts, the page and its CSS).

    >>> from pixlearn.report.page import write_report
    >>> write_report("runs/demo")          # doctest: +SKIP
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import numpy as np

from pixlearn.core.storage import rundir, weights
from pixlearn.report import html as h
from pixlearn.report.check_page import is_check_dir, write_check_page
from pixlearn.report.classify_page import classification_parts
from pixlearn.report.field_page import compare_parts, field_parts
from pixlearn.report.parts import gather_log, render_log


def write_report(run_dir: str | os.PathLike, held: Mapping[str | os.PathLike, np.ndarray] | None = None) -> Path:
    """Write RUN/report.html (atomically) from the files in the run directory; return its path.
    A check directory (`pixlearn check`) gets its check.html instead. `held`: the pixels of image
    files in the run that the caller has just written as PNG, by path, shrunk for the page instead of
    decoded again (html.held_images; the same page)."""
    if is_check_dir(run_dir):
        return write_check_page(run_dir)
    run = rundir.RunDir(run_dir)
    with h.held_images(held or {}):
        text = render_report(run.path)
    rundir.write_text(run.report, text)
    return run.report


def render_report(run_dir: str | os.PathLike) -> str:
    """The report of a run directory as one HTML string."""
    run = rundir.RunDir(run_dir)
    if not run.path.is_dir():
        raise rundir.RunError(f"{run.path}: not a directory")
    run.check_not_being_written()  # a run still training: say so rather than show half of it
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
        return weights.read_spec(path).task
    if (path / "data_summary.json").exists():
        return "classify"  # interrupted before the model was saved
    raise rundir.RunError(f"{path}: not a pixlearn run directory (no model.json, compare.json or data_summary.json)")


def _footer(run: rundir.RunDir) -> str:
    try:
        version = metadata.version("pixlearn")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Written by pixlearn {version} on {when} from the files in {run.path}."
