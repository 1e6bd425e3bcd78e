"""The command's start-up, done by `pixlearn.cli.main` alone (importing the package does none of it,
tests/test_import_side_effects.py): the collector paused for the imports, the fit's image decoded
beside them, the imported objects frozen, and a freeze at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn import cli
from pixlearn.core.imaging import images


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)).save(path)
    return path


def test_the_command_decodes_the_fit_image_ahead_and_nothing_else(photo, monkeypatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(images, "decode_ahead", lambda path: started.append(path) or path == str(photo))
    cli._decode_the_image_ahead(["fit", "--model", "seed-deep", str(photo), "--time", "30s"])
    assert started == ["seed-deep", str(photo)]  # the first argument that is an image file, then no more
    started.clear()
    cli._decode_the_image_ahead(["train", str(photo)])
    cli._decode_the_image_ahead(["fit"])
    cli._decode_the_image_ahead([])
    assert started == []


@pytest.mark.parametrize("collecting", [True, False])
def test_the_start_up_imports_with_the_collector_paused_and_leaves_it_as_it_was(collecting, photo) -> None:
    code = (
        "import gc, sys\n"
        f"{'' if collecting else 'gc.disable()'}\n"
        "import pixlearn.cli as cli\n"
        "from pixlearn.core.imaging import images\n"
        "real, seen = images.decode_ahead, []\n"
        "images.decode_ahead = lambda path: seen.append(('torch' in sys.modules, gc.isenabled())) or real(path)\n"
        "assert 'torch' not in sys.modules and gc.get_freeze_count() == 0\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(phase))\n"
        "app = cli._start_up(['fit', sys.argv[1]])\n"
        "print(gc.isenabled(), len(runs) // 2, 'torch' in sys.modules, gc.get_freeze_count() > 0,\n"
        "      seen == [(False, False)], str(images._AHEAD.get(sys.argv[1], '')) != '', app is cli.app)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(photo)], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    # torch and the rest imported with the collector running: hundreds of collections; paused, none
    assert out[0] == str(collecting) and int(out[1]) == 0 and out[2] == "True"
    assert out[3] == "True"  # the imported objects frozen
    assert out[4] == "True"  # the image's decoding started before torch's import, with the collector paused
    assert out[5] == "True" and out[6] == "True"


def test_main_freezes_the_objects_before_the_interpreter_exits(monkeypatch) -> None:
    import atexit
    import gc

    order: list[object] = []
    monkeypatch.setattr(cli, "_start_up", lambda args: order.append(("start-up", args)) or cli.app)
    monkeypatch.setattr(atexit, "register", order.append)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and order == [("start-up", ["--help"]), gc.freeze]


def test_main_reads_sys_argv_when_given_no_arguments(monkeypatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(sys, "argv", ["pixlearn", "models"])
    monkeypatch.setattr(cli, "_start_up", lambda args: seen.append(args) or (lambda **kwargs: seen.append(kwargs)))
    monkeypatch.setattr("atexit.register", lambda function: None)
    cli.main()
    assert seen == [["models"], {"args": ["models"], "prog_name": "pixlearn"}]
