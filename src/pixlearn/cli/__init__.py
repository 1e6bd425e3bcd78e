"""The `pixlearn` command: a thin layer over the API. Each verb parses options, calls one API
function and prints its result; nothing is computed here.

`common` holds the Typer app, the error boundary and printing helpers; one module per job
(`classify`, `field`, `report`) registers its verbs; `main` brings them together.
"""

from __future__ import annotations

import gc

# A command's start-up: with the collector running, importing torch and the rest triggers
# collections that walk tens of thousands of objects which all stay alive: 0.3-0.5 s of each
# command on a 2-core machine. Paused for the imports (and restored as it was); `main` also
# freezes every object before the interpreter exits.
_collecting = gc.isenabled()
gc.disable()
try:
    from pixlearn.cli.common import app
    from pixlearn.cli.main import main
finally:
    # The imported modules' objects live as long as the process: frozen, the first collection after
    # re-enabling (a full one, 0.1-0.14 s, over everything imported) and every later one skip them.
    gc.freeze()
    if _collecting:
        gc.enable()

__all__ = ["app", "main"]
