"""Errors a person can act on. Each message names the file or option and the reason.

The command line prints a `PixlearnError` as one `error:` line and exits 2; any other exception
is a bug and keeps its traceback. The API raises the same classes, worded for both audiences
(no command-line flags in messages that the API can raise).

    >>> issubclass(ImageError, PixlearnError), issubclass(ConfigError, ValueError)
    (True, True)
"""

from __future__ import annotations

import os


class PixlearnError(Exception):
    """Base class: bad input, a bad option, a run directory that cannot be used."""


class ConfigError(PixlearnError, ValueError):
    """An option with a value outside its type, choices or range; raised before any file is read."""


class DataError(PixlearnError, ValueError):
    """A data set that cannot be trained or evaluated on; raised before any training starts."""


class RunError(PixlearnError, RuntimeError):
    """A run directory that cannot be created, resumed or read; the message says why."""


class ImageError(PixlearnError, ValueError):
    """An image that cannot be used; the message names the file and the reason."""

    def __init__(self, source: str | os.PathLike, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Rebuilt from (source, reason) when a decoding worker process sends it back.
        return ImageError, (self.source, self.reason)
