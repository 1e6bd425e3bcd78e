"""Early stopping keeps the best epoch: the monitored metric is chosen (val_loss lower, val_accuracy higher),
training stops after `patience` epochs without a better one, and the saved model is the best epoch's weights,
also when the run was resumed in between."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training import stopping
from pixlearn.classify.training.loop import TrainResult, train
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.rundir import RunDir
from tests.corpus import make_class_folders

TINY = dict(model="airnet-small", size=16, color="grayscale", batch_size=4, device="cpu", threads=1, precision="fp32")


def rows(key: str, values: list[float]) -> list[dict[str, float]]:
    return [{"epoch": i + 1, "loss": 1.0, "accuracy": 0.5, key: v} for i, v in enumerate(values)]


def test_the_best_epoch_is_the_lowest_loss_or_the_highest_accuracy_the_earliest_of_equals() -> None:
    assert stopping.best_epoch(rows("val_loss", [0.5, 0.3, 0.3, 0.4]), "val_loss") == 2
    assert stopping.best_epoch(rows("val_accuracy", [0.5, 0.9, 0.7, 0.9]), "val_accuracy") == 2
    assert stopping.best_epoch([], "val_loss") is None
    no_val = [{"epoch": 1, "loss": 0.9, "accuracy": 0.2}, {"epoch": 2, "loss": 0.7, "accuracy": 0.1}]
    assert stopping.best_epoch(no_val, "val_loss") == 2 and stopping.best_epoch(no_val, "val_accuracy") == 1
    history = rows("val_loss", [0.5, 0.3, 0.4, 0.45])
    assert not stopping.should_stop(history, 3, "val_loss") and stopping.should_stop(history, 2, "val_loss")
    assert not stopping.should_stop(history, 0, "val_loss")  # 0 is off
    with pytest.raises(ConfigError, match="monitor"):
        TrainConfig(monitor="accuracy").resolved()  # type: ignore[arg-type]


def scripted_validation(monkeypatch: pytest.MonkeyPatch, key: str, values: list[float]) -> None:
    """validate() returns these values, one per epoch, so where the best epoch falls is known."""
    left = list(values)
    other = "val_accuracy" if key == "val_loss" else "val_loss"
    monkeypatch.setattr("pixlearn.classify.training.loop.validate", lambda *a, **k: {key: left.pop(0), other: 0.5})


@pytest.mark.parametrize(
    ("monitor", "values"), [("val_loss", [0.5, 0.4, 0.6, 0.7]), ("val_accuracy", [0.5, 0.8, 0.7, 0.6])]
)
def test_it_stops_and_the_saved_model_is_the_best_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, monitor: str, values: list[float]
) -> None:
    scripted_validation(monkeypatch, monitor, values)
    data = make_class_folders(tmp_path / "data", per_class=6)
    config = TrainConfig(**TINY, epochs=8, early_stopping=2, monitor=monitor)  # type: ignore[arg-type]
    result = train(data, tmp_path / "run", config)
    assert result.metrics.epochs_run == 4 and result.metrics.best_epoch == 2
    assert result.metrics.restored_best is True and getattr(result.metrics, f"best_{monitor}") == values[1]
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    best = load_file(str(tmp_path / "run" / stopping.BEST_FILE))
    last = {k[len("model.") :]: v for k, v in load_file(str(tmp_path / "run" / "checkpoint.safetensors")).items()
            if k.startswith("model.")}  # fmt: skip
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved), "the last epoch's weights differ from the best's"
    assert all(torch.equal(result.model.state_dict()[k], saved[k]) for k in saved)  # the model returned too
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"early stopping after epoch 4: no better {monitor} for 2 epoch(s); best epoch 2" in log
    assert "saved model: the best epoch's weights, epoch 2 of 4" in log
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] == 2
    assert "best epoch (saved)" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def best_at_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, TrainResult]:
    """A finished run of 3 epochs with early stopping on (patience 5) whose best epoch is the 2nd: shared by the
    tests that resume it or edit its best weights, each on its own copy."""
    root = tmp_path_factory.mktemp("best")
    data = make_class_folders(root / "data", per_class=6)
    with pytest.MonkeyPatch.context() as monkeypatch:
        scripted_validation(monkeypatch, "val_loss", [0.5, 0.3, 0.6])
        result = train(data, root / "run", TrainConfig(**TINY, epochs=3, early_stopping=5))
    return data, root / "run", result


def test_the_best_weights_survive_a_resume(best_at_two, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, run, first = best_at_two
    shutil.copytree(run, tmp_path / "run")
    assert first.metrics.best_epoch == 2
    epoch_2 = load_file(str(tmp_path / "run" / "model.safetensors"))
    scripted_validation(monkeypatch, "val_loss", [0.7, 0.8])  # epochs 4 and 5: no better
    again = train(data, tmp_path / "run", TrainConfig(**TINY, epochs=5, early_stopping=5), resume=True)
    assert again.metrics.epochs_run == 5 and again.metrics.best_epoch == 2
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.equal(saved[k], epoch_2[k]) for k in saved)


def test_best_weights_of_another_epoch_are_refused(best_at_two, tmp_path: Path) -> None:
    _, original, result = best_at_two
    run = RunDir(shutil.copytree(original, tmp_path / "copy"))
    best = stopping.best_path(run)
    state = {"epoch": 3, "monitor": "val_loss", "value": 0.6}
    save_file(load_file(str(best)), str(best), metadata={"format": stopping.BEST_FORMAT, "state": json.dumps(state)})
    history = [row.content() for row in result.history]  # the loop's rows, as history.csv holds them
    with pytest.raises(RunError, match="not the best epoch"):
        stopping.restore_best(run, result.model, history, "val_loss")
    best.unlink()
    with pytest.raises(RunError, match="missing"):
        stopping.restore_best(run, result.model, history, "val_loss")


@pytest.fixture(scope="module")
def validated_every_epoch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """A run of 5 epochs without early stopping, validated after each: shared by the two tests below."""
    root = tmp_path_factory.mktemp("every")
    data = make_class_folders(root / "data", per_class=6, size=16)
    return data, train(data, root / "every", TrainConfig(**TINY, epochs=5, val_split=0.3))


def test_without_early_stopping_the_last_epoch_is_saved_and_no_best_file_is_written(validated_every_epoch) -> None:
    _, result = validated_every_epoch
    assert result.metrics.best_epoch is None and not (result.run.path / stopping.BEST_FILE).exists()


def test_val_every_validates_every_nth_epoch_and_the_last(validated_every_epoch, tmp_path: Path) -> None:
    """--val-every 2 over 5 epochs: validation figures for epochs 2, 4 and 5 only, blanks between, and the
    history figure and report are still drawn; early stopping, which needs every epoch, is refused with it."""
    from pixlearn.report import write_report

    data, every = validated_every_epoch
    result = train(data, tmp_path / "run", TrainConfig(**TINY, epochs=5, val_every=2, val_split=0.3))
    history = rundir.read_csv(result.run.history)
    assert [bool(row["val_loss"]) for row in history] == [False, True, False, True, True]
    assert all(row["loss"] for row in history)
    assert result.metrics.val_accuracy == float(history[-1]["val_accuracy"])
    # validating changes nothing the training does: the weights equal those of validating every epoch
    for name, value in every.model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[name]), name
    assert (result.run.figure("history.png")).stat().st_size > 0
    page = write_report(result.run.path).read_text()
    assert "Training history" in page
    with pytest.raises(ConfigError, match=r"early_stopping \(--early-stopping\).*--val-every"):
        TrainConfig(early_stopping=2, val_every=3).resolved()
