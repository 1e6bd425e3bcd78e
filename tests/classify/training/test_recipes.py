"""Recipes (named presets), the Fashion-MNIST IDX reader and tree writer, and the speed options."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.classify.data.datasets import TOPS_VS_OTHER, fashion_mnist_tree, read_fashion_mnist, read_idx
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.classify.training.loop import TrainConfig
from pixlearn.classify.training.recipes import get_recipe, list_recipes
from pixlearn.cli import app
from pixlearn.core.devices import uses_bf16

runner = CliRunner()


def write_idx(path: Path, array: np.ndarray) -> Path:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


@pytest.fixture
def fake_fashion(tmp_path: Path) -> Path:
    """The four Fashion-MNIST files with 30 train and 20 test images: class i is a bar at row 2*i."""
    root = tmp_path / "fm"
    root.mkdir()
    for n, prefix in ((30, "train"), (20, "t10k")):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 4, 4:24] = 255
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def test_every_recipe_is_a_valid_config():
    assert {"fashion-mnist", "seed-fast"} <= set(list_recipes())
    for name in list_recipes():
        get_recipe(name).resolved()
    assert get_recipe("fashion-mnist", epochs=1).epochs == 1
    assert get_recipe("fashion-mnist").epochs > 1  # a fresh config each call, not a shared one


def test_unknown_recipe_and_option_are_named():
    with pytest.raises(ValueError, match="nope"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="colour"):
        get_recipe("fashion-mnist", colour="rgb")


def test_speed_options_are_checked():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16").resolved()
    with pytest.raises(ValueError, match="threads"):
        TrainConfig(threads=-1).resolved()
    assert uses_bf16("bf16", torch.device("cpu"))
    assert not uses_bf16("fp32", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision"):
        uses_bf16("fp16", torch.device("cpu"))


def test_read_idx_round_trip_and_errors(tmp_path: Path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="short.*holds 3"):
        read_idx(tmp_path / "short")
    with pytest.raises(ValueError, match="not found"):
        read_fashion_mnist(tmp_path, "train")


def test_fashion_tree_grouped_and_upscaled(fake_fashion: Path, tmp_path: Path):
    out = fashion_mnist_tree(fake_fashion, tmp_path / "tree", size=40, groups=TOPS_VS_OTHER, test_limit=10)
    splits = find_splits(out, LabelRule("first"))
    assert splits.classes == ["other", "tops"]
    assert (len(splits.train), len(splits.test)) == (30, 10)
    assert (out / "train" / "tops" / "coat" / "00004.png").exists()  # label 4 = coat, a top
    leaves = find_splits(out, LabelRule("leaf"))
    assert len(leaves.classes) == 10
    assert Image.open(out / "train" / "tops" / "coat" / "00004.png").size == (40, 40)


def test_cli_recipe_with_an_override(fake_fashion: Path, tmp_path: Path):
    # two labels, not ten: the run's figures and tables stay small, and only the saved options are checked here
    tree = fashion_mnist_tree(fake_fashion, tmp_path / "tree", groups=TOPS_VS_OTHER)
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", str(tree), "--recipe", "fashion-mnist", "--epochs", "1", "--batch-size", "8", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "airnet-small" and config["lr"] == get_recipe("fashion-mnist").lr
    assert (config["epochs"], config["batch_size"]) == (1, 8)  # typed options override the recipe
    bad = runner.invoke(app, ["train", str(tree), "--recipe", "nope", "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "nope" in bad.output


FREED_MEMORY_PROBE = """
import sys, torch
from pixlearn.core.devices import keep_freed_memory
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.ones(5 * 2**20)  # 20 MB, touched
before = rss_mb()
del x
print(before - rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_freed_activation_memory_is_kept_for_reuse():
    """After keep_freed_memory a freed 20 MB block stays in the process (no page faults when the next
    batch needs it); without it, glibc hands the block back to the system at once."""

    # Each mode needs a fresh process (the setting is process-wide); both start at once, as neither waits on
    # the other.
    procs = {mode: subprocess.Popen([sys.executable, "-c", FREED_MEMORY_PROBE, mode], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for mode in ("default", "keep")}  # fmt: skip
    outputs = {mode: proc.communicate() for mode, proc in procs.items()}

    def released_mb(mode: str) -> float:
        assert procs[mode].returncode == 0, outputs[mode][1]
        return float(outputs[mode][0].split()[-1])

    assert released_mb("default") > 15
    assert released_mb("keep") < 5
