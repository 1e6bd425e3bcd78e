"""The `pixlearn` command: every verb module registers its commands on the one Typer app."""

from __future__ import annotations

import atexit
import gc
import sys

from pixlearn.cli import check, classify, codec, export, field, report  # noqa: F401  (each registers its verbs on `app`)
from pixlearn.cli.common import app


def main(argv: list[str] | None = None) -> None:
    """The `pixlearn` command (the console script and `python -m pixlearn`)."""
    # The interpreter's exit with torch loaded spent 0.4-0.6 s in its final garbage collections over
    # objects that exit frees anyway. Frozen objects are skipped by them (gc.freeze); reference
    # counting still frees everything, and every file is written and closed before a command returns;
    # exit handlers run as before (freezing changes nothing for them).
    atexit.register(gc.freeze)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="pixlearn")
