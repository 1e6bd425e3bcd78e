"""Interruptions lose at most the epoch in progress; finished runs and files are never half-written."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixlearn.classify.training import loop as train_module
from pixlearn.classify.training.loop import TrainConfig, TrainingInterrupted, train
from pixlearn.core.errors import DataError, RunError
from pixlearn.core.storage import locks, rundir, weights
from pixlearn.core.storage.rundir import RunDir
from pixlearn.core.storage.spec import ModelSpec
from tests.corpus import make_class_folders

REAL_TRAIN_ONE_EPOCH = train_module.train_one_epoch


def tiny_config(**changes) -> TrainConfig:
    base = dict(model="airnet-small", size=12, epochs=3, batch_size=4, color="grayscale", device="cpu", seed=5)
    return TrainConfig(**{**base, **changes, "flip": True, "shift": 0.1})


def interrupt_at(monkeypatch, epoch_to_stop: int) -> None:
    """Make train_one_epoch raise KeyboardInterrupt (as Ctrl-C would) when it reaches that epoch."""
    real = REAL_TRAIN_ONE_EPOCH

    def maybe_interrupt(model, data, optimizer, config, epoch, device, progress):
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt
        return real(model, data, optimizer, config, epoch, device, progress)

    monkeypatch.setattr(train_module, "train_one_epoch", maybe_interrupt)


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}  # every wall time


def history_without_timing(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [without_timing(row) for row in csv.DictReader(f)]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture
def data(tmp_path: Path, monkeypatch) -> Path:
    # Figures and evaluation files take most of a tiny run's time and play no part here.
    monkeypatch.setattr("pixlearn.classify.evaluation.interpretation.write_evaluation", lambda *a, **k: None)
    return make_class_folders(tmp_path / "data", per_class=4, size=12)


# ---------------------------------------------------------------------------------- Ctrl-C, in process


def test_ctrl_c_keeps_the_last_epoch_and_resume_matches_an_uninterrupted_run(data, tmp_path, monkeypatch) -> None:
    whole = train(data, tmp_path / "whole", tiny_config())
    interrupt_at(monkeypatch, 2)
    with pytest.raises(TrainingInterrupted) as caught:
        train(data, tmp_path / "cut", tiny_config())
    message = str(caught.value)
    assert "epoch 3" in message and "checkpoint of epoch 2" in message
    assert f"--out {tmp_path / 'cut'} --resume" in message
    cut = RunDir(tmp_path / "cut")
    assert len(rundir.read_json(cut.checkpoint_spec)["history"]) == 2
    assert not cut.metrics.exists() and not cut.weights.exists()
    assert message in cut.log_file.read_text(encoding="utf-8")
    monkeypatch.setattr(train_module, "train_one_epoch", REAL_TRAIN_ONE_EPOCH)
    with pytest.raises(RunError, match=r"interrupted run; resume it \(--resume"):  # a fresh start would lose epochs 1-2
        train(data, cut.path, tiny_config())
    resumed = train(data, cut.path, tiny_config(), resume=True)
    assert without_timing(resumed.metrics.content()) == without_timing(whole.metrics.content())
    assert history_without_timing(cut.history) == history_without_timing(whole.run.history)
    assert same_weights(cut.weights, whole.run.weights)


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_resume(data, tmp_path, monkeypatch) -> None:
    interrupt_at(monkeypatch, 0)
    with pytest.raises(TrainingInterrupted, match="nothing to resume"):
        train(data, tmp_path / "out", tiny_config(epochs=1))
    monkeypatch.setattr(train_module, "train_one_epoch", REAL_TRAIN_ONE_EPOCH)
    with pytest.raises(RunError, match="nothing to resume"):
        train(data, tmp_path / "out", tiny_config(epochs=1), resume=True)
    assert train(data, tmp_path / "out", tiny_config(epochs=1)).run.is_complete  # no checkpoint: a plain rerun


def test_resume_on_data_with_other_classes_is_refused(data, tmp_path, monkeypatch) -> None:
    interrupt_at(monkeypatch, 1)
    with pytest.raises(TrainingInterrupted):
        train(data, tmp_path / "out", tiny_config(epochs=2))
    monkeypatch.setattr(train_module, "train_one_epoch", REAL_TRAIN_ONE_EPOCH)
    (data / "dark").rename(data / "black")  # same number of classes: the weights alone would fit
    with pytest.raises(DataError, match=r"trained on classes \['dark', 'light'\]"):
        train(data, tmp_path / "out", tiny_config(epochs=2), resume=True)


def test_finished_run_is_never_overwritten_without_overwrite(data, tmp_path) -> None:
    first = train(data, tmp_path / "out", tiny_config(epochs=1))
    before = first.run.weights.read_bytes()
    with pytest.raises(RunError, match=r"finished run; overwrite it \(--overwrite"):
        train(data, tmp_path / "out", tiny_config(epochs=1, seed=9))
    assert first.run.weights.read_bytes() == before
    second = train(data, tmp_path / "out", tiny_config(epochs=1, seed=9), overwrite=True)
    assert second.run.weights.read_bytes() != before
    leftovers = [p.name for p in second.run.path.rglob("*.tmp")]
    assert leftovers == []


# ---------------------------------------------------------------------------------- atomic writes


def test_failed_json_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    rundir.write_json(target, {"accuracy": 0.9})
    with pytest.raises(TypeError):
        rundir.write_json(target, {"accuracy": object()})
    assert json.loads(target.read_text()) == {"accuracy": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_crash_while_saving_weights_keeps_the_old_model(tmp_path: Path, monkeypatch) -> None:
    model = torch.nn.Linear(2, 2)
    spec = ModelSpec.classifier("resnet-small", ["a", "b"], (28, 28), "grayscale")
    weights.save_model(model, spec, tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", half_written)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(RunError, match=r"model.safetensors: cannot write the file \(disk full\)"):
        weights.save_model(model, spec, tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_prepare_removes_partial_files_left_by_a_killed_writer(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.figures.mkdir(parents=True)
    (run.path / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"partial")
    (run.figures / ".history.png.x.tmp").write_bytes(b"partial")
    (run.path / "keep.txt").write_text("mine")
    (run.path / locks.LOCK_NAME).touch()  # left by the killed writer: the folder is a run of pixlearn's
    run.prepare()
    assert sorted(p.name for p in run.path.rglob("*") if p.is_file()) == [locks.LOCK_NAME, "keep.txt"]


# ---------------------------------------------------------------------------------- real signals


def train_command(data: Path, out: Path, epochs: int = 6) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pixlearn",
        "train",
        str(data),
        "--out",
        str(out),
        "--model",
        "resnet-small",
        "--size",
        "32",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--seed",
        "3",
        "--flip",
        "--shift",
        "0.1",
    ]


def quiet_env() -> dict[str, str]:
    # One thread each: deterministic reductions and no fight over the cores with other tests.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def seeded_rng() -> tuple[random.Random, int]:
    """The random draws of a test: seed PIXLEARN_TEST_SEED (default 0), printed and put in its messages."""
    seed = int(os.environ.get("PIXLEARN_TEST_SEED", "0"))
    print(f"random draws seeded with {seed} (rerun with PIXLEARN_TEST_SEED={seed})")
    return random.Random(seed), seed


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended (code {process.returncode}) before {path.name} appeared")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path.name} did not appear within {timeout:.0f} s")
        time.sleep(0.02)


def wait_for_epoch(checkpoint: Path, process: subprocess.Popen, epoch: int, timeout: float = 120.0) -> None:
    """Wait until the checkpoint holds `epoch` finished epochs (it is written atomically)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_for(checkpoint, process, timeout)
        if len(rundir.read_json(checkpoint)["history"]) >= epoch:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"epoch {epoch} was never checkpointed")
        time.sleep(0.01)


@pytest.mark.slow
def test_sigint_exits_130_with_a_resume_hint(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=32, size=32)
    out = tmp_path / "out"
    # SIGINT back to its default in the child: a test run started in the background (`make test &`)
    # ignores SIGINT, and a child inherits that, as Unix intends for background jobs.
    process = subprocess.Popen(
        train_command(data, out, epochs=12),
        env=quiet_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Inside an epoch or between two (both must end cleanly), never after the last one: after a random
    # checkpointed epoch k, within half an epoch's time (timed on the first epoch).
    rng, seed = seeded_rng()
    wait_for_epoch(out / "checkpoint.json", process, 1)
    epoch_s = float(rundir.read_json(out / "checkpoint.json")["history"][0]["seconds"])
    k, delay = rng.randint(1, 4), rng.uniform(0.0, 0.5 * epoch_s)
    wait_for_epoch(out / "checkpoint.json", process, k)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, f"seed {seed}: SIGINT {delay:.2f} s after epoch {k}\n{stderr}"
    assert "Traceback" not in stderr, f"seed {seed}\n{stderr}"
    assert f"--out {out} --resume" in " ".join(stderr.split()), f"seed {seed}\n{stderr}"
    assert (out / "checkpoint.json").exists() and not (out / "metrics.json").exists(), f"seed {seed}"


@pytest.mark.slow
def test_sigkill_at_a_random_point_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=32, size=32)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # The uninterrupted run is only compared with at the end: it trains beside the interrupted one
    # (each process has one thread, so the results are the same as one after the other).
    log = tmp_path / "whole.log"
    with open(log, "w") as err:
        reference = subprocess.Popen(train_command(data, whole), env=quiet_env(), stdout=subprocess.DEVNULL, stderr=err)
    try:
        cut_and_resume(data, cut, whole, reference, log)
    finally:
        if reference.poll() is None:  # the test failed before it: no process is left behind
            reference.kill()
            reference.wait()


def cut_and_resume(data: Path, cut: Path, whole: Path, reference: subprocess.Popen, log: Path) -> None:
    # A random point: after a random epoch k (1..4) has been checkpointed, a random part of the next
    # epoch. Timed by the shortest epoch the interrupted run has finished by then, so a fast machine
    # cannot finish epoch 6 before the kill.
    rng, seed = seeded_rng()
    k = rng.randint(1, 4)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(train_command(data, cut), env=quiet_env(), **quiet)
    wait_for_epoch(cut / "checkpoint.json", process, k)
    epoch_s = min(float(r["seconds"]) for r in rundir.read_json(cut / "checkpoint.json")["history"])
    delay = rng.uniform(0.0, 0.5 * epoch_s)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    where = f"seed {seed}: SIGKILL {delay:.2f} s after epoch {k}"
    assert not (cut / "metrics.json").exists(), f"the run finished before the kill ({where})"
    saved_epochs = len(rundir.read_json(cut / "checkpoint.json")["history"])

    resumed = subprocess.run(
        [*train_command(data, cut), "--resume"], env=quiet_env(), capture_output=True, text=True, timeout=300
    )
    assert reference.wait(timeout=300) == 0, log.read_text()
    assert resumed.returncode == 0, f"{where}\n{resumed.stderr}"
    assert 1 <= saved_epochs < 6, where
    metrics = [without_timing(rundir.read_json(run / "metrics.json")) for run in (cut, whole)]
    assert metrics[0] == metrics[1], where
    assert history_without_timing(cut / "history.csv") == history_without_timing(whole / "history.csv"), where
    assert same_weights(cut / "model.safetensors", whole / "model.safetensors"), where
    assert not list(cut.rglob("*.tmp")), where
