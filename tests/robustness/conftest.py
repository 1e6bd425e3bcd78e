"""Opt-in fixtures for the hostile-input modules, which run the command line hundreds of times on tiny runs.

None is autouse: a module asks for them (`pytestmark = pytest.mark.usefixtures(...)`, or as an argument).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import pytest
import torch

# Every module that draws a figure for a classification run or an image fit, through `figures.`.
FIGURE_USERS = (
    "pixlearn.classify.evaluation.interpretation",
    "pixlearn.classify.inference.prediction",
    "pixlearn.field.outputs",
    "pixlearn.field.comparison",
    "pixlearn.models.saliency",
)


class _NoFigures:
    """Stands in for core.figures: every drawing function does nothing (and draws nothing to save)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@pytest.fixture(scope="session")
def figures_off() -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context manager under which runs, fits and predictions draw no figure: for the work whose
    figures no assertion reads. Not a monkeypatch fixture, so a test's `monkeypatch.undo()` keeps it."""

    @contextlib.contextmanager
    def off() -> Iterator[None]:
        with pytest.MonkeyPatch.context() as mp:
            for module in FIGURE_USERS:
                mp.setattr(f"{module}.figures", _NoFigures())
            yield

    return off


@pytest.fixture
def no_figures(figures_off) -> Iterator[None]:
    """No figures for the whole test: for a test that reads none of them."""
    with figures_off():
        yield


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the module. Their networks are tiny: each op costs less than waking a
    second thread, and beside other work on the cores the threads' waits for each other at every op
    dominate (core.devices.choose_threads). Runs started here record and resume with this count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cli_built_once() -> Iterator[None]:
    """typer's test runner builds the click command from the app on every invoke (every verb's options,
    from their signatures); these modules invoke it hundreds of times, so build it once per app."""
    import typer.main
    import typer.testing

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.testing, "_get_command", functools.cache(typer.main.get_command))
        yield
