"""Hostile run directories: a checkpoint torn between its two files, two writers on one --out, a
prediction CSV of another run, tampered options, and every JSON and CSV file of a real run fuzzed.

Each must end with exit code 0 or one `error:` line naming the file (exit 2): never a traceback,
never a silent mix of two epochs, two runs or two models. Everything is built here from one tiny
trained run and one tiny image fit (made once for the module): copies are tampered in tmp_path, a
kill between the checkpoint's two renames is a monkeypatched os.replace, the competing writer a
subprocess holding the run lock (killed with SIGKILL) or a second descriptor of this process.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from pixlearn.classify.config import PredictConfig, TrainConfig
from pixlearn.classify.inference.prediction import predict
from pixlearn.classify.training.loop import train
from pixlearn.cli import app
from pixlearn.core.errors import RunError
from pixlearn.core.storage import checkpoints, locks, rundir
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from tests import hostile
from tests.corpus import make_class_folders

runner = CliRunner()
# Drawing is not the subject here: no test reads a figure, and clone leaves a run's figures out.
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once", "no_figures")
TINY = ["--model", "airnet-small", "--size", "16", "--batch-size", "4", "--device", "cpu", "--color", "grayscale"]
HOSTILE = hostile.COUNTS  # hostile inputs built, per kind (the run's tally): the fuzz tests check their counts


def cli(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def no_traceback(result, what: str = "") -> None:
    assert result.exit_code in (0, 2), f"{what}: exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), f"{what}: {result.exception!r}"
    assert "Traceback" not in result.output, what


def error_line(result, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one `error:` line holding every fragment."""
    assert result.exit_code == 2, result.output
    no_traceback(result)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def clone(source: Path, target: Path) -> Path:
    """A copy of a run without its figures; weight files are hard links (they are only ever replaced)."""

    def link_or_copy(src: str, dst: str) -> None:
        if src.endswith(".safetensors"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    ignore = shutil.ignore_patterns("figures", "*.png", "report.html", locks.LOCK_NAME)
    shutil.copytree(source, target, ignore=ignore, copy_function=link_or_copy)
    return target


def replace_file(path: Path, content: str | bytes) -> None:
    path.unlink(missing_ok=True)  # never write through a hard link
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, figures_off) -> SimpleNamespace:
    """One tiny finished classification run (with predictions of unlabelled images) and one image fit."""
    root = tmp_path_factory.mktemp("hostile-runs")
    data = make_class_folders(root / "data")
    run = root / "run"
    config = TrainConfig(model="airnet-small", size=16, epochs=1, batch_size=4, color="grayscale", device="cpu")
    with figures_off():  # the copies the tests tamper with leave figures out (clone)
        train(data, run, config)
        predict(run, [data / "dark"], run / "predictions_unlabeled.csv", PredictConfig(device="cpu"))
        image = (np.indices((8, 8)).sum(0) * 16).astype(np.uint8)
        fit_image(image, root / "fit", FitConfig(model="seed-linear", steps=5, device="cpu"))
    return SimpleNamespace(root=root, data=data, run=run, fit=root / "fit")


# ---------------------------------------------------------------------------------- 8: checkpoints


class Killed(BaseException):
    """A process killed at this point: no handler of pixlearn's runs (KeyboardInterrupt's included)."""


def kill_between_checkpoint_renames(monkeypatch, at_epoch: int) -> None:
    """os.replace dies right after the checkpoint's tensor file of `at_epoch` is renamed into place."""
    real_replace = os.replace
    renamed = {"tensors": 0}

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if Path(dst).name == "checkpoint.safetensors":
            renamed["tensors"] += 1
            if renamed["tensors"] == at_epoch:
                raise Killed

    monkeypatch.setattr(rundir.os, "replace", replace)


def without_seconds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in rows]  # every wall time


def test_a_kill_between_the_checkpoint_renames_resumes_as_if_uninterrupted(base, tmp_path, monkeypatch) -> None:
    options = ["--epochs", "3", "--seed", "4", "--flip", "--shift", "0.1", *TINY]
    whole = cli("train", base.data, "--out", tmp_path / "whole", *options)
    assert whole.exit_code == 0, whole.output
    cut = rundir.RunDir(tmp_path / "cut")
    kill_between_checkpoint_renames(monkeypatch, at_epoch=2)
    with pytest.raises(Killed):
        train(base.data, cut.path, TrainConfig(**_tiny_config(epochs=3, seed=4, flip=True, shift=0.1)))
    monkeypatch.undo()  # os.replace itself again
    # The torn state the old format resumed silently from: epoch-2 tensors beside epoch-1 JSON.
    assert len(rundir.read_json(cut.checkpoint_spec)["history"]) == 1
    tensors_state = json.loads(_metadata(cut.checkpoint)["state"])
    assert len(tensors_state["history"]) == 2
    resumed = cli("train", base.data, "--out", cut.path, "--resume", *options)
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 3/3" in resumed.output and "epoch 2/3" not in resumed.output  # epoch 2 is not trained twice
    assert without_seconds([rundir.read_json(cut.metrics)]) == without_seconds(
        [rundir.read_json(tmp_path / "whole/metrics.json")]
    )
    whole = rundir.read_csv(tmp_path / "whole/history.csv")
    assert without_seconds(rundir.read_csv(cut.history)) == without_seconds(whole)
    assert _same_tensors(cut.weights, tmp_path / "whole/model.safetensors")
    meta = rundir.read_json(cut.checkpoint_spec)  # the readable copy caught up with the tensor file
    assert meta["format"] == checkpoints.CHECKPOINT_FORMAT and len(meta["history"]) == 3
    HOSTILE["torn checkpoint"] = 1


def _tiny_config(**changes: Any) -> dict[str, Any]:
    return {"model": "airnet-small", "size": 16, "batch_size": 4, "device": "cpu", "color": "grayscale", **changes}


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def _same_tensors(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _resave_checkpoint(path: Path, metadata: dict[str, str], change: Callable[[dict], None] | None = None) -> None:
    tensors = load_file(str(path))
    if change is not None:
        change(tensors)
    path.unlink()
    save_file(tensors, str(path), metadata=metadata)


def _state_with(path: Path, **changes: Any) -> str:
    return json.dumps({**json.loads(_metadata(path)["state"]), **changes})


def test_a_tensor_file_whose_state_is_missing_or_tampered_is_refused(base, tmp_path) -> None:
    cases: dict[str, Callable[[Path], None]] = {
        "holds no checkpoint state": lambda p: _resave_checkpoint(p, {"format": checkpoints.CHECKPOINT_FORMAT}),
        "is not valid JSON": lambda p: _resave_checkpoint(p, {"format": "x", "state": '{"history": ['}),
        "nested too deeply": lambda p: _resave_checkpoint(p, {"state": "[" * 5000 + "]" * 5000}),
        "not a pixlearn checkpoint": lambda p: _resave_checkpoint(p, {"state": '{"format": "other/1"}'}),
        "its history is not one row of numbers": lambda p: _resave_checkpoint(
            p, {"state": _state_with(p, history=[{"epoch": 1, "loss": "low"}])}
        ),
        "trained with other options": lambda p: _resave_checkpoint(
            p, {"state": _state_with(p, config={**rundir.read_json(p.parent / "config.json"), "lr": 0.5})}
        ),
        "param_groups[0].betas": lambda p: _resave_checkpoint(
            p,
            {"state": _state_with(p, param_groups=[{**_groups(p)[0], "betas": ["fast", 0.9]}])},
        ),
        "of parameter 0 has shape": lambda p: _resave_checkpoint(
            p, {"state": _metadata(p)["state"]}, lambda t: t.update({"optim.0.exp_avg": torch.zeros(3, 3, 3)})
        ),
    }
    for i, (says, tamper) in enumerate(cases.items()):
        run = clone(base.run, tmp_path / f"case{i}")
        tamper(run / "checkpoint.safetensors")
        result = cli("train", base.data, "--out", run, "--resume", "--epochs", "1", *TINY)
        error_line(result, str(run / "checkpoint.safetensors"), says)
    HOSTILE["tampered checkpoint tensors"] = len(cases)


def _groups(path: Path) -> list[dict[str, Any]]:
    return json.loads(_metadata(path)["state"])["param_groups"]


def test_a_checkpoint_of_the_first_format_still_resumes(base, tmp_path) -> None:
    run = clone(base.run, tmp_path / "old")
    state = json.loads(_metadata(run / "checkpoint.safetensors")["state"])
    # as pixlearn 0.1 wrote them: `size` null and `threads` 0 (the count was not recorded)
    state["config"] |= {"size": None, "threads": 0}
    rundir.write_json(run / "config.json", {**rundir.read_json(run / "config.json"), "size": None, "threads": 0})
    _resave_checkpoint(run / "checkpoint.safetensors", {"format": checkpoints.FIRST_CHECKPOINT_FORMAT})
    rundir.write_json(run / "checkpoint.json", {**state, "format": checkpoints.FIRST_CHECKPOINT_FORMAT})
    (run / "metrics.json").unlink()
    result = cli("train", base.data, "--out", run, "--resume", "--epochs", "2", *TINY)
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "epoch 1/2" not in result.output


# ---------------------------------------------------------------------------------- 9: one writer


HOLDER = """
import sys, time
from pixlearn.core.storage.locks import hold
with hold(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_second_writer_is_refused_while_another_process_holds_the_run(base, tmp_path) -> None:
    run = clone(base.run, tmp_path / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    before = _files(run)
    try:
        assert holder.stdout.readline().strip() == "locked"  # EOF (a crashed holder) fails here, never hangs
        busy = f"is being written by another pixlearn process (pid {holder.pid}); wait for it or choose another"
        error_line(cli("train", base.data, "--out", run, "--overwrite", *TINY), str(run), busy)
        error_line(cli("fit", base.root / "data/dark/img_0.png", "--out", run, "--steps", "2"), str(run), busy)
        still = f"is still being written by another pixlearn process (pid {holder.pid}); wait for it to finish"
        error_line(cli("report", run), str(run), still)
        error_line(cli("evaluate", run, base.data, "--device", "cpu"), str(run), still)
        error_line(cli("predict", run, base.data, "--csv", tmp_path / "p.csv", "--device", "cpu"), str(run), still)
        assert _files(run) == before  # nothing was written or removed
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel alone releases the lock
        holder.wait()
    with rundir.RunDir(run).lock():  # free again, though the lock file is still there
        assert (run / locks.LOCK_NAME).is_file()
    report = cli("report", run)
    assert report.exit_code == 0, report.output
    HOSTILE["competing writers"] = 5


def _files(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != locks.LOCK_NAME
    }


def test_a_second_descriptor_of_this_process_is_refused_too(base, tmp_path) -> None:
    out = tmp_path / "new-run"
    out.mkdir()
    fd = os.open(out / locks.LOCK_NAME, os.O_RDWR | os.O_CREAT)  # flock is per open file description
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        busy = f"is being written by another pixlearn process (pid {os.getpid()})"
        error_line(cli("train", base.data, "--out", out, *TINY), str(out), busy)
        error_line(cli("fit", base.root / "data/dark/img_0.png", "--out", out, "--steps", "2"), str(out), busy)
        with pytest.raises(RunError, match="is being written by another pixlearn process"):
            rundir.RunDir(out).prepare()  # even a caller that did not take the lock
    finally:
        os.close(fd)
    assert sorted(p.name for p in out.iterdir()) == [locks.LOCK_NAME]  # nothing was written
    fitted = cli("fit", base.root / "data/dark/img_0.png", "--out", out, "--steps", "2", "--device", "cpu")
    assert fitted.exit_code == 0, fitted.output
    HOSTILE["competing writers"] = HOSTILE.get("competing writers", 0) + 3


def test_a_refused_run_leaves_no_directory_behind(base, tmp_path) -> None:
    result = cli("train", base.data, "--out", tmp_path / "nothing", "--resume", *TINY)
    error_line(result, "nothing to resume")
    assert not (tmp_path / "nothing").exists()  # the lock made it, and removed it again


# ---------------------------------------------------------------------------------- 10: predict --resume


def _predict(base, csv_file: Path, *extra: str):
    return cli("predict", base.run, base.data / "light", "--csv", csv_file, "--device", "cpu", *extra)


def test_predict_resume_refuses_a_csv_that_is_not_this_runs(base, tmp_path) -> None:
    other = {
        "another run's classes": "path,label,p_cat,p_dog\nx.png,cat,0.9,0.1\n",
        "the classes in another order": "path,label,p_light,p_dark\nx.png,dark,0.1,0.9\n",
        "one class missing": "path,label,p_dark\nx.png,dark,1.0\n",
        "an evaluation's predictions.csv": (base.run / "predictions.csv").read_text(encoding="utf-8"),
        "a CSV of something else": "name,age\nada,36\n",
        "a header of one column": "path\nx.png\n",
        "binary": bytes(range(256)) * 8,
    }
    for i, (what, content) in enumerate(other.items()):
        target = tmp_path / f"other{i}.csv"
        replace_file(target, content)
        result = _predict(base, target, "--resume")
        if isinstance(content, bytes):
            error_line(result, str(target))  # not UTF-8: refused as a CSV at all
        else:
            error_line(result, str(target), "not a prediction CSV of this run", "this run writes path,label,p_dark")
        assert target.read_bytes() == (content if isinstance(content, bytes) else content.encode()), what
    # This run's own CSV resumes: the rows already there are kept, only the missing images are predicted.
    own = tmp_path / "own.csv"
    header = "path,label,p_dark,p_light\n"
    assert _predict(base, own).exit_code == 0
    lines = own.read_text(encoding="utf-8").splitlines(keepends=True)
    replace_file(own, "".join(lines[:2]))  # interrupted after one row; the record of its run is still beside it
    result = _predict(base, own, "--resume")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(own.read_text(encoding="utf-8"))))
    assert rows[0] == header.strip().split(",") and len(rows) == 1 + 6 and len({r[0] for r in rows}) == 7
    empty = tmp_path / "empty.csv"  # a CSV cut back to nothing (a kill during its first row): the header again
    replace_file(empty, "")
    assert _predict(base, empty, "--resume").exit_code == 0
    assert empty.read_text(encoding="utf-8").splitlines()[0] == header.strip()
    HOSTILE["foreign prediction CSVs"] = len(other) + 1


# ---------------------------------------------------------------------------------- 12: options and specs


def test_resume_validates_config_json_fully(base, tmp_path) -> None:
    saved = rundir.read_json(base.run / "config.json")
    cases = {
        "size (--size): must be at most": {"size": 12000},
        "size (--size): expected an integer": {"size": "16"},
        "unknown model 'no-such-net'": {"model": "no-such-net"},
        "model (--model): expected text": {"model": 7},
        "expected an object whose values are a list of text, got [1]": {"groups": [1]},
        "device (--device): 'quantum' is not auto": {"device_": None, "device": "quantum"},
        "trained with other options than": {"size": 20},  # valid, but not what the checkpoint was trained with
        "lr (--lr): must be more than 0": {"lr": -1},
        "unknown option(s) evil": {"evil": 1},
    }
    for i, (says, change) in enumerate(cases.items()):
        run = clone(base.run, tmp_path / f"case{i}")
        config = {**saved, **{k: v for k, v in change.items() if not k.endswith("_")}}
        replace_file(run / "config.json", json.dumps(config))
        result = cli("train", base.data, "--out", run, "--resume", "--epochs", "1", *TINY)
        if "device" in change:  # the device is how a run runs: the command line's own is used
            assert result.exit_code == 0, result.output
            continue
        error_line(result, str(run / "config.json"), says)
    HOSTILE["tampered config.json"] = len(cases)


def test_model_spec_rejects_wrong_types_field_by_field(base) -> None:
    good = rundir.read_json(base.run / "model.json")
    ModelSpec.from_dict(good)
    cases = {
        "classes must be a list of class names": {"classes": "dark,light"},
        "classes must be a list of class names ": {"classes": ["dark", 2]},
        "input_size must be [height, width]": {"input_size": [16]},
        "input_size must be [height, width] ": {"input_size": [16, "16"]},
        "input_size must be [height, width]  ": {"input_size": [16, True]},
        "kwargs must be an object of text": {"kwargs": {**good["kwargs"], "in_channels": {"x": 1}}},
        "kwargs must be an object of text ": {"kwargs": {**good["kwargs"], "scale": math.nan}},
        "tta must be true or false": {"tta": "yes"},
        "tta_shift must be an integer from 0 to 8": {"tta_shift": 9},
        "tta_shift must be an integer from 0 to 8 ": {"tta_shift": True},
        "tta_shift 1 needs tta": {"tta_shift": 1, "tta": False},
        "fit must be text": {"fit": ["crop"]},
        "color must be text or null": {"color": 3},
        "model must be a registered model name": {"model": ""},
        "image must be null or an object": {"image": {"width": 8, "height": 8}},
        "image must be null or an object ": {"image": {"width": 8, "height": 8, "channels": 1, "mode": 5}},
        "image must be null or an object  ": {"image": [8, 8, 1]},
    }
    for says, change in cases.items():
        with pytest.raises(RunError, match=rf"^model.json: {re.escape(says.strip())}"):
            ModelSpec.from_dict({**good, **change})
    HOSTILE["mistyped spec fields"] = len(cases)


# ---------------------------------------------------------------------------------- 12: fuzzed files

WRONG = [None, "text", -1, 1e308, 10**30, [], {}, True, [[["deep"]]], math.nan]
BROKEN = ("truncated", "empty", "not UTF-8", "a JSON list", "a JSON string", "null", "nested", "5,000-digit")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mapped(value: Any, leaf: Callable[[Any], Any], lists: Callable[[list], Any] = list) -> Any:
    if isinstance(value, dict):
        return {k: _mapped(v, leaf, lists) for k, v in value.items()}
    if isinstance(value, list):
        return lists([_mapped(v, leaf, lists) for v in value])
    return leaf(value)


def json_mutations(data: Any, per_key: int) -> dict[str, str | bytes]:
    """Tampered versions of one JSON file: broken files, odd values everywhere, each key mistyped or missing."""
    text = json.dumps(data, indent=2)
    cases: dict[str, str | bytes] = {
        "truncated": text[: len(text) // 2],
        "empty": "",
        "not UTF-8": b"\xff\xfe{\x00\x81}",
        "a JSON list": "[1, 2, 3]",
        "a JSON string": '"a run"',
        "null": "null",
        "nested 200,000 deep": "[" * 200_000 + "]" * 200_000,
        "nested 100 deep": '{"a": ' * 100 + "1" + "}" * 100,
        "a 5,000-digit number": '{"n": ' + "9" * 5000 + "}",
        "numbers as NaN strings": json.dumps(_mapped(data, lambda v: "NaN" if _number(v) else v)),
        "numbers NaN": json.dumps(_mapped(data, lambda v: math.nan if _number(v) else v)),
        "numbers infinite": json.dumps(_mapped(data, lambda v: -math.inf if _number(v) else v)),
        "numbers huge": json.dumps(
            _mapped(data, lambda v: (10**40 if isinstance(v, int) else 1e308) if _number(v) else v)
        ),
        "numbers negative": json.dumps(_mapped(data, lambda v: -v - 1 if _number(v) else v)),
        "text as numbers": json.dumps(_mapped(data, lambda v: 7 if isinstance(v, str) else v)),
        "lists as objects": json.dumps(_mapped(data, lambda v: v, lambda items: dict(enumerate(items)))),
    }
    if isinstance(data, dict):
        for i, key in enumerate(data):
            cases[f"without {key}"] = json.dumps({k: v for k, v in data.items() if k != key})
            for j in range(per_key):
                wrong = WRONG[(i + 3 * j) % len(WRONG)]
                cases[f"{key} = {json.dumps(wrong)[:20]}"] = json.dumps({**data, key: wrong})
    return cases


def csv_mutations(text: str) -> dict[str, str | bytes]:
    """Tampered versions of one CSV file: broken files, odd cells, each column missing."""
    rows = list(csv.reader(io.StringIO(text)))

    def written(table: list[list[str]]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(table)
        return buffer.getvalue()

    def cells(fn: Callable[[int, str], str]) -> str:
        return written([rows[0], *[[fn(i, c) for i, c in enumerate(r)] for r in rows[1:]]])

    odd = ["nan", "inf", "-inf", "1e999", "abc", "", "-0", "=1+1"]
    cases: dict[str, str | bytes] = {
        "truncated mid-row": text[: len(text) * 2 // 3].rstrip("\n"),
        "empty": "",
        "header only": written(rows[:1]),
        "no header": written(rows[1:]),
        "not UTF-8": b"path,label\n\xff\xfe\x81,x\n",
        "binary": bytes(range(256)) * 4,
        "NUL bytes": text.replace(",", "\x00", 3),
        "a 200,000-character cell": written([rows[0], ["x" * 200_000]]),
        "short rows": written([rows[0], *[r[:1] for r in rows[1:]]]),
        "long rows": written([rows[0], *[[*r, "extra", "cells"] for r in rows[1:]]]),
        "odd cells": cells(lambda i, c: odd[i % len(odd)] if i else c),
        "every cell odd": cells(lambda i, c: odd[i % len(odd)]),
        "another header": "a,b,c\n1,2,3\n",
    }
    for column, name in enumerate(rows[0]):
        cases[f"without column {name}"] = written([[c for i, c in enumerate(r) if i != column] for r in rows])
    return cases


def _commands(base, run: Path, tmp: Path) -> dict[str, list[str | Path]]:
    image = base.data / "dark" / "img_0.png"
    return {
        "report": ["report", run],
        "evaluate": ["evaluate", run, base.data, "--out", tmp / "evaluation", "--device", "cpu"],
        "predict": ["predict", run, image, "--csv", tmp / "p.csv", "--gallery", tmp / "p.png", "--device", "cpu"],
        "resume": ["train", base.data, "--out", run, "--resume", "--epochs", "1", *TINY],
    }


# file -> (the commands that read it, wrong values tried per key)
CLASSIFY_FILES = {
    "model.json": (("report", "evaluate", "predict"), 1),
    "config.json": (("report", "evaluate", "resume"), 1),
    "data_summary.json": (("report", "resume"), 2),
    "evaluation.json": (("report",), 3),
    "metrics.json": (("report",), 3),
    "checkpoint.json": (("resume",), 1),
    "history.csv": (("report",), 0),
    "predictions.csv": (("report",), 0),
    "predictions_unlabeled.csv": (("report",), 0),
}
FIELD_FILES = {"model.json": 2, "metrics.json": 3, "config.json": 1, "weights.json": 2, "history.csv": 0}


def _fuzz(base, source: Path, name: str, commands: tuple[str, ...], per_key: int, tmp: Path) -> int:
    """Every mutation of `name` through every command: exit 0 or one error line naming the file.

    A broken file (not JSON, not CSV, nested too deep) that a report goes on without must be named
    in its list of files that could not be shown."""
    path = source / name
    text = path.read_text(encoding="utf-8")
    cases = csv_mutations(text) if name.endswith(".csv") else json_mutations(json.loads(text), per_key)
    for i, (mutation, content) in enumerate(cases.items()):
        run = clone(source, tmp / f"case{i}")
        replace_file(run / name, content)
        for command, args in _commands(base, run, tmp / f"out{i}").items():
            if command not in commands:
                continue
            what = f"{name} {mutation} | {command}"
            result = cli(*args)
            no_traceback(result, what)
            if result.exit_code == 2:
                assert name in error_line(result), what
            elif command == "report" and mutation.startswith(BROKEN) and not name.endswith(".csv"):
                page = (run / "report.html").read_text(encoding="utf-8")
                assert "Files that could not be shown" in page and str(run / name) in page, what
        shutil.rmtree(run)
    return len(cases) * len(commands)


@pytest.mark.parametrize("name", CLASSIFY_FILES)
def test_every_tampered_file_of_a_classification_run(base, tmp_path, name: str) -> None:
    commands, per_key = CLASSIFY_FILES[name]
    HOSTILE[f"classify {name}"] = _fuzz(base, base.run, name, commands, per_key, tmp_path)
    assert HOSTILE[f"classify {name}"] >= 12


@pytest.mark.parametrize("name", FIELD_FILES)
def test_every_tampered_file_of_an_image_fit(base, tmp_path, name: str) -> None:
    HOSTILE[f"field {name}"] = _fuzz(base, base.fit, name, ("report",), FIELD_FILES[name], tmp_path)
    assert HOSTILE[f"field {name}"] >= 12


def test_the_untampered_report_lists_no_problem(base, tmp_path) -> None:
    run = clone(base.run, tmp_path / "run")
    assert cli("report", run).exit_code == 0
    assert "Files that could not be shown" not in (run / "report.html").read_text(encoding="utf-8")
