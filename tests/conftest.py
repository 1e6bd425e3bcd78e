"""Shared fixtures: small generated folder trees in the seed's shape (train/city/buildings/x.png)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# More threads than cores only adds contention: the suite's workers (pytest-xdist, `make test`) share
# the machine's cores between them, and every subprocess a test starts inherits the count.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // _WORKERS)))

SEED_GROUPS = {"city": ("buildings", "street"), "nature": ("forest", "sea")}


def stripes(kind: str, size: tuple[int, int], rng: np.random.Generator, rgb: bool = False) -> Image.Image:
    """City images have vertical stripes, nature images horizontal ones, plus noise: easy to learn."""
    w, h = size
    period = int(rng.integers(4, 8))
    phase = int(rng.integers(0, period))
    axis = np.arange(w if kind == "city" else h)
    line = ((axis + phase) // (period // 2) % 2) * 180 + 40
    arr = np.tile(line, (h, 1)) if kind == "city" else np.tile(line[:, None], (1, w))
    arr = np.clip(arr + rng.normal(0, 20, arr.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(arr, mode="L")
    return image.convert("RGB") if rgb else image


def make_tree(
    root: Path,
    per_leaf: dict[str, int] | None = None,
    groups: dict[str, tuple[str, ...]] | None = None,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = ((40, 40), (48, 36)),
) -> Path:
    """root/{train,test}/GROUP/LEAF/img_N.(png|jpg), with images of a few sizes and both formats."""
    per_leaf = per_leaf or {"train": 8, "test": 3}
    groups = groups or SEED_GROUPS
    rng = np.random.default_rng(seed)
    for split, n in per_leaf.items():
        for group, leaves in groups.items():
            for leaf in leaves:
                folder = root / split / group / leaf
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    image = stripes(group, sizes[i % len(sizes)], rng)
                    suffix = ".png" if i % 2 == 0 else ".jpg"
                    image.save(folder / f"img_{i}{suffix}", quality=95)
    return root


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each module on one worker (its shared module fixtures are built once), except tests
    marked `spread`: long and independent, they balance the workers best one by one, and start first
    so that no worker is left with one of them at the end."""
    items.sort(key=lambda item: item.get_closest_marker("spread") is None)  # stable: modules stay together
    for item in items:
        if item.get_closest_marker("spread") is None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


TAGS = ("bar", "square", "stripes")


def draw_tags(rng: np.random.Generator, labels: set[str], side: int = 32) -> Image.Image:
    """Noise, plus a feature per tag: vertical stripes on the left, a bright square, a dark bar at the top."""
    arr = rng.normal(90, 12, (side, side))
    if "stripes" in labels:
        arr[:, : side // 2 : 4] = 230
    if "square" in labels:
        at = int(rng.integers(side // 2, side - 9))
        arr[at : at + 8, at : at + 8] = 255
    if "bar" in labels:
        arr[2:6, 2 : side - 2] = 0
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def make_label_csv(root: Path, n: int = 160, seed: int = 0, splits: bool = False) -> Path:
    """root/labels.csv (path,labels[,split]) of many labels per image over n images root/img{i}.png, whose
    tags (bar 30%, square and stripes 50% each, independently) are the features drawn."""
    import csv

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = [["path", "labels", *(["split"] if splits else [])]]
    for i in range(n):
        labels = {name for name, p in zip(TAGS, (0.3, 0.5, 0.5), strict=True) if rng.random() < p}
        draw_tags(rng, labels).save(root / f"img{i}.png")
        split = ["train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")] if splits else []
        rows.append([f"img{i}.png", "|".join(sorted(labels)), *split])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root / "labels.csv"


def pytest_terminal_summary(terminalreporter) -> None:
    from tests import hostile

    if hostile.COUNTS:
        terminalreporter.write_line(hostile.summary())


@pytest.fixture
def seed_tree(tmp_path: Path) -> Path:
    """A tiny seed-style tree: 2 groups x 2 leaves, 8 train and 3 test images per leaf."""
    return make_tree(tmp_path / "data")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small finished classification run, shared by tests that only read it."""
    from pixlearn.classify.training.loop import TrainConfig, train

    root = tmp_path_factory.mktemp("shared")
    data = make_tree(root / "data")
    # onecycle ends at a small learning rate, which lets batch-norm statistics settle on tiny data
    config = TrainConfig(
        model="resnet-small", size=32, color="grayscale", epochs=8, batch_size=8, lr=3e-3, schedule="onecycle", seed=0
    )
    train(data, root / "run", config)
    return root / "run"
