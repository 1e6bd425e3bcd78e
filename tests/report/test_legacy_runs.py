"""Directories written by earlier versions of pixlearn (tests/fixtures/legacy-runs: a classification run
and a fit of 0.1, and a calibrated, abstaining run, a comparison and a check written before the typed
records, without their model files) are read by the report and the command line through the records:
every part shows, no file is listed as unusable, and the defaults of keys added later fill the gaps.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pixlearn.cli.classify import _print_evaluation
from tests.corpus import cli
from tests.paths import FIXTURES

LEGACY = FIXTURES / "legacy-runs"


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("classify", ["Model summary", "Per-class precision", "Training history"]),
        ("classify-calibrated", ["Temperature scaling", "Abstaining where", "the weights of epoch 1 were kept"]),
        ("field", ["Model summary", "PSNR during training"]),
        ("compare", ["One row per model", "PSNR curves", "seed-small"]),
        ("check", ["Duplicates and leaks", "Odd images", "Files that could not be used"]),
    ],
)
def test_pixlearn_report_reads_every_file_of_an_earlier_version(kind: str, says: list[str], tmp_path: Path) -> None:
    run = shutil.copytree(LEGACY / kind, tmp_path / kind)
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    page = (run / ("check.html" if kind == "check" else "report.html")).read_text(encoding="utf-8")
    assert "Files that could not be shown" not in page
    for text in says:
        assert text in page, text


def test_the_command_line_prints_the_evaluations_of_earlier_versions(capsys: pytest.CaptureFixture) -> None:
    _print_evaluation(LEGACY / "classify")  # 0.1: no balanced scores, calibration or abstention yet
    printed = capsys.readouterr().out
    assert "accuracy 0.5000 on 8 images" in printed and "balanced accuracy" not in printed
    assert "Per class" in printed
    _print_evaluation(LEGACY / "classify-calibrated")
    printed = capsys.readouterr().out
    assert "balanced accuracy 0.5000" in printed and "temperature (logits / T): 20.000" in printed
    assert "abstaining below 0.6: coverage 0.00% (8 abstained), accuracy on the rest undefined" in printed
