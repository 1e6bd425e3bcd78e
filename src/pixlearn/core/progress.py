"""Progress reporting: one small interface, a silent default, a Rich live bar and a plain log.

Every public verb takes `progress: bool | None = None` (None: shown when stderr is a terminal; True:
always; False: never) and turns it into one `Progress` object with `make_progress`; inside the package
that object is passed down, and whatever reports progress calls its `task()`, `advance()` and `note()`
(never a callback of its own). The reporter: live bars on a terminal; without one (CI, `> log.txt`)
one unwrapped line per note and per finished bar, in order, so a piped run reads like a log.

    >>> import io
    >>> from rich.console import Console
    >>> out = io.StringIO()
    >>> with LogProgress(Console(file=out, width=40)) as p:
    ...     p.task("decode train", 3)
    ...     p.advance(3)
    ...     p.note("epoch 1/2  loss 0.6931  accuracy 0.5000  val_loss 0.6931  val_accuracy 0.5000  (0.1s)")
    >>> print(out.getvalue().strip())
    decode train: 3/3 in 0.0s
    epoch 1/2  loss 0.6931  accuracy 0.5000  val_loss 0.6931  val_accuracy 0.5000  (0.1s)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pixlearn.core.text import log_text, terminal_text

if TYPE_CHECKING:
    from rich.console import Console


class Progress:
    """The one progress interface; this base reports nothing (`SILENT`). Rich is imported only by the
    reporters that draw, so a module that takes a Progress costs no import."""

    def __enter__(self) -> Progress:
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


SILENT = Progress()  # holds no state: the default of every internal `progress` parameter


def _console() -> Console:
    from rich.console import Console

    return Console(stderr=True, emoji=False)


class RichProgress(Progress):
    """A live Rich progress bar with the running metrics (loss, accuracy, PSNR...)."""

    def __init__(self, console: Console | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bars

        self.console = console or _console()
        self._progress = Bars(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
        )
        self._task: Any = None
        self._metrics: dict[str, float] = {}  # the last ones given: a bar keeps showing them

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def task(self, description: str, total: int | None) -> None:
        self._task, self._metrics = self._progress.add_task(description, total=total, metrics=""), {}

    def advance(self, n: int = 1, **metrics: float) -> None:
        self._metrics = metrics or self._metrics
        text = "  ".join(f"{k} {v:.4g}" for k, v in self._metrics.items())
        self._progress.update(self._task, advance=n, metrics=text)

    def note(self, message: str) -> None:
        self._progress.console.print(terminal_text(message), emoji=False)


class LogProgress(Progress):
    """Progress for a log file: a line when a bar finishes (or the next starts), notes unwrapped."""

    def __init__(self, console: Console | None = None):
        self.console = console or _console()
        self._task: list[Any] | None = None  # [description, total, done, started]
        self._metrics: dict[str, float] = {}

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def task(self, description: str, total: int | None) -> None:
        self._finish()
        self._task, self._metrics = [description, total, 0, time.perf_counter()], {}

    def advance(self, n: int = 1, **metrics: float) -> None:
        if self._task is not None:
            self._task[2] += n
            self._metrics = metrics or self._metrics

    def note(self, message: str) -> None:
        text = log_text(message)  # printed without markup: no escaping needed
        if self._task is not None and text.startswith(f"{self._task[0]} "):
            self._task = None  # "epoch 3/20  loss ..." reports its own bar: one line, not two
        self._finish()
        self._line(text)

    def _finish(self) -> None:
        if self._task is None:
            return
        description, total, done, started = self._task
        count = f"{done}/{total}" if total else str(done)
        text = "  ".join(f"{k} {v:.4g}" for k, v in self._metrics.items())
        self._line(f"{description}: {count} in {time.perf_counter() - started:.1f}s" + (f"  {text}" if text else ""))
        self._task = None

    def _line(self, text: str) -> None:
        # soft_wrap: a long line stays one line in the log instead of breaking at the console's width
        self.console.print(text, emoji=False, markup=False, highlight=False, soft_wrap=True)


def make_progress(enabled: bool | None) -> Progress:
    """A public verb's `progress` argument as the one Progress object: None shows it only when stderr is
    a terminal, True always (live bars on a terminal, a plain log otherwise), False never (`SILENT`)."""
    if enabled is False:
        return SILENT
    console = _console()
    if enabled is None and not console.is_terminal:
        return SILENT
    return RichProgress(console) if console.is_terminal else LogProgress(console)
