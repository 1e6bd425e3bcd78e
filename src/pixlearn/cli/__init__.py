"""The `pixlearn` command: a thin layer over the API. Each verb parses options, calls one API
function and prints its result; nothing is computed here.

`common` holds the Typer app, the error boundary and printing helpers; one module per job
(`classify`, `field`, `report`) registers its verbs; `main` brings them together.
"""

from __future__ import annotations

from pixlearn.cli.common import app
from pixlearn.cli.main import main

__all__ = ["app", "main"]
