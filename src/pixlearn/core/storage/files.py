"""Opening the files pixlearn reads and writes: regular files only, never written through a link;
outputs that are devices, FIFOs or folders are not replaced.

A FIFO named `x.png` would block `open()` for ever, a device can be read without end and a
socket cannot be opened at all, so every file pixlearn opens for a user or from a run directory
(images, model.json, weights, checkpoints, config and evaluation JSON, CSV files, log.txt) goes
through `open_data_file`, or through `check_regular_file` where a library opens the path itself
(safetensors, numpy). Both raise the error the caller chooses, naming the file and the reason;
any later command that opens a user's or a run's file must use them too.

Reading follows a symbolic link to a regular file. Writing never does: a file opened to append,
create or change it (log.txt, a lock file, a prediction CSV being resumed) is opened with
O_NOFOLLOW, so a link planted in a run directory cannot make pixlearn truncate or append to the
file it points to; `open_descriptor` is that one open, for callers that need a descriptor (locks).
A file replaced whole (`rundir.atomic_path`: every output, every run file) is renamed over its
path, which replaces a link itself and leaves what it pointed to as it was; `check_output` first
refuses a path that holds something other than a regular file or a link (a device such as
/dev/null, a FIFO, a directory), so no rename ever lands on one.

    >>> import os, tempfile
    >>> from pixlearn.core.errors import ImageError
    >>> tmp = tempfile.TemporaryDirectory()
    >>> fifo = os.path.join(tmp.name, "x.png")
    >>> os.mkfifo(fifo)
    >>> open_data_file(fifo, error=ImageError)
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ImageError: .../x.png: not a regular file (a FIFO)
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
from collections.abc import Callable
from typing import IO, Any

from pixlearn.core.errors import DataError, PixlearnError, RunError

ErrorFactory = Callable[[str, str], PixlearnError]  # (path, reason) -> the error to raise

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def run_error(path: str, reason: str) -> RunError:
    return RunError(f"{path}: {reason}")


def data_error(path: str, reason: str) -> DataError:
    return DataError(f"{path}: {reason}")


def os_reason(exc: OSError) -> str:
    """A short reason for an OSError, worded for the person who has to fix it."""
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "file not found"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.EISDIR:
        return "is a directory"
    if code == errno.ELOOP:
        return "a symbolic link that points to itself (symlink loop)"
    if code == errno.ENOSPC:
        return "no space left on the device"
    if code == errno.ENXIO:
        return "not a regular file (a socket or a device with nothing behind it)"
    return exc.strerror or str(exc)


def irregular_reason(mode: int) -> str | None:
    """Why a file of this st_mode cannot be read as data, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    kind = next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")
    return f"not a regular file ({kind})"


SYMLINK_REASON = "is a symbolic link (pixlearn never writes through one)"


def check_regular_file(
    path: str | os.PathLike, error: ErrorFactory = run_error, missing_ok: bool = False, follow_links: bool = True
) -> os.stat_result | None:
    """Stat `path` and raise `error(path, reason)` unless it is a regular file; `missing_ok`: a file that
    does not exist yet returns None (it is about to be created); `follow_links=False`: a symbolic link
    is refused too (a file about to be written)."""
    try:
        info = os.stat(path) if follow_links else os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(str(path), "file not found") from None
    except OSError as exc:
        raise error(str(path), os_reason(exc)) from exc
    if stat.S_ISLNK(info.st_mode):
        raise error(str(path), SYMLINK_REASON)
    reason = irregular_reason(info.st_mode)
    if reason is not None:
        raise error(str(path), reason)
    return info


def check_output(path: str | os.PathLike, error: ErrorFactory = run_error) -> None:
    """Refuse (`error(path, reason)`) an output path that holds anything a rename must not replace: a
    device (/dev/null), a FIFO, a socket, a directory. A missing path, a regular file and a symbolic
    link pass: the new file is renamed over the path (a link is replaced, never written through)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise error(str(path), os_reason(exc)) from exc
    reason = None if stat.S_ISLNK(mode) else irregular_reason(mode)
    if reason is not None:
        raise error(str(path), f"{reason}; pixlearn replaces only regular files, so it is left as it is")


def open_descriptor(
    path: str | os.PathLike, flags: int, *, error: ErrorFactory = run_error, follow_links: bool = True
) -> int:
    """`os.open(path, flags)` for a regular file only, or `error(path, reason)`: the one open under
    `open_data_file` and the locks. `follow_links=False` adds O_NOFOLLOW (a link is refused, never
    followed). A FIFO or device never blocks the open (O_NONBLOCK) and is refused from its fstat;
    O_TRUNC is applied only once the file is known to be a regular one."""
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    truncate = bool(flags & os.O_TRUNC)
    try:
        fd = os.open(path, flags & ~os.O_TRUNC, 0o666)  # 0o666: the mode open() itself gives a new file
    except OSError as exc:
        reason = SYMLINK_REASON if exc.errno == errno.ELOOP and not follow_links else os_reason(exc)
        raise error(str(path), reason) from exc
    try:
        reason = irregular_reason(os.fstat(fd).st_mode)
        if reason is not None:
            raise error(str(path), reason)
        os.set_blocking(fd, True)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_data_file(path: str | os.PathLike, mode: str = "rb", *, error: ErrorFactory = run_error, **kwargs: Any) -> IO:
    """`open(path, mode, **kwargs)` for a regular file only: anything else, or an OSError while
    opening, raises `error(path, reason)` (RunError by default; pass ImageError, data_error, ...).

    Modes that create the file ("a", "w", "x") accept a path that does not exist yet; modes that
    write ("a", "w", "x", "+") refuse a symbolic link.
    """
    follow = not any(c in mode for c in "awx+")
    check_regular_file(path, error, missing_ok=any(c in mode for c in "awx"), follow_links=follow)
    opener = functools.partial(open_descriptor, error=error, follow_links=follow)
    try:
        return open(path, mode, opener=opener, **kwargs)  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise error(str(path), os_reason(exc)) from exc


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> SHA-256: a file read once per process


def file_sha256(path: str | os.PathLike, error: ErrorFactory = run_error) -> str:
    """The SHA-256 of a regular file, hex; remembered for the same path, size and mtime.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "abc.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> file_sha256(path)[:12]
    'ba7816bf8f01'
    """
    info = os.stat(path)
    key = (os.path.realpath(path), info.st_size, info.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open_data_file(path, "rb", error=error) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
