"""The validation set: 10% of the training folder by default, even beside test/, so the test set is
scored once, at the end; `--val-split 0` validates on test/ every epoch and repeats the first seed's runs
exactly; without test/ the held-out split validates and gives the final figures, and everything says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.classify.data.splits import plan_validation
from pixlearn.classify.training.loop import TrainResult, train
from pixlearn.core.errors import DataError
from tests.conftest import make_tree
from tests.corpus import make_class_folders
from tests.paths import FIXTURES

BASELINE = FIXTURES / "val_split_0_baseline.json"
TINY = dict(model="airnet-small", size=16, color="grayscale", batch_size=8, device="cpu", threads=1, precision="fp32")


def test_by_default_a_seeded_stratified_tenth_of_train_validates_and_test_is_kept(seed_tree: Path) -> None:
    splits = find_splits(seed_tree, LabelRule("first"), TrainConfig().val_split, seed=0)
    assert TrainConfig().val_split == 0.1
    plan = plan_validation(splits, 0.1, seed=0)
    assert plan.validation == "train-split" and plan.final == "test"
    assert plan.test == splits.test  # the test set is untouched: scored once, at the end
    assert sorted(map(str, (s.path for s in plan.train + plan.val))) == sorted(str(s.path) for s in splits.train)
    assert not {s.path for s in plan.val} & {s.path for s in plan.train}
    assert {s.label for s in plan.val} == set(splits.classes)  # stratified: every class is validated
    assert [s.label for s in plan.val].count("city") == round(16 * 0.1)
    again = plan_validation(find_splits(seed_tree, LabelRule("first"), 0.1, seed=0), 0.1, seed=0)
    other = plan_validation(splits, 0.1, seed=1)
    assert again.val == plan.val and other.val != plan.val  # seeded
    assert "test set (12 images) is scored once" in plan.describe()["text"]


def test_val_split_0_validates_on_test_with_the_whole_training_folder_in_order(seed_tree: Path) -> None:
    splits = find_splits(seed_tree, LabelRule("first"), 0.0, seed=0)
    plan = plan_validation(splits, 0.0, seed=0)
    assert plan.train == splits.train and plan.val == splits.test == plan.test
    assert plan.validation == "test" and list(plan.sets()) == ["train", "test"]


def test_without_test_the_split_validates_and_gives_the_final_figures(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path / "data", per_class=10)
    plan = plan_validation(find_splits(root, LabelRule("first"), 0.1, seed=0), 0.1, seed=0)
    assert plan.validation == "split" and plan.final == "validation" and len(plan.val) == 2
    assert "no test set, so the final evaluation is on this validation split" in plan.describe()["text"]
    with pytest.raises(DataError, match="without a test/ folder"):
        find_splits(root, LabelRule("first"), 0.0, seed=0)


def cpu_name() -> str:
    """'vendor / model name / kernel level' ('' for a part /proc/cpuinfo lacks): the baseline recorded on
    this CPU. The kernel level (torch's AVX2, AVX512...) is part of it: one model name covers machines whose
    fp32 kernels round differently."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    field = lambda key: next((x.split(":", 1)[1].strip() for x in lines if x.startswith(key)), "")  # noqa: E731
    return f"{field('vendor_id')} / {field('model name')} / {torch.backends.cpu.get_cpu_capability()}"


def baseline_for_this_cpu() -> dict | None:
    """The fixture's run for this CPU (CPUs whose fp32 kernels round differently give other weights from the same
    code), or None where none was recorded."""
    recorded = json.loads(BASELINE.read_text())
    return recorded["by_cpu"].get(cpu_name())


def seeded_run(root: Path, run: Path) -> tuple[dict[str, float], TrainResult]:
    config = TrainConfig(**TINY, epochs=2, seed=0, flip=True, shift=0.1, erase=0.5, val_split=0.0)
    result = train(root, run, config)
    weights = load_file(str(run / "model.safetensors"))
    return {k: float(v.double().sum()) for k, v in sorted(weights.items())}, result


def test_a_seeded_run_with_val_split_0_repeats_the_first_seeds_run_exactly(tmp_path: Path) -> None:
    # recorded before the validation split existed (see the fixture's "recorded"): same weights, same history.
    # On a CPU with no recording, two runs must still give the same weights and history.
    data = make_tree(tmp_path / "data")
    sums, result = seeded_run(data, tmp_path / "run")
    got = [h.content() for h in result.history]
    expected = baseline_for_this_cpu()
    if expected is None:
        again, rerun = seeded_run(data, tmp_path / "again")
        expected = {"sums": again, "history": [h.content() for h in rerun.history], "metrics": {"test_images": 12}}
    assert sums == pytest.approx(expected["sums"], rel=1e-6, abs=1e-7)
    # the figures recorded then (later columns, such as the balanced scores, are not in the baseline)
    got = [{k: v for k, v in h.items() if k in expected["history"][0]} for h in got]
    assert got == [pytest.approx(h, rel=1e-6) for h in expected["history"]]
    assert result.metrics.test_images == expected["metrics"]["test_images"] == 12
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["validation"]["set"] == "test" and summary["images"] == {"train": 32, "test": 12}


def test_a_default_run_validates_on_train_held_out_and_evaluates_on_test_once(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    result = train(data, tmp_path / "run", TrainConfig(**TINY, epochs=1))
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["images"] == {"train": 28, "val": 4, "test": 12}
    assert summary["validation"] | {"text": ""} == {"set": "train-split", "fraction": 0.1, "final": "test", "text": ""}
    assert result.metrics.evaluated_on == "test" and result.metrics.test_images == 12
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "10% of the training folder per class" in report and "test accuracy" in report


def test_a_run_without_test_says_its_final_figures_are_on_the_validation_split(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=10)
    result = train(data, tmp_path / "run", TrainConfig(**TINY, epochs=1))
    assert result.metrics.evaluated_on == "validation" and result.metrics.test_images == 2
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["images"] == {"train": 18, "val": 2} and summary["validation"]["final"] == "validation"
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "validation accuracy" in report and "final evaluation is on this validation split" in report


def test_the_help_says_which_set_is_which() -> None:
    from pixlearn.core.options import option_fields

    help_of = {f.name: info.help for f, info, _ in option_fields(TrainConfig)}
    assert "0: validate on test/ every epoch" in help_of["val_split"]
    assert "scored once, by the final evaluation" in help_of["val_split"]
