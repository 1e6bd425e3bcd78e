"""The Typer application, the error boundary and helpers shared by every verb module."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pixlearn.core.errors import PixlearnError

app = typer.Typer(
    name="pixlearn",
    help="Learn from images with neural networks on an ordinary CPU: classify folders of images, "
    "or fit an image as a function of its pixel coordinates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console()
err_console = Console(stderr=True)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def command(*args: Any, **kwargs: Any) -> Callable:
    """`app.command` plus the error boundary: a PixlearnError (the person's to fix) exits 2 with a
    one-line message; any other exception is a bug and keeps its traceback."""

    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from pixlearn.classify.train import TrainingInterrupted

            try:
                return fn(*a, **kw)
            except TrainingInterrupted as exc:
                err_console.print(f"[yellow]{_escape(str(exc))}[/yellow]", highlight=False, soft_wrap=True)
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except KeyboardInterrupt:
                err_console.print("[yellow]interrupted[/yellow]")
                raise typer.Exit(EXIT_INTERRUPTED) from None
            except PixlearnError as exc:
                # soft_wrap: one line however long, so the message can be grepped and copied whole
                err_console.print(f"[red]error:[/red] {_escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(EXIT_USAGE) from None

        return app.command(*args, **kwargs)(wrapper)

    return decorate


def _escape(text: str) -> str:
    """Rich markup escaped, and file-name bytes that are not UTF-8 shown as \\xNN (printing them would fail)."""
    from rich.markup import escape

    from pixlearn.core.runs import printable

    return escape(printable(str(text)))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c not in (columns[0],) else "left")
    for r in rows:
        t.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r])
    return t


def parse_size(text: str) -> tuple[int, ...]:
    """`150x150x1` -> (150, 150, 1); `28` -> (28,)."""
    try:
        return tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected numbers joined by x, such as 150x150x1; got {text!r}") from None
