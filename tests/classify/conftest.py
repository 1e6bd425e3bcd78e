"""Helpers shared by the classification tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def figures_not_rasterised() -> Iterator[None]:
    """Runs trained inside still build every figure from their data, but do not rasterise them into PNG files,
    which is most of what a small run costs. Only for a run whose figures nothing reads and that another run of
    the test draws alike: a run that a resume finishes again at once, or a repeat of a run that draws its own."""
    from pixlearn.core.imaging import figures

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(figures, "save", lambda fig, path, dpi=110: None)
        yield
