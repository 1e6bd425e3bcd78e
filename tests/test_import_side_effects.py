"""Importing pixlearn does no work: whatever a module is imported by (a test, a notebook, a tool that
walks the package), it starts no thread, leaves the garbage collector as it was, freezes nothing and
reads no `sys.argv`. The command's start-up work runs in `pixlearn.cli.main()` alone.

The check runs in a fresh interpreter, as a process that looks like `pixlearn fit IMAGE`: the case
where the command's start-up would act if it ran at import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Imports every module of the package with sys.argv set to `pixlearn fit IMAGE`, and prints what
# the imports did. Runs in a fresh interpreter; sys.argv[1] is the image.
IMPORT_EVERYTHING = r"""
import gc, importlib, json, pkgutil, sys, threading

reads = []

class RecordingArgv(list):
    pass

def recording(name):
    def read(self, *args, **kwargs):
        reads.append(name)
        return getattr(list, name)(self, *args, **kwargs)
    return read

for name in ("__getitem__", "__iter__", "__len__", "__contains__", "__reversed__", "__eq__", "__ne__",
             "__add__", "__mul__", "__repr__", "__reduce_ex__", "index", "count", "copy"):
    setattr(RecordingArgv, name, recording(name))

started = []
real_start = threading.Thread.start
def recording_start(self):
    started.append(self.name)
    return real_start(self)
threading.Thread.start = recording_start

image = sys.argv[1]
sys.argv = RecordingArgv(["pixlearn", "fit", image])
enabled, threshold = gc.isenabled(), gc.get_threshold()

import pixlearn
names, failed = [], []
for module in pkgutil.walk_packages(pixlearn.__path__, "pixlearn.", onerror=failed.append):
    names.append(module.name)
    importlib.import_module(module.name)

print(json.dumps({
    "modules": len(names),
    "failed": failed,
    "threads": threading.active_count(),
    "thread_names": [t.name for t in threading.enumerate()],
    "started": started,
    "gc_enabled_kept": gc.isenabled() == enabled,
    "threshold_kept": gc.get_threshold() == threshold,
    "frozen": gc.get_freeze_count(),
    "argv_reads": reads,
}))
"""


def import_everything(image: Path, env: dict[str, str] | None = None) -> dict:
    """What importing every module of the package did, in a fresh `pixlearn fit IMAGE` process."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, str(image)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_every_module_does_no_work(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)).save(image)
    found = import_everything(image)
    assert found["modules"] > 50 and found["failed"] == []  # the walk reached the whole package
    assert found["threads"] == 1, found["thread_names"]
    assert [name for name in found["started"] if name.startswith("pixlearn")] == []
    assert found["started"] == []  # nor any other thread, even one that ended before the count
    assert found["gc_enabled_kept"] and found["threshold_kept"]
    assert found["frozen"] == 0
    assert found["argv_reads"] == []
