"""The `pixlearn` command: a thin layer over the API. Each verb parses options, calls one API
function and prints its result; nothing is computed here.

Verbs live in one module per job (classify.py, ...); each registers its commands on `app`.
"""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
