"""Reading a run directory for report.html: optional files, embedded figures, the parts every kind shares.

`gather_*` functions read files into plain data (None where the run has no such part); every JSON
file and history.csv is read as its typed record (`core.storage.records`). `render_*` functions turn
that data into HTML through report_html. A missing file is normal (an interrupted run, a run without
predictions) and leaves its part out. A malformed one (not JSON or CSV, a value of the wrong type:
`read_record`; data that does not fit together: `guarded`) leaves its part out too, and the report
lists it with the reason under "Files that could not be shown" (`render_problems`); only files the
report cannot do without (model.json, compare.json) stop it with a RunError naming them.

    >>> from pixlearn.report.parts import number
    >>> number("0.5"), number("nan"), number("")
    (0.5, None, None)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pixlearn.core.errors import ImageError
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.files import open_data_file
from pixlearn.core.storage.records import CsvRow, Record
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.core.text import from_csv_cell
from pixlearn.models.loading import load_model
from pixlearn.report import html as h
from pixlearn.report.html import Section, Series

T = TypeVar("T")
R = TypeVar("R", bound=Record)
C = TypeVar("C", bound=CsvRow)

LOG_TAIL = 40  # log lines shown at the end of the page
LOG_TAIL_BYTES = 1 << 20  # of log.txt's end read for them: 40 lines of up to 26,000 characters each
# What data of the wrong shape raises while a part is built from it (a list where an object was
# written, a missing key, text where a number was): the part is left out and the file named.
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError)
MAX_TABLE_ROWS = 100  # longer tables (skipped files, predictions) show this many and say how many more


def read_record(record: type[R], path: Path, problems: list[str]) -> R | None:
    """The run's file `path` as its `record`; None where it is missing, or unusable (the reason,
    naming the file, is then added to `problems`)."""
    try:
        return record.read_if_present(path)
    except rundir.RunError as exc:
        problems.append(str(exc))
        return None


def guarded(problems: list[str], path: Path, build: Callable[[], T], fallback: Any = None) -> T:
    """`build()`, or `fallback` where the data it reads from `path` is malformed: the reason, naming
    the file, is added to `problems` instead of stopping the report."""
    try:
        return build()
    except rundir.RunError as exc:
        problems.append(str(exc))
    except MALFORMED as exc:
        problems.append(f"{path}: malformed ({type(exc).__name__}: {exc})")
    return fallback


def render_problems(problems: list[str]) -> Section | None:
    if not problems:
        return None
    items = "".join(f"<li>{h.esc(p)}</li>" for p in dict.fromkeys(problems))
    lead = h.note("These files of the run could not be used; the parts of the report that need them are left out.")
    return Section("problems", "Files that could not be shown", f"{lead}<ul>{items}</ul>")


def read_csv_if_present(path: Path) -> list[dict[str, str]] | None:
    """The rows of one of pixlearn's CSVs, every cell as it was before `text.csv_cell` guarded it."""
    if not path.exists():
        return None
    return [{from_csv_cell(k): from_csv_cell(v) for k, v in row.items()} for row in rundir.read_csv(path)]


def number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def embed(path: Path, alt: str, caption: str = "", max_side: int = h.THUMB_SIDE, *, within: Path) -> str:
    """A figure from an image file under the directory `within` (the run's or the evaluation's own, as
    `h.embed_refusal` requires); a missing file gives nothing, an unreadable one or one that is not
    under `within` (a symbolic link leading out) a visible note."""
    if not path.exists():
        return ""
    try:
        uri, width, height = h.thumbnail_uri(path, within, max_side)
    except ImageError as exc:
        return h.note(f"figure {path.name} is not shown: {exc.reason}")
    return h.figure(uri, width, height, alt, caption, pixelated=max(width, height) < 256)


def limited(rows: list, what: str, limit: int = MAX_TABLE_ROWS) -> tuple[list, str]:
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], h.note(f"Showing the first {limit:,} of {len(rows):,} {what}.")


def read_spec_if_present(run: rundir.RunDir) -> ModelSpec | None:
    """The run's model spec, or None where training stopped before saving the model."""
    return weights.read_spec(run.path) if run.spec.exists() else None


def gather_model_summary(run: rundir.RunDir) -> dict[str, Any] | None:
    """Layer rows and parameter counts of the saved model, or the reason it cannot be rebuilt."""
    if not run.spec.exists() or not run.weights.exists():
        return None
    from pixlearn.core.summary import count_params, summarize

    try:
        model, spec = load_model(run.path)
    except rundir.RunError as exc:
        return {"error": str(exc)}
    rows = summarize(model, spec.input_shape())
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
    return h.key_values({"model": spec.model, "constructor arguments": spec.kwargs}) + h.table(
        ["Layer (type)", "Output Shape", "Param #"], rows, caption="Model summary (Keras layout, channels last)"
    )


def _shape(shape: tuple) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def gather_log(run: rundir.RunDir) -> list[str] | None:
    """The last LOG_TAIL lines of log.txt, read from its last LOG_TAIL_BYTES alone: a log of gigabytes
    (a run resumed for months, a file grown by hand) costs the report no more than a short one."""
    if not run.log_file.exists():
        return None
    with open_data_file(run.log_file, "rb") as f:  # no FIFO, no device
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - LOG_TAIL_BYTES))
        tail = f.read(LOG_TAIL_BYTES)
    lines = tail.decode("utf-8", errors="replace").splitlines()
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]  # the first line read is cut at its start
    return lines[-LOG_TAIL:]


def render_log(lines: list[str] | None) -> Section | None:
    if not lines:
        return None
    return Section("log", "Log", h.details(f"Last {len(lines)} lines of log.txt", h.pre("\n".join(lines))))


def render_overview(config: dict[str, Any] | None, metrics: dict[str, Any]) -> str:
    parts = []
    if metrics:
        parts.append(h.heading("Final metrics") + h.key_values(metrics))
    else:
        parts.append(h.note("metrics.json is missing: the run did not finish."))
    if config:
        parts.append(h.heading("Configuration (config.json)") + h.key_values(config))
    return h.grid(parts)


def gather_history(path: Path, row: type[C]) -> list[C] | None:
    """history.csv's rows (`row`: a training run's EpochRow, a fit's StepRow); None where there are none."""
    return (row.read_rows(path) or None) if path.exists() else None


def history_numbers(rows: Sequence[CsvRow]) -> list[dict[str, float | None]]:
    """Each row's columns as numbers (None for a blank, or text), for the charts and tables."""
    return [{k: number(v) for k, v in r.content().items()} for r in rows]


def cell_value(value: float | None) -> Any:
    if value is None:
        return ""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def column_series(history: list[dict[str, float | None]], x: str, key: str, label: str, index: int) -> Series | None:
    points = [(r[x], r[key]) for r in history if r.get(key) is not None and r.get(x) is not None]
    if not points:
        return None
    return Series(label, [p[0] for p in points], [p[1] for p in points], h.PALETTE[index], dashed=index > 0)
