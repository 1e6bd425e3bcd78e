"""Reading the results as a new user does: a piped run reads like a log, the report leads with a plain
summary and formats its numbers, a gallery without ground truth is not painted red, the API's progress
follows the terminal, and the demo's report has every section with content."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from pixlearn.classify.inference import prediction
from pixlearn.classify.training.loop import TrainConfig, train
from pixlearn.core import progress
from pixlearn.core.imaging import figures
from pixlearn.core.storage.classify_records import DataSummary, EpochRow, EvaluationRecord, TrainingMetrics
from pixlearn.report.page import render_report
from pixlearn.report.run_summary import gather_run_summary, readable_metrics
from tests.corpus import cli, fake_run, make_class_folders, write_png

TINY = ["--model", "resnet-small", "--size", "28", "--epochs", "2", "--batch-size", "4", "--val-split", "0"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    make_class_folders(root / "train", per_class=8)
    make_class_folders(root / "test", per_class=4)
    return root


def test_piped_training_output_reads_like_a_log(tree: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pixlearn", "train", str(tree), "--out", str(tmp_path / "run"), *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=True,
    )
    lines = done.stdout.splitlines()
    epochs = [i for i, line in enumerate(lines) if line.startswith("epoch ")]
    assert len(epochs) == 2, done.stdout  # one line per epoch: no bar dumped beside it, no wrapped time
    assert all(re.search(r"val_accuracy [0-9.]+  \([0-9.]+s\)$", lines[i]) for i in epochs), done.stdout
    decodes = [i for i, line in enumerate(lines) if line.startswith("decode ")]
    assert decodes and max(decodes) < min(epochs), done.stdout  # in the order things happened
    assert "Confusion matrix, counts (rows: true, columns: predicted)" in done.stdout  # the title unbroken
    assert "━" not in "".join(lines[: min(epochs)]), "a live bar's frame leaked into the log"


def test_training_on_a_terminal_draws_live_bars_with_the_running_metrics(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FORCE_COLOR makes Rich treat the captured stream as a terminal: the path a user typing `pixlearn
    # train` takes. In process: what is drawn is decided when the command makes its console, not at start-up.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")
    done = cli("train", tree, "--out", tmp_path / "run", *TINY)
    assert done.exit_code == 0, (done.exception, done.output[-2000:])
    assert "━" in done.stderr and re.search(r"loss \d", done.stderr), done.stderr[-2000:]  # a bar with its metrics


def test_a_live_bar_keeps_the_last_metrics_it_was_given() -> None:
    out = io.StringIO()
    with progress.RichProgress(Console(file=out, force_terminal=True, width=120)) as bar:
        bar.task("epoch 1/1", 3)
        bar.advance(1, loss=0.25)
        bar.advance(1)  # no metrics this time: the bar still shows the loss
        shown = bar._progress.tasks[0].fields["metrics"]
    assert shown == "loss 0.25"


def test_log_progress_prints_each_bar_once_and_a_reporting_note_replaces_it() -> None:
    out = io.StringIO()
    with progress.LogProgress(Console(file=out, width=30)) as p:
        p.task("decode train", 2)
        p.advance(2)
        p.task("epoch 1/1", 2)
        p.advance(2, loss=0.5)
        p.note("epoch 1/1  loss 0.5000  a line much longer than the thirty columns of this console")
        p.task("decode test", 1)
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "decode train",
        "epoch 1/1  loss 0.5000  a line much longer than the thirty columns of this console",
        "decode test",
    ]


def test_the_api_is_silent_without_a_terminal_unless_asked(tree: Path, tmp_path: Path, capfd) -> None:
    assert progress.make_progress(None) is progress.SILENT  # pytest's stderr is no terminal
    assert isinstance(progress.make_progress(True), progress.LogProgress)
    train(tree, tmp_path / "run", TrainConfig(model="resnet-small", size=28, epochs=1, batch_size=4, val_split=0))
    assert "epoch 1/1" not in capfd.readouterr().err


def test_the_report_leads_with_a_plain_summary_and_readable_metrics(tree: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tree, run, TrainConfig(model="resnet-small", size=28, epochs=2, batch_size=4, val_split=0))
    page = render_report(run)
    overview = page[page.index('id="overview"') : page.index('id="data"')]
    assert "Test accuracy " in overview and " of 8 images right." in overview
    assert "No file was skipped." in overview and "Training ran 2 epochs (the epochs " in overview
    assert re.search(r"; [0-9.]+ s in all, decoding and the final evaluation included\)", overview)
    assert "epochs_run" not in overview and "time of the last epoch" in overview
    assert "<details><summary>Configuration (config.json)" in overview  # folded: no blank gap beside it
    scores = re.findall(r'<td class="num">([0-9.]+)</td>', page[page.index("Per-class precision") :])
    assert scores and all(re.fullmatch(r"\d\.\d{4}|\d+", s) for s in scores[:6])


def test_the_summary_names_the_most_confused_pair_and_the_kept_epoch() -> None:
    evaluation = EvaluationRecord.from_dict(
        {
            "classes": ["city", "nature"], "accuracy": 0.7, "images": 10, "confusion_matrix": [[2, 3], [0, 5]],
            "confusion_proportions": [[0.2, 0.3], [0.0, 0.5]], "conditional_error_rates": [[0.4, 0.6], [0.0, 1.0]],
            "per_class": [],
        }
    )  # fmt: skip
    history = [EpochRow(epoch=i + 1, seconds=s) for i, s in enumerate((1.5, 2.0, 2.5))]
    skipped = DataSummary.from_dict({"classes": ["city", "nature"], "skipped": [{"path": "x", "reason": "?"}]})
    sentences = gather_run_summary(TrainingMetrics(best_epoch=2), evaluation, skipped, history)
    assert sentences == [
        "Test accuracy 70.0%: 7 of 10 images right.",
        "Most confused: true city predicted as nature (3 of the 5 images of city).",
        "1 files were skipped (see Data).",
        "Training ran 3 epochs (6.0 s, the epochs alone: decoding and the final evaluation not counted); "
        "the weights of epoch 2 were kept.",
    ]
    timed = gather_run_summary(TrainingMetrics(run_seconds=9.25), evaluation, None, history)[-1]
    assert (
        timed == "Training ran 3 epochs (the epochs 6.0 s; 9.2 s in all, decoding and the final evaluation included)."
    )
    assert readable_metrics({"val_balanced_accuracy": 0.5, "ece": 0.1234})["val balanced accuracy"] == "50.0%"
    shown = readable_metrics({"temperature": [0.109, 0.139], "val_ece_after": 0.02}, ["city", "nature"])
    assert shown["temperature (logits / T)"] == "city 0.109, nature 0.139 (one per class output)"
    assert shown["validation ECE after temperature scaling"] == "0.02"


def test_the_predictions_gallery_is_not_painted_red(tmp_path: Path, monkeypatch) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    write_png(tmp_path / "new" / "a.png", 40)
    drawn = {}
    real = figures.image_grid

    def spy(*args, **kwargs):
        fig = real(*args, **kwargs)
        drawn["colors"] = [t.get_color() for ax in fig.axes for t in ax.texts]
        return fig

    monkeypatch.setattr(figures, "image_grid", spy)
    prediction.predict(run, [tmp_path / "new"], gallery=tmp_path / "gallery.png")
    assert drawn["colors"] and all(c != "#c00000" for c in drawn["colors"])


@pytest.mark.slow
@pytest.mark.spread  # the whole demo in this process: long, and shares nothing with this module's runs
def test_the_demo_report_has_every_section_with_content(tmp_path: Path) -> None:
    from pixlearn.classify.demo import run_demo

    result = run_demo(tmp_path / "demo")
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section id="([^"]+)"', page)
    assert {"overview", "data", "model", "history", "evaluation", "mistakes", "predictions"} <= set(sections)
    assert 0.9 < result.training.metrics.test_accuracy < 1.0  # mistakes to show, and a model worth showing
    for figure in ("misclassified.png", "confident_mistakes.png", "predictions.png", "history.png"):
        assert (tmp_path / "demo" / "figures" / figure).stat().st_size > 0, figure
