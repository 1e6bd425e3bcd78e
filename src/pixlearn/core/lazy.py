"""Package exports loaded on first use (PEP 562), so importing one module of a package does not
import every other one (the command line reads only `classify.config` at start-up).

    >>> __all__, __getattr__ = exports("pixlearn.core", {"ImageError": "pixlearn.core.errors"})
    >>> __getattr__("ImageError").__name__
    'ImageError'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """`__all__` and a module `__getattr__` for `package`: name -> the module that defines it."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name]), name)

    return sorted(names), getattr_
