"""One writer per run directory: a lock the kernel releases when its process ends, however it ends.

Every command that writes a run directory (train, fit, compare; evaluate and predict when they
write into it) holds an exclusive `flock` on RUN/.pixlearn.lock for as long as it writes, and
writes its pid into the file. A second writer is refused at once with a RunError naming that pid;
readers (evaluate, predict, report) check the lock without waiting and refuse a run that is still
being written instead of reading half of it. A process killed with SIGKILL holds nothing: the
kernel drops its locks with its open files, so no stale lock file ever has to be removed by hand.
Under torchrun rank 0 alone holds it (`classify.training`).

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> with hold(folder):
    ...     with hold(folder):            # a second writer, even in the same process
    ...         pass
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.RunError: ...: is being written by another pixlearn process (pid ...); wait for it ...
    >>> with hold(folder):                 # released at the end of the block
    ...     check_free(folder)             # this process's own lock does not stop it reading
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from pixlearn.core.errors import RunError

try:
    import fcntl
except ImportError:  # Windows: no flock; run directories are not locked there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".pixlearn.lock"

_held: set[str] = set()  # lock files this process holds: its own report and model reads pass


def _key(directory: Path) -> str:
    return os.path.realpath(directory / LOCK_NAME)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


@contextlib.contextmanager
def hold(directory: str | os.PathLike) -> Iterator[None]:
    """Hold the write lock of the existing `directory` for the block; RunError at once if another
    process holds it. (`runs.RunDir.lock` makes the directory and tidies up after a failure.)"""
    directory = Path(directory)
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise RunError(f"{directory}: cannot write the run directory ({exc.strerror or exc})") from exc
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"{directory}: is being written by another pixlearn process ({_holder(fd)}); "
                    "wait for it or choose another output directory"
                ) from None
            except OSError as exc:  # a file system without locks (some network mounts): go on, and say so
                warnings.warn(f"{directory}: cannot lock it ({exc}); two writers would not be kept apart", stacklevel=3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        key = _key(directory)
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def check_free(directory: str | os.PathLike, writing: bool = False) -> None:
    """Refuse (RunError) a run directory another process is writing; never waits.

    `writing`: worded for a writer about to start (choose another directory) rather than a reader.
    A lock this process holds itself passes: training writes its own report while it holds it.
    """
    lock_file = Path(directory) / LOCK_NAME
    if fcntl is None or not lock_file.is_file() or _key(Path(directory)) in _held:
        return
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        advice = "wait for it or choose another output directory" if writing else "wait for it to finish"
        raise RunError(
            f"{directory}: is {'being' if writing else 'still being'} written by another pixlearn process "
            f"({_holder(fd)}); {advice}"
        ) from None
    except OSError:
        pass
    finally:
        os.close(fd)
