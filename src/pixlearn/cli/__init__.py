"""The `pixlearn` command: a thin layer over the API. Each verb parses options, calls one API
function and prints its result; nothing is computed here.

`application` holds the Typer app, the error boundary and printing helpers; one module per job
(`classify`, `field`, `codec`, `export`, `check`, `inspect`) registers its verbs; `verbs` brings them
together. `main` is the command (the console script and `python -m pixlearn`); it alone does the
command's start-up work. Importing this package does none: `from pixlearn.cli import app` loads the
verbs on first use, and no import starts a thread, touches the garbage collector or reads sys.argv.
"""

from __future__ import annotations

import atexit
import gc
import sys
from typing import TYPE_CHECKING

from pixlearn.core.lazy import exports

if TYPE_CHECKING:
    import typer

_exported, __getattr__ = exports("pixlearn.cli", {"app": "pixlearn.cli.verbs"})
__all__ = [*_exported, "DEPRECATED", "main", "rewrite_deprecated"]

# (verb, old spelling) -> the one spelling now, for scripts written before the flags were made the same
# in every verb. Rewritten here, with a note, for one release; the verbs declare only the new spelling.
DEPRECATED = {("fit", "--batch"): "--batch-size", ("compress", "--steps"): "--tune-steps"}


def rewrite_deprecated(args: list[str]) -> tuple[list[str], list[str]]:
    """`args` with each old spelling of its verb (`DEPRECATED`) replaced, and one note per spelling replaced.

    >>> args, notes = rewrite_deprecated(["fit", "a.png", "--batch=64"])
    >>> args, notes
    (['fit', 'a.png', '--batch-size=64'], ['pixlearn fit: --batch is deprecated and goes in the next release; ...'])
    """
    verb = args[0] if args else None
    out, notes = list(args), []
    for i, arg in enumerate(args[1:], start=1):
        if arg == "--":  # what follows is arguments, never options
            break
        flag, equals, value = arg.partition("=")
        new = DEPRECATED.get((verb, flag))
        if new is not None:
            out[i] = new + equals + value
            note = f"pixlearn {verb}: {flag} is deprecated and goes in the next release; write {new}"
            notes += [note] if note not in notes else []
    return out, notes


def main(argv: list[str] | None = None) -> None:
    """The `pixlearn` command: its start-up, then the verb `argv` names (default: sys.argv[1:])."""
    args, notes = rewrite_deprecated(list(sys.argv[1:] if argv is None else argv))
    for note in notes:
        print(note, file=sys.stderr)
    app = _start_up(args)
    # Frozen objects are skipped by the interpreter's final collections, over objects that exit frees
    # anyway (bench/README.md, "Start-up: imports, the collector and the early decode"). Safe: reference
    # counting still frees everything, every file is written and closed before a command returns, and
    # exit handlers run as before.
    atexit.register(gc.freeze)
    app(args=args, prog_name="pixlearn")


def _start_up(args: list[str]) -> typer.Typer:
    """The command's imports, with the collector paused and the fit's image decoding beside them.

    A collection during the imports walks tens of thousands of objects that all stay alive
    (bench/README.md, "Start-up: imports, the collector and the early decode"). Paused, then restored
    as it was; the imported objects live as long as the process, so they are frozen: the first
    collection after the pause (a full one) and every later one skip them. Safe: the modules and what
    they hold live until exit anyway (a freeze keeps only the imports' own cyclic garbage, which a
    collection would have freed), and the collector runs as before once the command starts.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        _decode_the_image_ahead(args)
        from pixlearn.cli.verbs import app
    finally:
        gc.freeze()  # before re-enabling, so that no collection runs between the two
        if collecting:
            gc.enable()
    return app


def _decode_the_image_ahead(args: list[str]) -> None:
    """`pixlearn fit IMAGE ...`: IMAGE decodes beside the imports (`images.decode_ahead`). IMAGE is
    the first argument naming a regular image file; a wrong guess costs only the thread's work, since
    the fit decodes whatever it is given and takes the early result only for that file."""
    if len(args) > 1 and args[0] == "fit":
        from pixlearn.core.imaging import images

        for arg in args[1:]:
            if not arg.startswith("-") and images.decode_ahead(arg):
                return
