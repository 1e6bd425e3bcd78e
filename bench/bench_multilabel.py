"""Many labels per image (issue 30) on Fashion-MNIST mosaics, as whole commands.

The set (seeded, numpy default_rng(seed)): each image is a 2x2 mosaic (56x56 grey) of 1 to 4 garments of
distinct classes in random cells (the other cells black); its labels are the classes of the garments in
it, joined by `|`. Training mosaics are drawn from Fashion-MNIST's training images, test mosaics from
its test images (never seen in training, as garments or as mosaics); one CSV with a `split` column.

`pixlearn train labels.csv --multi-label --out RUN` with nothing else (the defaults are the target) runs as
a child process, then the figures are read from RUN/metrics.json (the final evaluation: the test rows):
mean average precision (macro), subset accuracy, Hamming loss, and the command's wall time. `--pretrained`
adds the same run from EfficientNet-Lite0's ImageNet weights (its defaults for fine-tuning).

Targets (the defaults, from scratch): mAP >= 0.97 and subset accuracy >= 0.75 within 25 minutes on two
cores. For scale: a plain 3-block CNN with one-cycle AdamW, a 0.5 threshold and no augmentation reached
mAP 0.965 and subset accuracy 0.70 in 12 epochs (9 minutes).

    python bench/bench_multilabel.py                       # from scratch, the default 4,000 / 1,000 mosaics
    python bench/bench_multilabel.py --pretrained          # and from ImageNet weights
    python bench/bench_multilabel.py --train 1000 --test 300 --args "--epochs 3"   # a quick look
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name, header, require_fashion, scratch  # noqa: E402

from pixlearn.classify.data.datasets import FASHION_CLASSES, read_fashion_mnist  # noqa: E402

TARGET_MAP, TARGET_SUBSET, TARGET_MINUTES = 0.97, 0.75, 25.0


def mosaic(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """One 56x56 mosaic of 1-4 garments of distinct classes, and their class names."""
    count = int(rng.integers(1, 5))
    classes = rng.choice(len(FASHION_CLASSES), size=count, replace=False)
    cells = rng.choice(4, size=count, replace=False)
    out = np.zeros((56, 56), dtype=np.uint8)
    for k, cell in zip(classes, cells, strict=True):
        pick = int(rng.choice(np.flatnonzero(labels == k)))
        row, col = divmod(int(cell), 2)
        out[row * 28 : row * 28 + 28, col * 28 : col * 28 + 28] = images[pick]
    return out, sorted(FASHION_CLASSES[k] for k in classes)


def build(out: Path, n_train: int, n_test: int, seed: int) -> Path:
    """OUT/labels.csv and OUT/images/*.png; test mosaics from Fashion-MNIST's test images only."""
    fashion = require_fashion()
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, count, source in (("train", n_train, "train"), ("test", n_test, "test")):
        data = read_fashion_mnist(fashion, source)
        for i in range(count):
            image, names = mosaic(rng, data.images, data.labels)
            name = f"images/{split}_{i:05d}.png"
            Image.fromarray(image).save(out / name)
            rows.append([name, "|".join(names), split])
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["path", "labels", "split"], *rows])
    return out / "labels.csv"


def run(labels: Path, out: Path, extra: list[str]) -> dict[str, float]:
    command = [sys.executable, "-m", "pixlearn", "train", str(labels), "--multi-label", "--out", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"map": metrics["test_map_macro"], "map_micro": metrics["test_map_micro"],
            "subset": metrics["test_subset_accuracy"], "hamming": metrics["test_hamming_loss"],
            "epochs": metrics["epochs_run"], "minutes": wall / 60}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=4000, help="training mosaics")
    parser.add_argument("--test", type=int, default=1000, help="test mosaics (from the test images)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrained", action="store_true", help="also from ImageNet weights (efficientnet-lite0)")
    parser.add_argument("--args", default="", help="extra train options (the target is for none)")
    parser.add_argument("--keep", type=Path, help="build the set and the runs here and keep them")
    args = parser.parse_args()
    print(header(f"Multi-label Fashion-MNIST mosaics: {args.train:,} train, {args.test:,} test, seed {args.seed}"))
    print(f"machine: {cpu_name()}")
    with scratch("multilabel") as tmp:
        root = args.keep or Path(tmp)
        labels = build(root / "data", args.train, args.test, args.seed)
        setups = {"scratch (defaults)": shlex.split(args.args)}
        if args.pretrained:
            setups["pretrained lite0 (defaults)"] = [
                "--pretrained",
                "--model",
                "efficientnet-lite0",
                *shlex.split(args.args),
            ]
        print(f"{'setup':30} {'mAP':>7} {'micro':>7} {'subset':>7} {'Hamming':>8} {'epochs':>6} {'minutes':>8}")
        for name, extra in setups.items():
            found = run(labels, root / name.split()[0], extra)
            print(f"{name:30} {found['map']:7.4f} {found['map_micro']:7.4f} {found['subset']:7.4f} "
                  f"{found['hamming']:8.4f} {found['epochs']:6d} {found['minutes']:8.1f}", flush=True)  # fmt: skip
            if name.startswith("scratch") and not args.args:
                met = found["map"] >= TARGET_MAP and found["subset"] >= TARGET_SUBSET
                met = met and found["minutes"] <= TARGET_MINUTES
                print(f"target (mAP >= {TARGET_MAP}, subset >= {TARGET_SUBSET}, <= {TARGET_MINUTES:g} min): "
                      f"{'met' if met else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
