"""The learning-rate sweep (`training.lr_find`), `pixlearn lr-find` and `train --lr auto`."""

from __future__ import annotations

import copy
import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training import lr_find
from pixlearn.classify.training.lr_find import BETA, Curve, exponential_rates, read_curve, run_curve, suggest
from pixlearn.core import optim
from pixlearn.core.errors import ConfigError
from pixlearn.core.storage.classify_records import EpochRow, FoundRate, TrainingMetrics
from pixlearn.models.registry import create_model
from tests.conftest import make_tree
from tests.corpus import cli, error_line

SIZE = 32
# the smallest run of the registered resnet: the sweeps and epochs below are a few seconds each
SMALL = ("--model", "resnet-small", "--size", str(SIZE), "--batch-size", "4", "--threads", "1")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes (city, nature), 8 training and 2 test images each."""
    return make_tree(tmp_path_factory.mktemp("lr") / "data", per_leaf={"train": 4, "test": 1})


# ---------------------------------------------------------------------------------- the sweep itself


def equal(a: Any, b: Any) -> bool:
    """Tensors, numbers and nested dicts / lists / tuples of them, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(equal, a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def random_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def test_the_sweep_leaves_the_model_its_optimizer_and_the_random_states_as_they_were() -> None:
    torch.manual_seed(0)
    # batch norm and dropout: a sweep on the network itself would move its statistics and draw random numbers
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)
    )
    groups = [{"params": list(model[5].parameters())}, {"params": list(model[:2].parameters()), "lr_scale": 0.1}]
    optimizer = optim.Adam(groups, lr=1e-3)
    x, y = torch.rand(8, 1, 8, 8), torch.tensor([0, 1] * 4)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # a state (moments, step counts) the sweep must not touch
    np.random.seed(3)
    random.seed(4)
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict(), model.training))
    states = copy.deepcopy(random_states())
    grads = [p.grad.clone() for p in model.parameters()]

    batches = lambda k: [(x[:4], y[:4]), (x[4:], y[4:])]  # noqa: E731 - two batches a pass: the sweep cycles them
    curve = lr_find.sweep(
        model, optimizer, batches, TrainConfig(), torch.device("cpu"), lrs=exponential_rates(1e-4, 10, 30)
    )

    assert equal((model.state_dict(), optimizer.state_dict(), model.training), before)
    assert equal([p.grad for p in model.parameters()], grads)
    assert equal(random_states(), states)
    assert len(curve.losses) >= 3 and len(set(curve.losses)) > 1  # the copy did train, on cycled batches


def test_the_fresh_optimizer_keeps_each_groups_scale_over_the_copies_only() -> None:
    head, backbone = nn.Linear(3, 2), nn.Linear(3, 3)
    optimizer = optim.SGD(
        [{"params": head.parameters(), "lr_scale": 1.0}, {"params": backbone.parameters(), "lr_scale": 0.25}],
        lr=0.1, momentum=0.9, nesterov=True,
    )  # fmt: skip
    memo: dict[int, Any] = {}
    twin = copy.deepcopy(head, memo)  # a sweep of the head alone (cached features): the backbone's group is left out
    fresh = lr_find._fresh_optimizer(optimizer, memo)
    assert type(fresh) is optim.SGD and len(fresh.param_groups) == 1 and fresh.state == {}
    assert fresh.param_groups[0]["lr_scale"] == 1.0 and fresh.param_groups[0]["nesterov"] is True
    assert [id(p) for p in fresh.param_groups[0]["params"]] == [id(p) for p in twin.parameters()]
    memo = {}
    both = copy.deepcopy(nn.ModuleList([head, backbone]), memo)
    scales = [g["lr_scale"] for g in lr_find._fresh_optimizer(optimizer, memo).param_groups]
    assert scales == [1.0, 0.25] and not any(p is q for p in both.parameters() for q in head.parameters())


def test_rates_are_exponential_and_the_loss_is_smoothed_without_bias() -> None:
    lrs = exponential_rates()
    assert len(lrs) == 100 and lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10.0)
    ratios = [b / a for a, b in zip(lrs, lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] == pytest.approx(1e8 ** (1 / 99))
    curve = run_curve(lambda lr: 2.0 if lr < 5e-4 else 1.0, exponential_rates(1e-5, 1e-1, 5))  # 2, 2, 1, 1, 1
    assert curve.smoothed[0] == pytest.approx(2.0)  # debiased: the first step is its own loss, not 0.04
    assert curve.smoothed[2] == pytest.approx((1 - BETA) * (BETA**2 * 2 + BETA * 2 + 1) / (1 - BETA**3))
    assert curve.stopped == "" and len(curve.lrs) == 5


def test_a_diverging_or_broken_loss_stops_the_sweep() -> None:
    lrs = exponential_rates()
    diverging = run_curve(lambda lr: 1.0 + (lr / 1e-2) ** 2, lrs)  # flat, then blowing up past 1e-2
    n = len(diverging.smoothed)
    assert 50 < n < 100 and "4x its minimum" in diverging.stopped
    assert diverging.smoothed[-1] > 4 * min(diverging.smoothed)  # the step that passed it is kept ...
    assert all(v <= 4 * min(diverging.smoothed[: i + 1]) for i, v in enumerate(diverging.smoothed[:-1]))  # ... alone
    assert diverging.lrs == tuple(lrs[:n]) and diverging.steps == 100
    broken = run_curve(lambda lr: math.nan if lr > 1e-3 else 1.0, lrs)
    assert "not finite" in broken.stopped and broken.lrs[-1] > 1e-3 >= broken.lrs[-2]


def test_the_valley_rule_picks_the_documented_point() -> None:
    # 100 planned steps; the rule reads steps 10 to 94 (fastai's window: the first tenth and the last 5 left out):
    # there the loss falls for 60 steps (10 to 69), then rises; a steeper fall among the first 10 is not read.
    smoothed = [5.0 - 0.4 * i for i in range(10)] + [3.0 - 0.04 * i for i in range(60)]
    smoothed += [smoothed[-1] + 0.05 * (i + 1) for i in range(30)]
    curve = Curve(tuple(exponential_rates()), tuple(smoothed), tuple(smoothed), 100)
    # the longest decreasing run ends at window index 59 and is 60 long: start = 59 - 60 = -1, and the rate
    # is at start + int(60 / 3) + int(60 / 6) = 29 of the window, step 10 + 29 of the sweep
    assert lr_find.valley_index(smoothed[10:95]) == 29
    assert suggest(curve) == (curve.lrs[39], 39)
    short = Curve(curve.lrs[:4], (3.0, 2.0, 1.0, 0.5), (3.0, 2.0, 1.0, 0.5), 100, "stopped")  # too short to trim
    assert suggest(short)[1] == lr_find.valley_index([3.0, 2.0, 1.0, 0.5]) == 0


# ---------------------------------------------------------------------------------- the command and the run


def curve_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_lr_find_writes_the_curve_and_prints_the_suggestion(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = cli("lr-find", data, *SMALL, "--out", out)
    assert result.exit_code == 0, result.output
    rows = curve_rows(out / "lr_find.csv")
    assert list(rows[0]) == ["lr", "loss", "smoothed_loss"] and 10 < len(rows) <= 100
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    found, _ = suggest(read_curve(out / "lr_find.csv"))
    assert f"suggested learning rate: {found:.3g}" in result.output
    assert "rule: valley" in result.output


def test_train_with_lr_auto_sweeps_first_and_trains_at_the_suggestion(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = cli("train", data, *SMALL, "--epochs", "2", "--lr", "auto", "--out", run)
    assert result.exit_code == 0, result.output
    found, _ = suggest(read_curve(run / "lr_find.csv"))
    assert (run / "figures" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "config.json").read_text())["lr"] == "auto"
    metrics = TrainingMetrics.read(run)
    assert metrics.lr_found == (FoundRate(phase="", lr=found, rule="valley", sweep="lr_find.csv"),)
    assert [row.lr for row in EpochRow.read_rows(run)] == [found, found]  # the constant schedule, at the rate found
    report = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="lr-find"' in report and f"{found:.3g}" in report


def test_fine_tuning_with_lr_auto_sweeps_each_phase_and_a_resume_reads_them_back(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    weights = tmp_path / "start.safetensors"
    save_file(
        create_model("resnet-small", in_channels=1, num_classes=10, input_size=(SIZE, SIZE)).state_dict(), weights
    )
    run = tmp_path / "fine"
    options = (*SMALL, "--weights", weights, "--head-epochs", "1", "--schedule", "constant", "--lr", "auto")
    assert cli("train", data, *options, "--epochs", "2", "--out", run).exit_code == 0
    rates = {phase: suggest(read_curve(run / f"lr_find-{phase}.csv"))[0] for phase in ("head", "full")}
    assert [f.phase for f in TrainingMetrics.read(run).lr_found] == ["head", "full"]
    assert {f.phase: f.lr for f in TrainingMetrics.read(run).lr_found} == rates
    assert [(r.phase, r.lr) for r in EpochRow.read_rows(run)] == [("head", rates["head"]), ("full", rates["full"])]
    swept = {p: p.stat().st_mtime_ns for p in run.glob("lr_find-*.csv")}
    resumed = cli("train", data, *options, "--epochs", "3", "--out", run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert {p: p.stat().st_mtime_ns for p in run.glob("lr_find-*.csv")} == swept  # read back, not swept again
    assert EpochRow.read_rows(run)[-1].lr == rates["full"]


def test_a_learning_rate_that_is_neither_a_number_nor_auto_is_refused(data: Path, tmp_path: Path) -> None:
    error_line(cli("train", data, "--lr", "fast", "--out", tmp_path / "a"), "--lr", "'fast'", "auto")
    error_line(cli("train", data, "--lr", "0", "--out", tmp_path / "b"), "--lr", "more than 0")
    with pytest.raises(ConfigError, match=r"lr \(--lr\): expected a number or auto, got 'fast'"):
        TrainConfig(lr="fast").resolved()
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_phase_is_refused_where_the_run_has_none(data: Path, tmp_path: Path) -> None:
    error_line(cli("lr-find", data, *SMALL, "--phase", "head", "--out", tmp_path / "p"), "--phase", "--pretrained")
