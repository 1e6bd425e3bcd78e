"""The data trees of bench/bench_transfer.py (issue 15): Twemoji from the npm tarball, Fashion-MNIST 100 a class."""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from tests.paths import ROOT

BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_transfer")
    finally:
        sys.path.remove(str(BENCH))


def png_bytes(color: tuple[int, int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def fake_tarball(path: Path, entries: list[dict], images: list[str]) -> Path:
    """A tarball laid out as emoji-datasource-twitter's: package/emoji.json, package/img/twitter/64/*.png."""
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("package/emoji.json", json.dumps(entries).encode())
        for i, image in enumerate(images):
            add(f"package/img/twitter/64/{image}", png_bytes((i * 40 % 256, 100, 50, 255)))
        add("package/img/twitter/sheets/64.png", png_bytes((0, 0, 0, 0)))  # not an emoji image
    return path


def entry(unified: str, category: str, subcategory: str) -> dict:
    return {"unified": unified, "image": f"{unified.lower()}.png", "category": category, "subcategory": subcategory}


def test_twemoji_tree_layout_split_and_labels(bench, tmp_path):
    from pixlearn.classify.data.folders import LabelRule, find_splits

    entries = [entry(f"1F{600 + i:03X}", "Smileys & Emotion", "face-smiling") for i in range(30)]
    entries += [entry(f"1F{700 + i:03X}", "Food & Drink", "food-fruit") for i in range(30)]
    entries += [entry("1F3FB", "Component", "skin-tone"), entry("1F9FF", "Objects", "missing-image")]
    images = [e["image"] for e in entries if e["unified"] != "1F9FF"]
    tgz = fake_tarball(tmp_path / "emoji.tgz", entries, images)

    counts = bench.twemoji_tree(tgz, tmp_path / "tree")

    files = sorted(p.relative_to(tmp_path / "tree") for p in (tmp_path / "tree").rglob("*.png"))
    assert len(files) == 60  # Component left out, the entry without an image skipped
    assert {p.parts[1] for p in files} == {"Smileys & Emotion", "Food & Drink"}
    for p in files:
        unified = p.stem.upper()
        assert p.parts[0] == ("test" if hashlib.sha256(unified.encode()).digest()[0] < 0.2 * 256 else "train")
        assert len(p.parts) == 4  # split / category / subcategory / file
    assert sum(counts["train"].values()) + sum(counts["test"].values()) == 60
    assert 0 < sum(counts["test"].values()) < 30
    splits = find_splits(tmp_path / "tree", LabelRule("first"), val_split=0.0, seed=0)
    assert splits.classes == ["Food & Drink", "Smileys & Emotion"]  # the category, pixlearn's default labels


def test_twemoji_quick_share_keeps_a_stable_subset(bench, tmp_path):
    entries = [entry(f"1F{600 + i:03X}", "Objects", "tool") for i in range(80)]
    tgz = fake_tarball(tmp_path / "emoji.tgz", entries, [e["image"] for e in entries])
    full = bench.twemoji_tree(tgz, tmp_path / "full")
    part = bench.twemoji_tree(tgz, tmp_path / "part", share=0.25)
    n_full = sum(sum(c.values()) for c in full.values())
    n_part = sum(sum(c.values()) for c in part.values())
    assert n_full == 80 and 0 < n_part < 40
    kept = {p.name for p in (tmp_path / "part").rglob("*.png")}
    assert kept <= {p.name for p in (tmp_path / "full").rglob("*.png")}


def test_twemoji_tarball_is_checked(bench, tmp_path):
    tgz = fake_tarball(tmp_path / "emoji.tgz", [], [])
    with pytest.raises(bench.BenchmarkFailed, match="SHA-512"):
        bench.twemoji_tarball(tgz)
    with pytest.raises(bench.BenchmarkFailed, match="no such file"):
        bench.twemoji_tarball(tmp_path / "absent.tgz")


def test_epochs_arg(bench):
    assert bench.epochs_arg(["--size", 64, "--epochs", 30], 3) == ["--size", 64, "--epochs", 3]
    assert bench.epochs_arg(["--size", 64], 2) == ["--size", 64, "--epochs", 2]


@pytest.mark.slow
def test_fashion100_tree(bench, tmp_path):
    import common

    from pixlearn.classify.data.datasets import FASHION_CLASSES

    if not (common.fashion_dir() / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not found")
    root = bench.fashion100_tree(tmp_path / "fm", per_class=3, n_test=25)
    train = sorted((root / "train").rglob("*.png"))
    assert len(train) == 30 and len(list((root / "test").rglob("*.png"))) == 25
    assert {p.parent.name for p in train} == set(FASHION_CLASSES)
    assert all(len(list((root / "train" / c).iterdir())) == 3 for c in {p.parent.name for p in train})
    again = bench.fashion100_tree(tmp_path / "fm2", per_class=3, n_test=25)
    assert [p.read_bytes() for p in train] == [p.read_bytes() for p in sorted((again / "train").rglob("*.png"))]
