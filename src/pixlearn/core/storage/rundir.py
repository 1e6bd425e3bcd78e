"""The run directory: the one on-disk format shared by classification and image-fitting runs.

    runs/NAME/
      config.json           resolved options of the run (everything needed to repeat it)
      model.safetensors     weights                  } written together at the end;
      model.json            spec: registry name,     } loading reads only these two files and
                            constructor kwargs, ...  } never unpickles or executes anything
      checkpoint.safetensors / checkpoint.json       every epoch, for --resume (one unit: core.storage.checkpoints)
      history.csv           one row per epoch (or logged step)
      metrics.json          final figures; its presence marks the run complete
      data_summary.json     classification: images per class and split, sizes, skipped files
      skipped.csv           files that could not be used, with the reason
      log.txt               what the run printed, with times
      figures/*.png         every figure
      report.html           everything above in one page
      .pixlearn.lock        held by the one process writing the run (core.storage.locks)

Every file is written to a temporary name and renamed, so a crash never leaves half a file, and a
write that fails (a full disk) is a RunError naming the file, with the file already there kept.
Every file is read through `core.storage.files` (regular files only: a FIFO is refused, not waited on).
Each JSON file, and each row of history.csv, is written and read as its typed record
(`core.storage.records`, `classify_records`, `field_records`; model.json: `core.storage.spec`).

A model's own files (weights and spec) are written and read by `core.storage.weights`; loading a
model needs the registry: `pixlearn.models.loading.load_model`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from pixlearn.core.errors import RunError
from pixlearn.core.storage import locks
from pixlearn.core.storage.files import ErrorFactory, check_output, open_data_file, os_reason, run_error
from pixlearn.core.storage.integrity import too_deep
from pixlearn.core.text import csv_cell, log_text, printable

MAX_JSON_DEPTH = 64  # nesting a run's JSON file may have: deeper is refused, never recursed into


# ---------------------------------------------------------------------------------- atomic writes


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_error(path: str | os.PathLike, exc: OSError | SafetensorError) -> RunError:
    """The one-line error for a file that could not be written (a full disk, a read-only folder)."""
    reason = os_reason(exc) if isinstance(exc, OSError) else str(exc)
    return RunError(f"{path}: cannot write the file ({reason})")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` in one step.

    An OSError or SafetensorError while writing it becomes a RunError naming `path` (no traceback
    for a full disk); the temporary file is removed and a `path` already there is left as it was.
    A `path` holding a device, a FIFO or a directory is refused before and again just before the
    rename (`files.check_output`); a symbolic link there is replaced by the file, its target left alone.
    """
    path = Path(path)
    check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        check_output(path)  # made a FIFO or device since the start: the rename would replace it
        os.replace(tmp_path, path)
    except (OSError, SafetensorError) as exc:
        raise write_error(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):  # the error to report is the one above
            tmp_path.unlink(missing_ok=True)


def write_into(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        write_into(tmp, data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, printable(text).encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json_text(obj))


def json_text(obj: Any) -> str:
    """`obj` as the text of a JSON file pixlearn writes: `strict_json`, indented, with a final newline."""
    return strict_json(obj, indent=2) + "\n"


def strict_json(obj: Any, indent: int | None = None) -> str:
    """`obj` as strict JSON (RFC 8259), the one encoder of every JSON pixlearn writes.

    JSON has no NaN or infinity, and Python's `NaN` / `Infinity` tokens are refused by every other
    parser, so a number that is not finite is written as null: "no value" (a reliability bin without
    images, the loss of a diverged epoch). `records.convert` reads a null where a record requires a
    number back as NaN. Paths, tuples and numpy / torch values go through `json_default`.

        >>> strict_json({"accuracy": float("nan"), "bins": (0.5, float("inf"))})
        '{"accuracy": null, "bins": [0.5, null]}'
    """
    try:
        return json.dumps(obj, indent=indent, default=json_default, allow_nan=False)
    except ValueError:  # a number that is not finite: the rare case, so only then walked
        return json.dumps(_finite_or_null(obj), indent=indent, default=json_default, allow_nan=False)


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Header and rows, every text cell through `text.csv_cell` (no spreadsheet runs a name as a
    formula); `text.from_csv_cell` reads a cell back."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(h) for h in header])
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike, kind: type[dict] | type[list] | None = None) -> Any:
    """A JSON file (regular files only, via core.files); any problem is a RunError naming it.

    Refused too: nesting deeper than MAX_JSON_DEPTH (or than Python's stack), numbers Python will not
    read (thousands of digits), and, with `kind` (dict or list), a file holding anything else.
    """
    try:
        with open_data_file(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except RecursionError:
        raise RunError(f"{path}: nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of 5,000 digits
        reason = "a number of thousands of digits" if "integer string conversion" in str(exc) else exc
        raise RunError(f"{path}: not valid JSON ({reason})") from exc
    except OSError as exc:  # a read error after opening (EIO, ...)
        raise RunError(f"{path}: cannot read the file ({os_reason(exc)})") from exc
    if too_deep(data, MAX_JSON_DEPTH):
        raise RunError(f"{path}: nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    if kind is not None and not isinstance(data, kind):
        expected = "a JSON object" if kind is dict else "a JSON list"
        raise RunError(f"{path}: expected {expected}, not {type(data).__name__}")
    return data


def read_csv(path: str | os.PathLike, error: ErrorFactory = run_error) -> list[dict[str, str]]:
    """A CSV file as dicts (regular files only, via core.files); any problem is `error(path, reason)`,
    a RunError by default (a user's own CSV: pass core.files.data_error)."""
    try:
        with open_data_file(path, "r", error=error, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise error(str(path), f"not a valid UTF-8 CSV file ({exc})") from exc
    except OSError as exc:
        raise error(str(path), f"cannot read the file ({os_reason(exc)})") from exc


def _finite_or_null(obj: Any) -> Any:
    """`obj` as plain JSON data with every NaN and infinity replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_finite_or_null(v) for v in obj]
    return _finite_or_null(json_default(obj))


def json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


# ---------------------------------------------------------------------------------- the directory


class RunDir:
    """Paths of one run directory, and the checks made before anything is trained."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.created = False  # whether prepare() made the directory (so a failure may remove it)
        self.lock_was_there: bool | None = None  # whether lock() found a lock file (None: not locked)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    config = property(lambda self: self.path / "config.json")
    weights = property(lambda self: self.path / "model.safetensors")
    spec = property(lambda self: self.path / "model.json")
    checkpoint = property(lambda self: self.path / "checkpoint.safetensors")
    checkpoint_spec = property(lambda self: self.path / "checkpoint.json")
    history = property(lambda self: self.path / "history.csv")
    metrics = property(lambda self: self.path / "metrics.json")
    data_summary = property(lambda self: self.path / "data_summary.json")
    skipped = property(lambda self: self.path / "skipped.csv")
    log_file = property(lambda self: self.path / "log.txt")
    figures = property(lambda self: self.path / "figures")
    report = property(lambda self: self.path / "report.html")

    def figure(self, name: str) -> Path:
        return self.figures / name

    @property
    def is_complete(self) -> bool:
        return self.metrics.exists() and self.weights.exists()

    def prepare(self, overwrite: bool = False, resume: bool = False) -> RunDir:
        """Create the directory, refusing to clobber a finished run and checking it is writable.

        Called before training starts, so a bad --out costs nothing; writers call it holding `lock()`.
        """
        locks.check_free(self.path, writing=True)  # a caller without the lock is still refused
        self.created = self.created or not self.path.exists()
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: exists and is not a directory")
        if not self.created:
            self._refuse_foreign_folder()
        if self.is_complete and not (overwrite or resume):
            raise RunError(
                f"{self.path}: holds a finished run; overwrite it (--overwrite, or overwrite=True) "
                "or choose another output directory"
            )
        if resume and not self.checkpoint.exists() and not self.is_complete:
            raise RunError(f"{self.path}: nothing to resume (no checkpoint.safetensors)")
        if self.checkpoint_spec.exists() and not self.is_complete and not (overwrite or resume):
            # Starting afresh would replace the checkpoint of the interrupted run: its epochs would be lost.
            raise RunError(
                f"{self.path}: holds an interrupted run; resume it (--resume, or resume=True) "
                "or overwrite it to start again (--overwrite, or overwrite=True)"
            )
        if overwrite and not resume:
            for stale in (self.metrics, self.checkpoint, self.checkpoint_spec, self.history, self.report):
                if stale.exists():
                    stale.unlink()
        try:
            self.figures.mkdir(parents=True, exist_ok=True)
            self._remove_partial_files()
            fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=self.path)  # a new file: no link followed
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise RunError(f"{self.path}: cannot write the run directory ({exc.strerror or exc})") from exc
        return self

    def _refuse_foreign_folder(self) -> None:
        """RunError for an existing folder pixlearn did not write (photos, a project, another tool's
        output): a run is written only into a new or empty folder or a run of pixlearn's, and
        --overwrite replaces only a run's own files, so nothing of the person's is replaced or mixed in."""
        if self._written_by_pixlearn():
            return
        other = next((name for name in _entries(self.path) if not self._left_by_a_start(name)), None)
        if other is None:
            return
        if self.lock_was_there is False:  # the lock file this process just made: the folder is left as found
            (self.path / locks.LOCK_NAME).unlink(missing_ok=True)
        raise RunError(
            f"{self.path}: is not a pixlearn run directory and is not empty (it holds {log_text(other)}); "
            "pixlearn writes a run only into a new or empty folder or a run of its own, even with --overwrite: "
            "choose another output directory"
        )

    def _written_by_pixlearn(self) -> bool:
        # Every writer since run directories were locked leaves the lock file; runs written before that
        # have a model spec or a checkpoint whose format names pixlearn.
        lock_file = self.path / locks.LOCK_NAME
        if self.lock_was_there or (self.lock_was_there is None and os.path.lexists(lock_file)):
            return True
        return any(_names_pixlearn_format(self.path / name) for name in ("model.json", "checkpoint.json"))

    def _left_by_a_start(self, name: str) -> bool:
        """What pixlearn itself leaves in a folder it has only started to write: the lock file, an empty
        figures/ and a killed writer's temporary files."""
        if name == locks.LOCK_NAME or (name.startswith(".") and name.endswith(".tmp")):
            return True
        figures = self.figures
        return name == "figures" and figures.is_dir() and not figures.is_symlink() and not _entries(figures)

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the run's write lock for the block (`core.locks.hold`: RUN/.pixlearn.lock): a second
        writer is refused at once, naming this process's pid. Every command that writes the directory
        holds it; it makes the directory if it is missing.

        If the block fails before the run holds a checkpoint, a directory made here (or by `prepare`)
        is removed again, lock file and all: a bad data path leaves no empty run folder behind, and an
        interrupted run keeps what it trained.
        """
        self.created = self._make() or self.created
        self.lock_was_there = os.path.lexists(self.path / locks.LOCK_NAME)
        with locks.hold(self.path):
            try:
                yield self
            except BaseException as failure:
                self._remove_if_unfinished(failure)
                raise

    def _make(self) -> bool:
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: exists and is not a directory")
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:  # there already, or another process made it first: its lock decides
            return False
        except OSError as exc:
            raise RunError(f"{self.path}: cannot create the run directory ({exc.strerror or exc})") from exc
        return True

    def lock_for(self, *targets: str | os.PathLike | None) -> contextlib.AbstractContextManager:
        """`lock()` where one of `targets` lies inside this run directory (evaluate's and predict's
        outputs by default), else nothing: files written elsewhere leave the run free."""
        inside = self.path.is_dir() and any(
            t is not None and Path(t).resolve().is_relative_to(self.path.resolve()) for t in targets
        )
        return self.lock() if inside else contextlib.nullcontext(self)

    def check_not_being_written(self) -> None:
        """RunError if another process is writing this run (training, fitting): never reads half a run."""
        locks.check_free(self.path)

    def _remove_if_unfinished(self, failure: BaseException) -> None:
        if self.created and not self.checkpoint.exists() and self.path.is_dir():
            try:
                shutil.rmtree(self.path)
            except OSError as exc:  # the first error is the one to report; this one rides along
                failure.add_note(f"(could not remove the unfinished {self.path}: {exc})")

    def _remove_partial_files(self) -> None:
        # A process killed inside atomic_path leaves its temporary file (never the target): tidy up.
        for folder in (self.path, self.figures):
            for partial in folder.glob(".*.tmp"):
                partial.unlink(missing_ok=True)

    def log(self, message: str) -> None:
        """Append a time-stamped line to log.txt (appends are line-sized, so no rename needed); control
        and bidi characters are shown escaped (`text.log_text`), so a file name cannot forge a line."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open_data_file(self.log_file, "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {log_text(message)}\n")
        except OSError as exc:
            raise write_error(self.log_file, exc) from exc


def _entries(folder: Path) -> list[str]:
    """The names in `folder`, without listing more than it takes to tell an empty folder apart."""
    try:
        with os.scandir(folder) as found:
            return [entry.name for _, entry in zip(range(64), found, strict=False)]
    except OSError as exc:
        raise RunError(f"{folder}: cannot read the folder ({os_reason(exc)})") from exc


FORMAT_MARK = re.compile(rb'"format"\s*:\s*"pixlearn-')


def _names_pixlearn_format(path: Path) -> bool:
    """Whether the JSON file at `path` starts with a pixlearn format key (model.json, checkpoint.json):
    a mark looked for in its first bytes; the file itself is read by its own record."""
    if not path.is_file():
        return False
    try:
        with open_data_file(path, "rb") as f:
            return FORMAT_MARK.search(f.read(256)) is not None
    except (RunError, OSError):
        return False


# ---------------------------------------------------------------------------------- models


