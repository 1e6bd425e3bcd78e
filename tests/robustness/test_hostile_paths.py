"""Hostile paths: files pixlearn owns that are symbolic links or FIFOs, outputs named as a device, a
FIFO, a folder or a link, two `predict` commands into one CSV, a resume onto another run's CSV or after
a row torn inside a quoted file name, and a run written into a folder of someone else's files.

Each must end with exit code 0 or one `error:` line naming the file and the reason (exit 2): nothing is
written through a link, no device or FIFO is replaced, no CSV holds rows of two models, and no file of
the person's is replaced or mixed into a run. /dev/null and /dev/full are used only as targets that must
be left alone, and are checked afterwards to be character devices still. Everything else is built here
from one tiny trained run and one tiny image fit, made once for the module.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training.loop import train
from pixlearn.core.storage import locks
from pixlearn.core.text import printable
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from tests.corpus import cli, error_line, make_class_folders, write_png
from tests.hostile import tried

TINY = ["--model", "airnet-small", "--size", "16", "--batch-size", "4", "--device", "cpu", "--color", "grayscale"]
PRECIOUS = "a file of the person's: pixlearn must never truncate or append to it\n"
LINKED = "is a symbolic link"
DEVICES = ("/dev/null", "/dev/full")
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, figures_off) -> SimpleNamespace:
    """A tiny finished classification run, a copy with other weights (same classes), an image fit, a
    .pxl file and a check directory."""
    root = tmp_path_factory.mktemp("hostile-paths")
    data = make_class_folders(root / "data")
    run = root / "run"
    config = TrainConfig(model="airnet-small", size=16, epochs=1, batch_size=4, color="grayscale", device="cpu")
    with figures_off():  # no test reads the run's or the fit's own figures (copy_run leaves them out)
        train(data, run, config)
        image = (np.indices((8, 8)).sum(0) * 16).astype(np.uint8)
        fit_image(image, root / "fit", FitConfig(model="seed-linear", steps=5, device="cpu"))
    pxl = root / "image.pxl"
    compressed = cli("compress", data / "dark/img_0.png", "-o", pxl, "--kb", "1", "--tune-steps", "0")
    assert compressed.exit_code == 0, compressed.output
    checked = cli("check", data, "--out", root / "check", "--embeddings", "pixels", "--size", "32", "--folds", "2")
    assert checked.exit_code == 0, checked.output
    return SimpleNamespace(
        root=root, data=data, run=run, other=other_weights(run, root / "other"), fit=root / "fit", pxl=pxl
    )


def copy_run(source: Path, target: Path) -> Path:
    """A copy of a run directory without its lock file and figures."""
    ignore = shutil.ignore_patterns(locks.LOCK_NAME, "figures", "*.png", "report.html")
    shutil.copytree(source, target, ignore=ignore)
    return target


def other_weights(run: Path, target: Path) -> Path:
    """A copy of `run` whose weights differ (the same classes, the same columns in a prediction CSV)."""
    copy_run(run, target)
    weights = target / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(weights))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = tensors[name] + 0.5
    weights.unlink()
    save_file(tensors, str(weights), metadata=metadata)
    return target


def is_device(path: str) -> bool:
    return stat.S_ISCHR(os.stat(path).st_mode)


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every name under `folder` (hidden ones included) with its bytes (None: a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


# ---------------------------------------------------------------------------------- 1: run files


@pytest.mark.usefixtures("no_figures")  # what is refused or written to a CSV is the subject
def test_a_run_file_that_is_a_link_or_a_fifo_is_refused_never_written_through(base, tmp_path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text(PRECIOUS, encoding="utf-8")
    run = copy_run(base.run, tmp_path / "run")
    lock = run / locks.LOCK_NAME
    writers = {
        "evaluate": ["evaluate", run, base.data, "--device", "cpu"],
        "predict into the run": ["predict", run, base.data / "light", "--csv", run / "p.csv", "--device", "cpu"],
        "train --overwrite": ["train", base.data, "--out", run, "--overwrite", *TINY],
    }
    for target, reason in ((precious, LINKED), (Path("/dev/full"), LINKED), (None, "not a regular file (a FIFO)")):
        lock.unlink(missing_ok=True)
        if target is None:
            os.mkfifo(lock)
        else:
            lock.symlink_to(target)
        for what, args in writers.items():
            error_line(cli(*args), str(lock), reason)
            assert not (run / "p.csv").exists(), what
    lock.unlink()
    lock.symlink_to(precious)  # export writes RUN/model.onnx once its check has passed: then it takes the lock
    error_line(cli("export", run), str(lock), LINKED)
    lock.unlink()

    # log.txt of a run being resumed, of a fit being overwritten and of a check directory being overwritten
    (run / "metrics.json").unlink()  # an interrupted run: resumable
    fit = copy_run(base.fit, tmp_path / "fit")
    check = shutil.copytree(base.root / "check", tmp_path / "check", ignore=shutil.ignore_patterns(locks.LOCK_NAME))
    logged = {
        run: ["train", base.data, "--out", run, "--resume", "--epochs", "2", *TINY],
        fit: ["fit", base.data / "dark/img_0.png", "--out", fit, "--overwrite", "--steps", "2", "--device", "cpu"],
        check: ["check", base.data, "--out", check, "--overwrite", "--embeddings", "pixels", "--size", "32"],
    }
    for folder, args in logged.items():
        log = folder / "log.txt"
        log.unlink(missing_ok=True)
        log.symlink_to(precious)
        error_line(cli(*args), str(log), LINKED)
    assert precious.read_text(encoding="utf-8") == PRECIOUS
    assert is_device("/dev/full")
    tried("run files that are links or FIFOs", 3 * len(writers) + 1 + len(logged))


# ---------------------------------------------------------------------------------- 2: outputs


def _special(kind: str, path: Path) -> Path:
    """`path` made a FIFO or a folder holding a file, or the device `kind` itself."""
    if kind in DEVICES:
        return Path(kind)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
        (path / "kept.txt").write_text(PRECIOUS, encoding="utf-8")
    return path


def _still_there(kind: str, path: Path) -> bool:
    if kind in DEVICES:
        return is_device(kind)
    if kind == "fifo":
        return stat.S_ISFIFO(os.lstat(path).st_mode)
    return (path / "kept.txt").read_text(encoding="utf-8") == PRECIOUS


@pytest.mark.parametrize("kind", ["fifo", "folder", *DEVICES])
def test_an_output_that_is_a_device_a_fifo_or_a_folder_is_left_alone(base, tmp_path, kind: str) -> None:
    if kind in DEVICES and not (os.path.exists(kind) and is_device(kind)):
        pytest.skip(f"no {kind} here")
    reason = {"fifo": "not a regular file (a FIFO)", "folder": "is a directory"}.get(kind, "a character device")
    ok = tmp_path / "ok"
    ok.mkdir()
    image = base.data / "dark/img_0.png"
    commands = {
        "predict --csv": lambda t: ["predict", base.run, base.data, "--csv", t, "--gallery", ok / "g.png"],
        "predict --gallery": lambda t: ["predict", base.run, base.data, "--csv", ok / "p.csv", "--gallery", t],
        "render --out": lambda t: ["render", base.fit, "--out", t],
        "compress -o": lambda t: ["compress", image, "-o", t, "--kb", "1", "--tune-steps", "0"],
        "decompress -o": lambda t: ["decompress", base.pxl, "-o", t],
    }
    for i, (what, args) in enumerate(commands.items()):
        target = _special(kind, tmp_path / f"out{i}")
        device = ["--device", "cpu"] if what.startswith("predict") else []
        error_line(cli(*args(target), *device), str(target), reason)
        assert _still_there(kind, target), what
    assert not list(ok.iterdir())  # refused before any work: no CSV, no gallery, nothing beside them
    if kind in DEVICES:
        assert not os.path.lexists(f"/dev/.{Path(kind).name}.pixlearn.lock")
    tried("outputs that are devices, FIFOs or folders", len(commands))


def test_an_output_named_by_a_link_replaces_the_link_and_a_resume_never_appends_through_it(base, tmp_path) -> None:
    # The documented choice (core.storage.files): an output is renamed over its path, so a link there is
    # replaced by the new file and what it pointed to is left as it was; appending never follows a link.
    precious = tmp_path / "precious.csv"
    precious.write_text(PRECIOUS, encoding="utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(precious)
    written = cli("predict", base.run, base.data / "light", "--csv", link, "--device", "cpu")
    assert written.exit_code == 0, written.output
    assert not link.is_symlink() and csv_rows(link)[0][:2] == ["path", "label"]
    assert precious.read_text(encoding="utf-8") == PRECIOUS

    own = tmp_path / "own.csv"  # a CSV of this run, resumed through a link to it
    assert cli("predict", base.run, base.data / "light", "--csv", own, "--device", "cpu").exit_code == 0
    before = own.read_bytes()
    resumed_link = tmp_path / "resumed.csv"
    resumed_link.symlink_to(own)
    resumed = cli("predict", base.run, base.data, "--csv", resumed_link, "--resume", "--device", "cpu")
    error_line(resumed, str(resumed_link), LINKED)
    assert own.read_bytes() == before
    tried("outputs that are links", 2)


# ---------------------------------------------------------------------------------- 6: prediction CSVs


HOLDER = """
import sys
from pixlearn.classify.config import PredictConfig
from pixlearn.classify.inference import prediction

run, images, out = sys.argv[1:4]
original = prediction.Predictor.probabilities
calls = []


def paused(self, batch):
    calls.append(1)
    if len(calls) == 2:  # the first chunk's rows are in the CSV: wait here until told to go on
        print("writing", flush=True)
        sys.stdin.readline()
    return original(self, batch)


prediction.Predictor.probabilities = paused
prediction.CHUNK = 2
prediction.predict(run, [images], out, PredictConfig(device="cpu"), progress=False)
print("done", flush=True)
"""


@pytest.mark.usefixtures("no_figures")
def test_two_predicts_into_one_csv_never_mix_their_rows(base, tmp_path) -> None:
    images = base.data / "light"
    out = tmp_path / "p.csv"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(base.run), str(images), str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # this process's thread count, so that its rows and the ones predicted here sum in one order
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    try:
        assert holder.stdout.readline().strip() == "writing"  # EOF (a crashed holder) fails here, never hangs
        second = cli("predict", base.other, images, "--csv", out, "--gallery", tmp_path / "g.png", "--device", "cpu")
        error_line(second, str(out), f"is being written by another pixlearn process (pid {holder.pid})")
        holder.stdin.write("go on\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "done"
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
    alone = tmp_path / "alone.csv"
    assert cli("predict", base.run, images, "--csv", alone, "--device", "cpu").exit_code == 0
    assert csv_rows(out) == csv_rows(alone)  # the first model's rows alone, each once
    tried("competing prediction CSVs", 1)


@pytest.mark.usefixtures("no_figures")
def test_resume_refuses_a_csv_of_other_weights_or_of_no_known_run(base, tmp_path) -> None:
    images = base.data / "light"
    theirs = tmp_path / "theirs.csv"
    assert cli("predict", base.other, images, "--csv", theirs, "--device", "cpu").exit_code == 0
    lines = theirs.read_text(encoding="utf-8").splitlines(keepends=True)
    theirs.write_text("".join(lines[:3]), encoding="utf-8")  # interrupted after two rows
    before = theirs.read_bytes()
    resumed = cli("predict", base.run, images, "--csv", theirs, "--resume", "--device", "cpu")
    error_line(resumed, str(theirs), f"written by the run {base.other}", f"not by {base.run}", "SHA-256")
    assert theirs.read_bytes() == before

    unknown = tmp_path / "unknown.csv"  # this run's columns, written by hand: no record of its run
    unknown.write_text(f"path,label,p_dark,p_light\n{printable(str(images / 'img_0.png'))},light,0.1,0.9\n")
    before = unknown.read_bytes()
    resumed = cli("predict", base.run, images, "--csv", unknown, "--resume", "--device", "cpu")
    error_line(resumed, str(unknown), "no record of the run that wrote it")
    assert unknown.read_bytes() == before
    tried("prediction CSVs of other weights or of no known run", 2)


@pytest.mark.usefixtures("no_figures")
def test_resume_after_a_row_torn_inside_a_quoted_file_name_predicts_that_file_once(base, tmp_path) -> None:
    images = tmp_path / "new"
    for i in range(3):
        write_png(images / f"img_{i}.png", 40 + 80 * i, seed=i)
    write_png(images / "torn\nrow.png", 200, seed=9)  # a name holding a newline: a quoted cell across two lines
    out = tmp_path / "p.csv"
    assert cli("predict", base.run, images, "--csv", out, "--device", "cpu").exit_code == 0
    whole = csv_rows(out)
    text = out.read_text(encoding="utf-8")
    out.write_text(text[: text.index("torn\nrow.png") + len("torn\nr")], encoding="utf-8")  # killed mid-row
    resumed = cli("predict", base.run, images, "--csv", out, "--resume", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert csv_rows(out) == whole  # each file once, none glued to the torn row
    tried("torn prediction rows", 1)


# ---------------------------------------------------------------------------------- a foreign --out folder


@pytest.mark.usefixtures("no_figures")
def test_a_run_is_never_written_into_a_folder_of_someone_elses_files(base, tmp_path) -> None:
    folder = tmp_path / "my-models"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(b"\xff\xd8 not pixlearn's")
    (folder / "config.json").write_text('{"model_type": "bert"}\n', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"another tool's weights")
    before = snapshot(folder)
    image = base.data / "dark/img_0.png"
    fitting = ["--steps", "2", "--device", "cpu"]
    writers = [
        ["train", base.data, "--out", folder, "--epochs", "1", *TINY],
        ["train", base.data, "--out", folder, "--overwrite", "--epochs", "1", *TINY],
        ["fit", image, "--out", folder, "--overwrite", *fitting],
        ["compare", image, "--out", folder, "--overwrite", "--models", "seed-linear", *fitting],
    ]
    for args in writers:
        error_line(cli(*args), str(folder), "is not a pixlearn run directory")
        assert snapshot(folder) == before  # not even a lock file is left behind
    tried("foreign output folders", len(writers))
