"""The `pixlearn` command: a thin layer over the API. Each verb parses options, calls one API
function and prints its result; nothing is computed here.

`common` holds the Typer app, the error boundary and printing helpers; one module per job
(`classify`, `field`, `report`) registers its verbs; `main` brings them together.
"""

from __future__ import annotations

import gc
import os
import sys


def _decode_the_image_ahead(argv: list[str]) -> None:
    """`pixlearn fit IMAGE ...`: IMAGE decodes beside the imports below (`images.decode_ahead`).
    IMAGE is the first argument naming a regular image file; a wrong guess costs only the thread's
    work, since the fit decodes whatever it is given and takes the early result only for that file."""
    if len(argv) > 2 and argv[1] == "fit" and os.path.basename(argv[0]) in ("pixlearn", "__main__.py"):
        for arg in argv[2:]:
            if not arg.startswith("-") and decode_ahead(arg):
                return


# A command's start-up: with the collector running, importing torch and the rest triggers
# collections that walk tens of thousands of objects which all stay alive: 0.3-0.5 s of each
# command on a 2-core machine. Paused for the imports (and restored as it was); `main` also
# freezes every object before the interpreter exits.
_collecting = gc.isenabled()
gc.disable()
try:
    from pixlearn.core.images import decode_ahead  # Pillow and numpy, no torch

    _decode_the_image_ahead(sys.argv)
    from pixlearn.cli.common import app
    from pixlearn.cli.main import main
finally:
    # The imported modules' objects live as long as the process: frozen, the first collection after
    # re-enabling (a full one, 0.1-0.14 s, over everything imported) and every later one skip them.
    gc.freeze()
    if _collecting:
        gc.enable()

__all__ = ["app", "main"]
