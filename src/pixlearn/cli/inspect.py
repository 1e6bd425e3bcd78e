"""The report verb: write (or rewrite) a run's report.html and optionally open it."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from pixlearn.cli.application import _escape, command, console


@command("report", epilog="Example: pixlearn report runs/demo --open")
def report_cmd(
    run: Path = typer.Argument(
        ..., help="Run directory (classification, image fit or compare), or a check directory of `pixlearn check`."
    ),
    open_: bool = typer.Option(
        False, "--open", help="Open the report in the default web browser (prints its path where there is none)."
    ),
) -> None:
    """Write RUN/report.html: every table and figure of the run in one self-contained page (for a check
    directory: its check.html)."""
    from pixlearn.report.page import write_report

    path = write_report(run)
    console.print(f"report: {_escape(str(path))}", highlight=False)
    if open_:
        open_in_browser(path)


def open_in_browser(path: Path) -> bool:
    """Open `path` in the default browser; where none is available say so and print the path."""
    opened = webbrowser.open(path.resolve().as_uri())
    if not opened:
        console.print(f"no web browser found; open this file yourself: {_escape(str(path.resolve()))}", highlight=False)
    return opened
