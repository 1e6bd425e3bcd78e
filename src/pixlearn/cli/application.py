"""The Typer application, the error boundary and helpers shared by every verb module."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pixlearn.classify.config import DATA
from pixlearn.core.errors import PixlearnError
from pixlearn.core.options import cli_parameters, from_cli
from pixlearn.core.text import terminal_text

app = typer.Typer(
    name="pixlearn",
    help="Learn from images with neural networks on an ordinary CPU: classify folders of images, "
    "or fit an image as a function of its pixel coordinates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
# emoji=False: a file named `:warning:.png` is printed as its name, not as an emoji
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
# Without a terminal (a log file, CI) Rich assumes 80 columns and cuts a 10-class matrix to "ei…";
# a log has no width, so tables print whole
LOG_WIDTH = 240
for _console in (console, err_console):
    if not _console.is_terminal:
        _console.width = LOG_WIDTH

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# The panels of `pixlearn --help`, and every verb's. A new verb (lr-find, serve) is added here, in the
# panel of its job: `command` refuses a verb that is in none, so `--help` never shows a loose one.
PANELS = {
    "Classify folders": ("check", "train", "lr-find", "evaluate", "predict", "export", "demo"),
    "Fit an image": ("fit", "render", "compare", "table"),
    "Compress": ("compress", "decompress"),
    "Inspect": ("models", "summary", "report"),
}
PANEL_OF = {verb: panel for panel, verbs in PANELS.items() for verb in verbs}


def command(name: str, **kwargs: Any) -> Callable:
    """`app.command` in the verb's help panel (`PANELS`), plus the error boundary: a PixlearnError (the
    person's to fix) exits 2 with a one-line message; any other exception is a bug and keeps its traceback."""
    if name not in PANEL_OF:
        raise ValueError(f"pixlearn {name}: add the verb to a help panel (cli.application.PANELS)")
    kwargs.setdefault("rich_help_panel", PANEL_OF[name])

    def decorate(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*a: Any, **kw: Any) -> Any:
            from pixlearn.classify.training.loop import TrainingInterrupted

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

        return app.command(name, **kwargs)(wrapper)

    return decorate


def _escape(text: Any) -> str:
    """User text as Rich prints it literally (`text.terminal_text`): markup escaped, control and bidi
    characters shown escaped, file-name bytes that are not UTF-8 as \\xNN (printing them would fail)."""
    return terminal_text(text)


def with_options(config_cls: type, exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> Callable:
    """Give a command one option per field of `config_cls` (flag, default, help, panel from the field,
    `core.options`); the command receives their values, parsed, as keyword arguments."""

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        skip = tuple(exclude) + tuple(p.name for p in own)
        generated = [p for p in cli_parameters(config_cls, skip) if only is None or p.name in only]
        names = {p.name for p in generated}

        @wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            values = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            return fn(**kwargs, **from_cli(config_cls, values))

        params = own + generated
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**fn.__annotations__, **{p.name: p.annotation for p in generated}}
        wrapper.__annotations__.pop("options", None)
        return wrapper

    return decorate


def group_option() -> Any:
    """`--group LABEL=FOLDER,...`, the one declaration `train` and `check` share (TrainConfig.groups is not
    generated: a repeated option of rules, parsed by classify.folders.parse_groups)."""
    return typer.Option(
        None,
        "--group",
        help="LABEL=FOLDER[,FOLDER...]; repeat per label. Implies --labels groups.",
        rich_help_panel=DATA,
    )


def typed_on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A Rich table; every title, header and cell is user text shown literally (`_escape`)."""
    # min_width: the title stays on one line instead of wrapping at a narrow table's width
    t = Table(title=_escape(title), title_justify="left", min_width=len(title))
    for c in columns:
        t.add_column(_escape(c), justify="right" if c not in (columns[0],) else "left")
    for r in rows:
        t.add_row(*[f"{v:.4f}" if isinstance(v, float) else _escape(v) for v in r])
    return t
