"""Hostile class and file names: shown literally and harmlessly in every medium (core/text.py).

A folder tree whose class folders and file names hold spreadsheet formulas, terminal escape
sequences, Rich markup, matplotlib math text, newlines and a right-to-left override is trained,
evaluated, predicted (and resumed) and reported through the CLI. Then: exit 0 and no traceback;
the terminal and log.txt hold no raw control character and no forged line; no CSV cell starts with a
formula character, and pixlearn's own readers get the original names back; every figure is
written (the run completes); the report shows the names escaped.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from pixlearn.core.imaging import figures
from pixlearn.core.progress import RichProgress
from pixlearn.core.storage import rundir
from pixlearn.core.text import csv_cell, figure_text, from_csv_cell, log_text, terminal_text
from pixlearn.report import html as report_html
from pixlearn.report.parts import read_csv_if_present
from tests.corpus import cli, write_png
from tests.hostile import tried

TINY = ["--model", "airnet-small", "--size", "16", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once")

# OWASP's list of cell starts that a spreadsheet runs as a formula (written out here, not imported,
# so the test checks the files against the rule rather than against the code's own constant).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

# Class folders (a folder name holds no `/`, so the exact `=HYPERLINK("http://x")` is a label in the
# label-CSV test below; `a[/]b` is the path of the folder `a[` holding `]b`).
CLASSES = [
    '=HYPERLINK("http:x")',
    "+1",
    "-2",
    "@SUM(A1)",
    "\tTAB",
    "\x1b[2J",
    "[bold red]x",
    "$\\evil$",
    "\u202eRLO",
    "'quoted",
]
FORGED_FILE = "x\nFORGED line.png"  # in +1/
FORGED_SKIPPED = "broken\nFORGED skipped.png"  # in a[/]b/, not an image: listed as skipped
EXTRA_FILES = {  # class -> hostile file names inside it
    "+1": [FORGED_FILE],
    "-2": ["\rCR.png"],
    "@SUM(A1)": ["\u202egnp.exe.png"],
    "$\\evil$": ["$x^2$.png"],
    "[bold red]x": ["\x1b]0;title\x07.png"],
}
# The label CSV's labels: any text, `/` included.
CSV_LABELS = ['=HYPERLINK("http://x")', "a[/]b", "'-1 [/] $\\evil$ \x1b[2J \u202e"]


def make_hostile_tree(root: Path) -> Path:
    for c, label in enumerate(CLASSES):
        for i in range(3):
            write_png(root / label / f"img_{i}.png", 20 * c + 10, 16, seed=c * 100 + i)
        for j, name in enumerate(EXTRA_FILES.get(label, [])):
            write_png(root / label / name, 20 * c + 10, 16, seed=c * 100 + 50 + j)
    write_png(root / "a[" / "]b" / "img_0.png", 230, 16, seed=7)
    write_png(root / "a[" / "]b" / "img_1.png", 230, 16, seed=8)
    (root / "a[" / "]b" / FORGED_SKIPPED).write_bytes(b"not a png")
    return root


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Train, evaluate, predict, predict --resume and report once, from inside the data folder, so the
    paths in every CSV start with the hostile class names."""
    tmp = tmp_path_factory.mktemp("hostile")
    data = make_hostile_tree(tmp / "data")
    out = tmp / "out[" / "]run"  # the run's own path holds `[/]` too
    preds = tmp / "predicted" / "preds.csv"
    s = SimpleNamespace(data=data, out=out, preds=preds)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(data)
        s.train = cli("train", ".", "--out", out, *TINY)
        s.evaluate = cli("evaluate", out, ".")
        s.predict = cli("predict", out, ".", "--csv", preds, "--device", "cpu")
        s.full_csv = preds.read_bytes().decode("utf-8")  # as written: a \r in a name stays a \r
        s.kept = _cut_to_hostile_rows(preds)  # as if predict had stopped after these rows
        s.resume = cli("predict", out, ".", "--csv", preds, "--device", "cpu", "--resume")
        s.report = cli("report", out)
    return s


def _cut_to_hostile_rows(path: Path) -> list[str]:
    """Keep the header and the rows whose path starts with a formula character or a quote."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = [r for r in rows[1:] if from_csv_cell(r[0]).startswith((*FORMULA_STARTS, "'"))]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([rows[0], *kept])
    return [from_csv_cell(r[0]) for r in kept]


def assert_terminal_safe(result) -> str:
    output = result.output
    assert result.exit_code == 0, output
    assert "Traceback" not in output and "MarkupError" not in output
    for raw in ("\x1b", "\u202e", "\r", "\x07"):
        assert raw not in output, f"raw {raw!r} reached the terminal"
    assert not [line for line in output.splitlines() if line.startswith("FORGED")], output
    return output


def csv_cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [cell for row in csv.reader(f) for cell in row]


def is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def assert_no_formula_cells(paths: list[Path]) -> int:
    """No cell of any file starts with a formula character (a number such as -2 is a number);
    returns how many cells were guarded."""
    guarded = 0
    for path in paths:
        for cell in csv_cells(path):
            assert not cell.startswith(FORMULA_STARTS) or is_number(cell), f"{path.name}: formula cell {cell!r}"
            guarded += cell.startswith("'") and cell[1:].startswith((*FORMULA_STARTS, "'"))
    return guarded


# ---------------------------------------------------------------------------------- the CLI


def test_train_prints_every_name_literally(session) -> None:
    tried("hostile class folders and file names", len(CLASSES) + sum(len(v) for v in EXTRA_FILES.values()))
    output = assert_terminal_safe(session.train)
    for shown in ("[bold red]x", "$\\evil$", "\\x1b[2J", "\\u202eRLO", "\\tTAB", "'quoted", "@SUM(A1)"):
        assert shown in output, shown  # markup not interpreted, control characters shown escaped
    assert "a[/]b/broken\\nFORGED skipped.png" in output  # the data summary's skipped file
    assert f"Run written to {session.out}" in output


def test_evaluate_predict_and_report_print_literally(session) -> None:
    for result in (session.evaluate, session.predict, session.resume, session.report):
        assert_terminal_safe(result)
    assert "skipped a[/]b/broken\\nFORGED skipped.png" in session.predict.output
    assert "[bold red]x" in session.evaluate.output


def test_log_has_one_line_per_message_and_no_control_characters(session) -> None:
    log = (session.out / "log.txt").read_text(encoding="utf-8")
    for raw in ("\x1b", "\u202e", "\r", "\t"):
        assert raw not in log
    lines = log.split("\n")
    assert lines[-1] == ""
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines[:-1]), log
    assert "skipped a[/]b/broken\\nFORGED skipped.png: " in log


# ---------------------------------------------------------------------------------- CSV files


def test_no_csv_cell_is_a_formula(session) -> None:
    written = sorted(session.out.rglob("*.csv")) + [session.preds]
    names = {p.name for p in written}
    assert {"predictions.csv", "per_class.csv", "confusion_matrix.csv", "skipped.csv", "history.csv"} <= names
    assert (session.out / "evaluations" / "data" / "per_class.csv") in written
    # every formula-like class, and the quote, guarded in each file that names the classes
    assert assert_no_formula_cells(written) >= 5 * (len(CLASSES) - 3)


def test_readers_get_the_original_names_back(session) -> None:
    for directory in (session.out, session.out / "evaluations" / "data"):
        per_class = read_csv_if_present(directory / "per_class.csv")
        assert sorted(r["class"] for r in per_class) == sorted([*CLASSES, "a["])
        matrix = read_csv_if_present(directory / "confusion_matrix.csv")
        assert list(matrix[0])[1:] == [r["true \\ predicted"] for r in matrix] == [r["class"] for r in per_class]
        predictions = read_csv_if_present(directory / "predictions.csv")
        assert {r["true"] for r in predictions} <= {*CLASSES, "a["}
        assert {f"p_{c}" for c in CLASSES} <= set(predictions[0])
    skipped = read_csv_if_present(session.out / "skipped.csv")
    assert [r["path"] for r in skipped] == [f"a[/]b/{FORGED_SKIPPED}"]
    paths = {r["path"] for r in read_csv_if_present(session.out / "evaluations" / "data" / "predictions.csv")}
    assert f"+1/{FORGED_FILE}" in paths and "'quoted/img_0.png" in paths and '=HYPERLINK("http:x")/img_0.png' in paths


def test_predict_resume_skips_the_rows_already_written(session) -> None:
    assert any(p.startswith("=") for p in session.kept) and any(p.startswith("'") for p in session.kept)
    with open(session.preds, newline="", encoding="utf-8") as f:
        final = [from_csv_cell(row["path"]) for row in csv.DictReader(f)]
    full = [from_csv_cell(row["path"]) for row in csv.DictReader(io.StringIO(session.full_csv, newline=""))]
    assert len(final) == len(set(final)), "a row already written was predicted again"
    assert sorted(final) == sorted(full)
    assert f"{len(full) - len(session.kept)} predictions written" in session.resume.output
    assert assert_no_formula_cells([session.preds]) >= len(session.kept)


# ---------------------------------------------------------------------------------- figures, report


def test_every_figure_is_written_and_the_run_completes(session) -> None:
    assert rundir.RunDir(session.out).is_complete
    for directory in (session.out, session.out / "evaluations" / "data"):
        for name in ("confusion_matrix.png", "confusion_proportions.png", "misclassified.png"):
            assert (directory / "figures" / name).read_bytes()[:4] == b"\x89PNG", name
    assert (session.out / "figures" / "samples.png").is_file() and (session.preds.with_suffix(".png")).is_file()


def test_report_shows_the_names_escaped(session) -> None:
    page = (session.out / "report.html").read_text(encoding="utf-8")
    for raw in ("\x1b", "\u202e", "\r", "\x07"):
        assert raw not in page
    assert not [line for line in page.splitlines() if line.startswith("FORGED")]
    for shown in ("\\x1b[2J", "\\u202eRLO", "[bold red]x", "$\\evil$", "a[/]b/broken\\nFORGED skipped.png"):
        assert html.escape(shown) in page, shown
    # cells read from predictions.csv show the original value, never the guarded one
    assert all(m.startswith("quoted") for m in re.findall(r"<td>&#x27;(.{6})", page))
    wrong = [r for r in read_csv_if_present(session.out / "predictions.csv") if r["true"] != r["predicted"]]
    assert any(r["path"].startswith(FORMULA_STARTS) for r in wrong[:16])
    for row in wrong[:16]:
        assert f"<td>{html.escape(log_text(row['path']))}</td>" in page


def test_label_csv_with_slashes_and_formulas_in_labels(tmp_path: Path) -> None:
    rows = [["path", "label"]]
    for c, label in enumerate(CSV_LABELS):
        for i in range(3):
            name = f"images/{c}_{i}.png"
            write_png(tmp_path / name, 40 + 80 * c, 16, seed=c * 10 + i)
            rows.append([name, label])
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "run"
    output = assert_terminal_safe(cli("train", tmp_path / "labels.csv", "--out", out, *TINY))
    assert '=HYPERLINK("http://x")' in output and "'-1 [/] $\\evil$ \\x1b[2J \\u202e" in output
    assert assert_no_formula_cells(sorted(out.glob("*.csv"))) >= 4
    assert sorted(r["class"] for r in read_csv_if_present(out / "per_class.csv")) == sorted(CSV_LABELS)
    assert (out / "figures" / "confusion_matrix.png").is_file() and rundir.RunDir(out).is_complete
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in page and html.escape('=HYPERLINK("http://x")') in page


# ---------------------------------------------------------------------------------- the helpers

VALUES = [
    *CLASSES,
    *CSV_LABELS,
    "=1+1",
    "+",
    "-",
    "@",
    "\t=x",
    "\r=x",
    "'",
    "''",
    "'=x",
    "-0.5",
    "",
    "plain",
    "caf\udce9.png",
    "a\u2028b\u2029c\x85d",
    "\u2066iso\u2069 \u200f",
    "ends in a backslash\\",
    "\\[bold]x",
    ":warning:",
]


@pytest.mark.parametrize("value", VALUES)
def test_csv_cells_round_trip(tmp_path: Path, value: str) -> None:
    tried("hostile name strings")
    rundir.write_csv(tmp_path / "t.csv", [value, "n"], [[value, -2], [value, 0.5]])
    assert_no_formula_cells([tmp_path / "t.csv"])
    rows = read_csv_if_present(tmp_path / "t.csv")
    expected = rundir.printable(value)
    assert [list(r.items()) for r in rows] == [
        [(expected, expected), ("n", "-2")],
        [(expected, expected), ("n", "0.5")],
    ]
    assert csv_cell(3) == 3 and from_csv_cell(None) is None


@pytest.mark.parametrize("value", VALUES)
def test_terminal_and_log_text_show_no_control_characters(value: str) -> None:
    shown = log_text(value)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]", shown)
    console = Console(file=io.StringIO(), width=500, color_system=None, emoji=False)
    console.print(terminal_text(value))
    console.print(f"[bold]{terminal_text(value)}[/bold]")  # the same inside markup
    literal = shown[:-1] + "\\x5c" if shown.endswith("\\") else shown
    assert console.file.getvalue() == f"{literal}\n{literal}\n"  # no markup read, nothing dropped
    assert report_html.esc(value) == html.escape(shown)


def test_progress_notes_print_names_literally() -> None:
    buffer = io.StringIO()
    progress = RichProgress(Console(file=buffer, width=500, color_system=None))
    progress.note("a[/]b [bold red]x \x1b[2J :warning: line\nFORGED")
    assert buffer.getvalue() == "a[/]b [bold red]x \\x1b[2J :warning: line\\nFORGED\n"


def test_figures_draw_names_literally(tmp_path: Path) -> None:
    names = [v for v in VALUES if v][:12]
    fig = figures.plot_confusion_matrix(np.eye(len(names), dtype=int), names, "$\\evil$ title")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [figure_text(n) for n in names]
    figures.save(fig, tmp_path / "matrix.png")  # matplotlib would raise on `$\evil$` read as math
    images = np.zeros((3, 8, 8, 1), dtype=np.uint8)
    grid = figures.image_grid(images, ["$\\evil$", ("$a$", "\x1b[2J"), "x\ny"], ["$p$:0.5"] * 3, title="$\\t$")
    figures.save(grid, tmp_path / "grid.png")
    assert grid.axes[1].get_title() == "\\$a\\$\n\\x1b[2J" and grid.axes[2].get_title() == "x\\ny"
    assert (tmp_path / "matrix.png").read_bytes()[:4] == (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
