"""Every verb of the `pixlearn` command, registered on the one Typer app (importing this module
registers them; `pixlearn.cli.main` imports it during the command's start-up)."""

from __future__ import annotations

from pixlearn.cli import check, classify, codec, export, field, inspect  # noqa: F401  (each registers its verbs on `app`)
from pixlearn.cli.application import app

__all__ = ["app"]
