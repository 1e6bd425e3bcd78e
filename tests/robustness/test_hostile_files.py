"""Hostile files and faults: FIFOs, sockets and devices named like data, unreadable folders, a full
disk, and fuzzed images. Each must give a skipped entry or one `error:` line naming the file; no
hang, no traceback, and the previous checkpoint kept.

Everything is built here: FIFOs with os.mkfifo, sockets bound on AF_UNIX paths, PermissionError and
ENOSPC injected by monkeypatching (CI runs as root, where chmod 000 does not bite and no file system
can be filled on demand). Anything that could block runs under a watchdog that unblocks it, so a
regression fails instead of hanging the suite.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import SafetensorError

from pixlearn.classify.data.folders import find_image_files, read_label_csv
from pixlearn.classify.inference import prediction
from pixlearn.core.errors import DataError, ImageError, PixlearnError, RunError
from pixlearn.core.imaging.images import decode_image, open_image
from pixlearn.core.storage import checkpoints, rundir, weights
from pixlearn.core.storage import weights as weights_module
from pixlearn.field.coords import load_table
from pixlearn.field.image import load_field_image
from pixlearn.report.parts import gather_log
from tests.corpus import cli, error_line, fake_run, make_class_folders, write_png
from tests.hostile import tried

TINY = ["--model", "airnet-small", "--size", "16", "--batch-size", "4", "--device", "cpu", "--color", "grayscale"]
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once")
WATCHDOG_S = 120.0  # a guard against hanging for ever, not a timing threshold: the commands take seconds


def squashed(text: str) -> str:
    """`text` without whitespace: the console wraps long paths at its own width."""
    return "".join(text.split())


# ---------------------------------------------------------------------------------- FIFOs, sockets, devices


def _unblock(fifos: list[Path]) -> None:
    # A reader blocked in open() on a FIFO returns once a writer opens it; closing at once gives it EOF.
    for fifo in fifos:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def guarded(fn: Callable[[], object], fifos: list[Path]) -> object:
    """Run fn in a thread; if it is still running after WATCHDOG_S (blocked on a FIFO), unblock it and fail."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WATCHDOG_S)
    if thread.is_alive():
        for _ in range(20):  # the command may open several of them in turn
            _unblock(fifos)
            thread.join(1.0)
            if not thread.is_alive():
                break
        pytest.fail(f"hung on a FIFO: {[str(f) for f in fifos]}")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


@contextlib.contextmanager
def unix_socket(path: Path) -> Iterator[Path]:
    """A bound AF_UNIX socket at `path` (bound relative to its folder: AF_UNIX paths are short)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    try:
        os.chdir(path.parent)
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
    try:
        yield path
    finally:
        sock.close()


def hostile_tree(root: Path, stack: contextlib.ExitStack) -> tuple[Path, list[Path]]:
    """dark/light class folders plus a FIFO, a socket and a link to /dev/null named like images,
    and a symbolic link to a regular image elsewhere (which must be used)."""
    data = make_class_folders(root / "data", per_class=4)
    fifo = data / "dark" / "x.png"
    os.mkfifo(fifo)
    stack.enter_context(unix_socket(data / "light" / "s.png"))
    os.symlink("/dev/null", data / "light" / "null.png")
    real = write_png(root / "elsewhere" / "real.png", 200, seed=7)
    os.symlink(real, data / "light" / "link.png")
    return data, [fifo]


EXPECTED_SKIPS = {
    "x.png": "not a regular file (a FIFO)",
    "s.png": "not a regular file (a socket)",
    "null.png": "not a regular file (a character device)",
}


def _skips(entries) -> dict[str, str]:
    return {Path(e["path"]).name: e["reason"] for e in entries}


@pytest.mark.usefixtures("no_figures")  # what is skipped is the subject, not the figures of what is not
def test_fifo_socket_and_device_in_class_folders_are_skipped_by_train_evaluate_predict(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        data, fifos = hostile_tree(tmp_path, stack)
        out = tmp_path / "run"
        trained = guarded(lambda: cli("train", data, "--out", out, "--epochs", "1", *TINY), fifos)
        assert trained.exit_code == 0, trained.output
        summary = rundir.read_json(out / "data_summary.json")
        assert _skips(summary["skipped"]) == EXPECTED_SKIPS
        assert sum(summary["images"].values()) == 4 + 4 + 1  # the symlinked image is used
        assert f"skipped {fifos[0]}: not a regular file (a FIFO)" in (out / "log.txt").read_text(encoding="utf-8")
        assert squashed(f"{fifos[0]}: not a regular file (a FIFO)") in squashed(trained.output)

        evaluated = guarded(lambda: cli("evaluate", out, data, "--out", tmp_path / "ev", "--device", "cpu"), fifos)
        assert evaluated.exit_code == 0, evaluated.output
        assert _skips(rundir.read_json(tmp_path / "ev" / "evaluation.json")["skipped"]) == EXPECTED_SKIPS

        predicted = guarded(lambda: cli("predict", out, data, fifos[0], "--csv", tmp_path / "p.csv"), fifos)
        assert predicted.exit_code == 0, predicted.output
        assert squashed(predicted.output).count(squashed(f"skipped {fifos[0]}: not a regular file (a FIFO)")) == 2
        for name, reason in EXPECTED_SKIPS.items():
            assert squashed(f"{name}: {reason}") in squashed(predicted.output)
        rows = rundir.read_csv(tmp_path / "p.csv")
        assert len(rows) == 9 and "link.png" in {Path(r["path"]).name for r in rows}


def _replace_with_fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name", ["model.safetensors", "model.json"])
def test_predict_refuses_a_fifo_in_the_run(tmp_path: Path, name: str) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    fifo = _replace_with_fifo(run / name)
    image = write_png(tmp_path / "new.png", 30)
    result = guarded(lambda: cli("predict", run, image, "--csv", tmp_path / "p.csv", "--device", "cpu"), [fifo])
    error_line(result, str(fifo), "not a regular file (a FIFO)")
    tried("special files in place of run files")


@pytest.mark.usefixtures("no_figures")
def test_resume_refuses_fifo_checkpoint_and_label_csv(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    out = tmp_path / "run"
    first = cli("train", data, "--out", out, "--epochs", "2", *TINY)
    assert first.exit_code == 0, first.output
    (out / "metrics.json").unlink()  # an interrupted run: resumable
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        saved = (out / name).read_bytes()
        fifo = _replace_with_fifo(out / name)
        result = guarded(lambda: cli("train", data, "--out", out, "--resume", "--epochs", "3", *TINY), [fifo])
        error_line(result, str(fifo), "not a regular file (a FIFO)")
        fifo.unlink()
        (out / name).write_bytes(saved)
    labels = _replace_with_fifo(tmp_path / "labels.csv")
    result = guarded(lambda: cli("train", labels, "--out", tmp_path / "csv-run", "--epochs", "1", *TINY), [labels])
    error_line(result, str(labels), "not a regular file (a FIFO)")


def _api_readers(tmp_path: Path) -> dict[str, Callable[[Path], object]]:
    run_dir = rundir.RunDir(tmp_path / "somerun")
    return {
        "read_json": rundir.read_json,
        "read_csv": rundir.read_csv,
        "read_weights": weights.read_weights,
        "read_label_csv": read_label_csv,
        "resume csv": lambda p: prediction._done_paths(p, ["path", "label"]),
        "load_table": load_table,
        "open_image": open_image,
        "decode_image": decode_image,
        "load_field_image": load_field_image,
        "log.txt": lambda p: rundir.RunDir(p.parent).log("hello"),
        "report log": lambda p: gather_log(run_dir),
    }


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_every_reader_refuses_non_regular_files(tmp_path: Path, kind: str) -> None:
    readers = _api_readers(tmp_path)
    tried("special files given to each reader", len(readers))
    with contextlib.ExitStack() as stack:
        for name, read in readers.items():
            folder = tmp_path / ("somerun" if name == "report log" else name.replace(" ", "_"))
            folder.mkdir()
            path = folder / ("log.txt" if "log" in name else "file.csv")
            if kind == "fifo":
                os.mkfifo(path)
            elif kind == "socket":
                stack.enter_context(unix_socket(path))
            else:
                os.symlink("/dev/zero", path)
            with pytest.raises(PixlearnError) as caught:
                guarded(lambda read=read, path=path: read(path), [path] if kind == "fifo" else [])
            what = {"fifo": "a FIFO", "socket": "a socket", "device": "a character device"}[kind]
            if kind == "device" and name == "log.txt":  # a writer: the link itself is refused, never followed
                assert str(caught.value) == f"{path}: is a symbolic link (pixlearn never writes through one)"
            else:
                assert str(caught.value) == f"{path}: not a regular file ({what})", name


# ---------------------------------------------------------------------------------- unreadable folders


def deny_listing(monkeypatch, folder: Path) -> None:
    """os.scandir (what os.walk lists with) fails for `folder` as it would for chmod 000 as a user."""
    real = os.scandir

    def scandir(path=".", *args, **kwargs):
        if isinstance(path, str | bytes | os.PathLike) and Path(os.fsdecode(path)) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.usefixtures("no_figures")
def test_unreadable_subfolder_is_named_in_the_skipped_list(tmp_path: Path, monkeypatch) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    hidden = data / "light" / "more"
    write_png(hidden / "img_x.png", 200)
    deny_listing(monkeypatch, hidden)
    assert find_image_files(data) == find_image_files(data, [])  # the list argument is optional
    out = tmp_path / "run"
    result = cli("train", data, "--out", out, "--epochs", "1", *TINY)
    assert result.exit_code == 0, result.output
    skipped = rundir.read_json(out / "data_summary.json")["skipped"]
    assert [(s["path"], s["reason"]) for s in skipped] == [(str(hidden), "folder not read (permission denied)")]
    predicted = cli("predict", out, data, "--csv", tmp_path / "p.csv")
    assert predicted.exit_code == 0, predicted.output
    assert squashed(f"skipped {hidden}: folder not read (permission denied)") in squashed(predicted.output)
    evaluated = cli("evaluate", out, data, "--out", tmp_path / "ev", "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert str(hidden) in {s["path"] for s in rundir.read_json(tmp_path / "ev" / "evaluation.json")["skipped"]}


def test_unreadable_class_folder_and_root_are_errors(tmp_path: Path, monkeypatch) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    deny_listing(monkeypatch, data / "light")
    result = cli("train", data, "--out", tmp_path / "run", "--epochs", "1", *TINY)
    error_line(result, "light (folder not read (permission denied))")
    deny_listing(monkeypatch, data)
    with pytest.raises(DataError, match="cannot read the folder"):
        find_image_files(data)
    error_line(cli("train", data, "--out", tmp_path / "run", "--epochs", "1", *TINY), str(data), "permission denied")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root lists folders whatever their mode")
def test_unreadable_subfolder_for_real(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=2)
    hidden = data / "light" / "more"
    write_png(hidden / "img_x.png", 200)
    hidden.chmod(0)
    try:
        skipped: list[tuple[str, str]] = []
        assert len(find_image_files(data, skipped)) == 4
        assert skipped == [(str(hidden), "folder not read (permission denied)")]
    finally:
        hidden.chmod(0o755)


# ---------------------------------------------------------------------------------- a full disk

ENOSPC_TEXT = "Error while serializing: I/O error: No space left on device (os error 28)"


def _fail_on_call(monkeypatch, module, name: str, call: int, exc: BaseException) -> None:
    """module.name raises `exc` on its `call`-th call (1-based), as a disk filling up would."""
    real = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _fail_writing(monkeypatch, name: str, nth: int, exc: BaseException) -> None:
    """The `nth` write of file `name` through runs' write helpers (into its temporary file) raises `exc`."""
    real = rundir.write_into
    calls = {"n": 0}

    def wrapper(tmp: Path, data: bytes) -> None:
        if Path(tmp).name.startswith(f".{name}."):
            calls["n"] += 1
            if calls["n"] == nth:
                raise exc
        real(tmp, data)

    monkeypatch.setattr(rundir, "write_into", wrapper)


def _checkpoint_state(out: Path) -> tuple[int, bytes, bytes]:
    meta = rundir.read_json(out / "checkpoint.json")
    weights.read_weights(out / "checkpoint.safetensors")  # loads
    return len(meta["history"]), (out / "checkpoint.json").read_bytes(), (out / "checkpoint.safetensors").read_bytes()


@pytest.mark.usefixtures("no_figures")  # the checkpoint's files are the subject
@pytest.mark.parametrize(
    "where",
    ["save_file", "checkpoint json", "history csv"],
)
def test_full_disk_while_training_is_one_error_line_and_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch, where: str
) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    out = tmp_path / "run"
    snapshots: list[tuple[int, bytes, bytes]] = []
    real_save = checkpoints.save_checkpoint

    def save_and_snapshot(run, *args, **kwargs):
        real_save(run, *args, **kwargs)
        snapshots.append(_checkpoint_state(run.path))

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_and_snapshot)
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    if where == "save_file":  # epoch 2's checkpoint weights (call 1 is epoch 1's)
        _fail_on_call(monkeypatch, checkpoints, "save_file", 2, SafetensorError(ENOSPC_TEXT))
        named = out / "checkpoint.safetensors"
    elif where == "checkpoint json":
        _fail_writing(monkeypatch, "checkpoint.json", 2, disk_full)
        named = out / "checkpoint.json"
    else:
        _fail_writing(monkeypatch, "history.csv", 2, disk_full)
        named = out / "history.csv"
    result = cli("train", data, "--out", out, "--epochs", "3", *TINY)
    error_line(result, str(named), "o space left on")
    assert len(snapshots) == 1 and snapshots[0][0] == 1
    assert _checkpoint_state(out) == snapshots[0]  # epoch 1's checkpoint, byte for byte, still loading
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    resumed = cli("train", data, "--out", out, "--resume", "--epochs", "3", *TINY)
    assert resumed.exit_code == 0, resumed.output
    assert len(rundir.read_json(out / "checkpoint.json")["history"]) == 3


def test_full_disk_when_saving_the_model_or_creating_a_temporary_file(tmp_path: Path, monkeypatch) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    weights = (run / "model.safetensors").read_bytes()
    _fail_on_call(monkeypatch, weights_module, "save_file", 1, SafetensorError(ENOSPC_TEXT))
    with pytest.raises(RunError, match="model.safetensors: cannot write the file .*No space left"):
        fake_run(run, ["dark", "light"])
    assert (run / "model.safetensors").read_bytes() == weights
    _fail_on_call(monkeypatch, rundir.tempfile, "mkstemp", 1, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(RunError, match=r"metrics.json: cannot write the file \(no space left on the device\)"):
        rundir.write_json(run / "metrics.json", {})
    _fail_on_call(monkeypatch, rundir, "open_data_file", 1, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(RunError, match=r"log.txt: cannot write the file \(no space left on the device\)"):
        rundir.RunDir(run).log("hello")


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.usefixtures("no_figures")
def test_full_disk_while_predicting_is_one_error_line(tmp_path: Path, monkeypatch) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    images = make_class_folders(tmp_path / "new", per_class=2)
    target = tmp_path / "p.csv"
    real_open = prediction.open_data_file

    def appending_fails(path, mode="rb", **kwargs):
        return _FullDisk() if mode == "a" else real_open(path, mode, **kwargs)

    monkeypatch.setattr(prediction, "open_data_file", appending_fails)
    result = cli("predict", run, images, "--csv", target, "--device", "cpu")
    error_line(result, str(target), "no space left on the device")
    assert target.read_text(encoding="utf-8").splitlines() == ["path,label,p_dark,p_light"]
    _fail_writing(monkeypatch, "q.csv", 1, OSError(errno.ENOSPC, "No space left on device"))
    error_line(cli("predict", run, images, "--csv", tmp_path / "q.csv"), str(tmp_path / "q.csv"), "no space left")
    monkeypatch.undo()
    resumed = cli("predict", run, images, "--csv", target, "--resume", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert len(rundir.read_csv(target)) == 4


# ---------------------------------------------------------------------------------- truncated GIFs


def _animated_gif(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    frames = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _pillow_error(data: bytes) -> BaseException | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
    except Exception as exc:  # noqa: BLE001 - what raw Pillow raises is the point
        return exc
    return None


def test_truncated_gif_that_makes_pillow_raise_index_error(tmp_path: Path) -> None:
    data = _animated_gif()
    cut = next(n for n in range(len(data) // 3, len(data)) if isinstance(_pillow_error(data[:n]), IndexError))
    path = tmp_path / "cut.gif"
    path.write_bytes(data[:cut])
    for decode in (decode_image, load_field_image, lambda p: decode_image(p, "rgb", (8, 8))):
        with pytest.raises(ImageError) as caught:
            decode(path)
        assert caught.value.source == str(path) and "IndexError" in caught.value.reason
    with pytest.raises(ImageError, match=r"^<bytes>: .*IndexError"):
        load_field_image(data[:cut])
    error_line(cli("table", path, "--csv", tmp_path / "t.csv"), str(path), "IndexError")
    error_line(cli("fit", path, "--out", tmp_path / "fit", "--steps", "1"), str(path), "IndexError")
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "fit").exists()


# ---------------------------------------------------------------------------------- the fuzz test

FUZZ_SEED = 20240617
MUTATIONS_PER_FORMAT = 50
FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "webp": "WEBP", "tif": "TIFF", "bmp": "BMP"}
EXPECTED_HOSTILE_INPUTS = 298  # distinct mutated files FUZZ_SEED gives (identical ones are decoded once)


def _base_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:24, 0:32]
    arr = np.stack([x * 8, y * 10, (x + y) * 4], axis=2) + rng.integers(0, 30, (24, 32, 3))
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    out = {}
    for suffix, fmt in FORMATS.items():
        buffer = io.BytesIO()
        if fmt == "GIF":
            image.convert("P").save(buffer, fmt, save_all=True, append_images=[image.rotate(90).convert("P")])
        elif fmt == "TIFF":
            image.save(buffer, fmt, compression="tiff_lzw")
        else:
            image.save(buffer, fmt)
        out[suffix] = buffer.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: bit flips, a truncation, an inserted or a removed byte run, a header field overwrite."""
    buf = bytearray(data)
    kind = int(rng.integers(0, 5))
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            bit = int(rng.integers(0, len(buf) * 8))
            buf[bit // 8] ^= 1 << (bit % 8)
    elif kind == 1:
        del buf[int(rng.integers(0, len(buf))) :]
    elif kind == 2:
        at = int(rng.integers(0, len(buf) + 1))
        buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    elif kind == 3:
        at = int(rng.integers(0, len(buf)))
        del buf[at : at + int(rng.integers(1, 65))]
    else:  # width, height, lengths, offsets: the first 64 bytes, with extreme or random values
        at = int(rng.integers(0, min(64, len(buf) - 4)))
        value = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"][int(rng.integers(0, 3))]
        buf[at : at + 4] = value if rng.random() < 0.6 else rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(buf)


def hostile_inputs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(FUZZ_SEED)
    seen: set[bytes] = set()
    paths = []
    for suffix, data in _base_images().items():
        seen.add(data)
        for i in range(MUTATIONS_PER_FORMAT):
            mutated = mutate(data, rng)
            if mutated in seen:
                continue
            seen.add(mutated)
            path = folder / f"{suffix}_{i:03d}.{suffix}"
            path.write_bytes(mutated)
            paths.append(path)
    return paths


# Runs in a child process: each call under signal.alarm (a hang names its file), the whole loop under
# subprocess's timeout (a hang inside C code that never returns to Python). Prints one JSON line a call.
FUZZ_CHILD = r"""
import json, signal, sys
from pixlearn.core.imaging.images import decode_image, pixel_limit
from pixlearn.field.image import load_field_image

class Hang(Exception):
    pass

def alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, alarm)
calls = {
    "decode_rgb": lambda p: decode_image(p, "rgb", (24, 32)),
    "decode_auto": lambda p: decode_image(p),
    "field_auto": lambda p: load_field_image(p).pixels,
}
with pixel_limit(1_000_000):
    for path in sys.argv[1:]:
        for name, call in calls.items():
            signal.alarm(60)
            try:
                arr = call(path)
                row = {"ok": True, "shape": list(arr.shape), "dtype": str(arr.dtype)}
            except Hang:
                row = {"ok": False, "type": "Hang", "message": ""}
            except Exception as exc:
                source = getattr(exc, "source", None)
                row = {"ok": False, "type": type(exc).__name__, "message": str(exc), "source": source}
            finally:
                signal.alarm(0)
            print(json.dumps({"path": path, "call": name, **row}), flush=True)
"""


def test_fuzzed_images_fail_only_with_image_error_naming_the_file(tmp_path: Path) -> None:
    paths = hostile_inputs(tmp_path)
    n = len(paths)
    print(f"hostile inputs: {n} (seed {FUZZ_SEED})")
    tried("mutated PNG/JPEG/GIF/WebP/TIFF/BMP files", n)
    assert n == EXPECTED_HOSTILE_INPUTS
    done = subprocess.run(
        [sys.executable, "-c", FUZZ_CHILD, *map(str, paths)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 3 * n
    failures = [r for r in rows if not r["ok"]]
    strays = [r for r in failures if r["type"] != "ImageError" or r["source"] != r["path"]]
    assert not strays, strays[:5]
    assert all(r["message"].startswith(r["path"] + ": ") for r in failures)
    by_file: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_file.setdefault(r["path"], {})[r["call"]] = r
        if r["ok"]:
            assert r["dtype"] == "uint8" and len(r["shape"]) == 3 and min(r["shape"]) >= 1, r
    for calls in by_file.values():
        rgb, auto, field = calls["decode_rgb"], calls["decode_auto"], calls["field_auto"]
        if rgb["ok"]:
            assert rgb["shape"] == [24, 32, 3]
        if auto["ok"]:
            assert auto["shape"][2] in (1, 3)
        if field["ok"]:
            assert field["shape"][2] in (1, 3, 4)
        if auto["ok"] and field["ok"]:
            assert auto["shape"][:2] == field["shape"][:2]
    # The mutations break every format, and some still decode (PNG's CRCs refuse every change).
    for suffix in FORMATS:
        assert any(not r["ok"] for r in rows if Path(r["path"]).suffix == f".{suffix}"), suffix
    assert len(failures) < len(rows)
    print(f"fuzz: {len(failures)} ImageErrors, {len(rows) - len(failures)} decoded, of {len(rows)} calls")


def test_fuzz_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = [(p.name, p.read_bytes()) for p in hostile_inputs(tmp_path / "a")]
    second = [(p.name, p.read_bytes()) for p in hostile_inputs(tmp_path / "b")]
    assert first == second


def test_label_csv_and_resume_csv_that_are_not_utf8_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_bytes(b"path,label\n\xff\xfe.png,cat\n")
    with pytest.raises(DataError, match="labels.csv: not a valid UTF-8 CSV file"):
        read_label_csv(bad)
    with pytest.raises(RunError, match="labels.csv: not a valid UTF-8 CSV file"):
        rundir.read_csv(bad)
    with pytest.raises(RunError, match="labels.csv: not a valid UTF-8 CSV file to resume"):
        prediction._done_paths(bad, ["path", "label"])
