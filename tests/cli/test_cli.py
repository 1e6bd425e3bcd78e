"""The `pixlearn` command: a thin layer over the API; every verb shows an example in --help."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pixlearn.cli import app

runner = CliRunner()


def _verbs() -> list[str]:
    return sorted(c.name for c in app.registered_commands)


@pytest.mark.parametrize("verb", ["train", "evaluate", "predict", "summary", "demo", "models"])
def test_classification_verbs_exist(verb: str) -> None:
    assert verb in _verbs()


@pytest.mark.parametrize("verb", _verbs())
def test_help_of_every_verb_shows_an_example(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Example: pixlearn " + verb in " ".join(result.output.split())


def test_summary_prints_the_seed_table() -> None:
    result = runner.invoke(app, ["summary", "seed-cnn", "--input", "150x150x1"])
    assert result.exit_code == 0
    assert "conv2d (Conv2D)" in result.output and "(None, 74, 74, 120)" in result.output
    assert "Total params: 120,242" in result.output


def test_train_evaluate_predict_from_the_command_line(seed_tree: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            str(seed_tree),
            "--out",
            str(run),
            "--size",
            "28",
            "--color",
            "grayscale",
            "--epochs",
            "1",
            "--group",
            "city=buildings,street",
            "--group",
            "nature=forest,sea",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Confusion matrix" in result.output and (run / "model.safetensors").exists()
    result = runner.invoke(app, ["evaluate", str(run), str(seed_tree)])
    assert result.exit_code == 0, result.output
    assert (run / "evaluations" / "test" / "evaluation.json").exists()
    csv_file = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(run), str(seed_tree / "test"), "--csv", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert len(csv_file.read_text().splitlines()) == 13


def test_errors_are_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", str(tmp_path / "missing"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "missing: path does not exist" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["summary", "no-such-model"])
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output


def test_python_dash_m_is_the_same_command() -> None:
    out = subprocess.run([sys.executable, "-m", "pixlearn", "models"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "seed-cnn" in out.stdout
