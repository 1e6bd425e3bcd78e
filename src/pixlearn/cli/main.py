"""The `pixlearn` command: every verb module registers its commands on the one Typer app."""

from __future__ import annotations

import sys

from pixlearn.cli import check, classify, codec, export, field, report  # noqa: F401  (each registers its verbs on `app`)
from pixlearn.cli.common import app


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="pixlearn")
