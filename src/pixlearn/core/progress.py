"""Progress reporting: one small interface, a silent default and a Rich live bar.

The training and fitting loops call `task()`, `advance()` and `note()`; the CLI passes a
RichProgress, the API is silent unless asked (`progress=True`).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pixlearn.core.text import terminal_text


class Silent:
    """Reports nothing."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def task(self, description: str, total: int | None) -> None:
        """Start a new bar (the previous one stays on screen)."""

    def advance(self, n: int = 1, **metrics: float) -> None:
        """Move the current bar and show the latest metrics beside it."""

    def note(self, message: str) -> None:
        """A line of text above the bars, shown literally: a class or file name in it is never read
        as markup, and its control characters (a newline, an escape sequence) are shown escaped."""


class RichProgress(Silent):
    """A live Rich progress bar with the running metrics (loss, accuracy, PSNR...)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, emoji=False)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def task(self, description: str, total: int | None) -> None:
        self._task = self._progress.add_task(description, total=total, metrics="")

    def advance(self, n: int = 1, **metrics: float) -> None:
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        self._progress.update(self._task, advance=n, metrics=text)

    def note(self, message: str) -> None:
        self._progress.console.print(terminal_text(message), emoji=False)


def make_progress(enabled: bool) -> Silent:
    return RichProgress() if enabled else Silent()
