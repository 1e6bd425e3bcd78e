"""One writer per run directory (and per prediction CSV): a lock the kernel releases when its process
ends, however it ends.

Every command that writes a run directory (train, fit, compare; evaluate and predict when they
write into it) holds an exclusive `flock` on RUN/.pixlearn.lock for as long as it writes, and
writes its pid into the file. A second writer is refused at once with a RunError naming that pid;
readers (evaluate, predict, report) check the lock without waiting and refuse a run that is still
being written instead of reading half of it. A process killed with SIGKILL holds nothing: the
kernel drops its locks with its open files, so no stale lock file ever has to be removed by hand.
Under torchrun rank 0 alone holds it (`classify.training`). A prediction CSV is held the same way
through its own lock file beside it (`hold_file`), so two `predict` commands never mix their rows.

The lock file is pixlearn's own: it is opened without following a symbolic link and only if it is
a regular file (`files.open_descriptor`), so a link planted as RUN/.pixlearn.lock cannot make a
writer truncate the file it points to, and a FIFO or device there is one clear error, not a hang.

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
from pixlearn.core.storage.files import open_descriptor, os_reason

try:
    import fcntl
except ImportError:  # Windows: no flock; run directories are not locked there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".pixlearn.lock"

_held: set[str] = set()  # lock files this process holds: its own report and model reads pass


def _key(lock_file: Path) -> str:
    return os.path.realpath(lock_file)


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
    with hold_file(directory / LOCK_NAME, directory, "choose another output directory"):
        yield


@contextlib.contextmanager
def hold_file(lock_file: str | os.PathLike, subject: str | os.PathLike, elsewhere: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (made if missing) for the block, this process's pid in it.
    Another holder is refused at once: a RunError naming `subject` (what the lock keeps), the holder's
    pid and the advice `elsewhere` (write somewhere else)."""
    lock_file = Path(lock_file)
    fd = open_descriptor(lock_file, os.O_RDWR | os.O_CREAT, follow_links=False)  # RunError naming it
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                raise RunError(
                    f"{subject}: is being written by another pixlearn process ({holder}); wait for it or {elsewhere}"
                ) from None
            except OSError as exc:  # a file system without locks (some network mounts): go on, and say so
                warnings.warn(f"{subject}: cannot lock it ({exc}); two writers would not be kept apart", stacklevel=3)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:  # a full disk
            raise RunError(f"{lock_file}: cannot write the file ({os_reason(exc)})") from exc
        key = _key(lock_file)
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
    A lock this process holds itself passes: training writes its own report while it holds it. A lock
    file that is not a regular file holds nothing (a writer refuses it when it tries to take it).
    """
    lock_file = Path(directory) / LOCK_NAME
    if fcntl is None or not lock_file.is_file() or _key(lock_file) in _held:
        return
    try:
        fd = open_descriptor(lock_file, os.O_RDONLY, follow_links=False)
    except RunError:
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
