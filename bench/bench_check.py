"""`pixlearn check` (issue 16) on a corrupted copy of Fashion-MNIST with known plants, as a whole command.

The tree (seeded, numpy default_rng(SEED), written to a temporary folder as 28x28 PNG files named by a
shuffled number, so no name gives a plant away):

- test/CLASS/: 2,000 Fashion-MNIST test images;
- train/CLASS/: 10,000 images: 9,900 Fashion-MNIST training images, 5% of the training labels
  (500 of those 9,900) flipped at random to another class (written into that class's folder),
  50 test images copied into train as near duplicates (resized by a factor in [0.9, 1.1], so
  25-31 px a side, and re-encoded as JPEG at quality 75-95, in their true class), and 50 exact
  duplicates (training images saved again as PNG at another compression level and with another
  name: other bytes, the same pixels), in the same folder as their original.

`python -m pixlearn check TREE --out OUT` runs as a child process; its wall time is the whole
command (start-up, decoding, embeddings, every finding, the CSVs and check.html). Scored from the CSVs:

- exact duplicates: recall = planted (original, copy) pairs found with kind exact / 50;
  precision = those / all exact pairs reported;
- near-duplicate leaks: recall = planted (test image, train copy) pairs found between splits
  (kind near-hash or near-embedding) / 50; precision = those / all near pairs reported between splits
  (strict: against the plants alone);
- leaks+genuine: the same recall; precision also counts as true the unplanted leaks that are Fashion-MNIST's
  own train/test duplicates beyond doubt: pixel-identical once decoded, or 16x16 thumbnails within 4 grey
  levels everywhere. Each unplanted leak is printed with its reason; one that is only (same class) at least as
  close at 28x28 as the median planted copy is printed as such for a look, not counted: some same-class
  look-alikes of Fashion-MNIST are that close too;
- label errors: recall = flipped images in label_issues.csv / 500; precision = those / all rows. The label rule's
  threshold (`label_issues.MAX_GIVEN`) was chosen on the tree of seed 16; `--seed 17` is the held-out tree.

Fashion-MNIST has duplicates and wrong labels of its own, so a finding that was not planted is not
necessarily wrong: the precisions are lower bounds, and the unplanted findings are counted.
Targets: exact recall 1.0; leaks recall >= 0.95 with precision >= 0.9; label errors recall >= 0.8
with precision >= 0.6; under 3 minutes end to end on 2 cores.

    python bench/bench_check.py                     # about 1-3 minutes on 2 idle cores (the tree, then one check)
    python bench/bench_check.py --keep /tmp/fm-check --args "--size 96"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, require_fashion, scratch  # noqa: E402

from pixlearn.core.storage import rundir  # noqa: E402

SEED = 16
N_TRAIN, N_TEST, N_FLIP, N_NEAR, N_EXACT = 10_000, 2_000, 500, 50, 50
# The strict leak row is a lower bound (Fashion-MNIST has duplicates of its own): printed, judged on leaks+genuine
TARGETS = {"exact": (1.0, 0.0), "leaks": None, "leaks+genuine": (0.95, 0.9), "labels": (0.8, 0.6)}
IDENTICAL = ("pixel-identical", "near-identical")  # the reasons leaks+genuine counts
THUMB_LEVELS = 4  # grey levels (of 255) two 16x16 thumbnails may differ by and still be one picture
TIME_TARGET_S = 180
TIMEOUT_S = 1800


def build_tree(out: Path, seed: int = SEED) -> dict[str, set]:
    """Write the corrupted tree under `out`; returns the plants: exact and near pairs, flipped paths."""
    from pixlearn.classify.data.datasets import FASHION_CLASSES, read_fashion_mnist

    rng = np.random.default_rng(seed)
    train, test = read_fashion_mnist(require_fashion(), "train"), read_fashion_mnist(require_fashion(), "test")
    originals = rng.choice(len(train), N_TRAIN - N_NEAR - N_EXACT, replace=False)
    test_pick = rng.choice(len(test), N_TEST, replace=False)
    names = iter(rng.permutation(N_TRAIN + N_TEST))
    labels = train.labels[originals].copy()
    flipped = rng.choice(len(originals), N_FLIP, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, len(FASHION_CLASSES), N_FLIP)) % len(FASHION_CLASSES)
    sources = rng.choice(np.setdiff1d(np.arange(len(originals)), flipped), N_EXACT, replace=False)

    def save(image: Image.Image, split: str, label: int, ext: str = "png", **kw: int) -> str:
        path = out / split / FASHION_CLASSES[label] / f"{next(names):05d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **kw)
        return str(path)

    train_paths = [
        save(Image.fromarray(train.images[i]), "train", int(y), compress_level=1)
        for i, y in zip(originals, labels, strict=True)
    ]
    test_paths = [
        save(Image.fromarray(test.images[i]), "test", int(test.labels[i]), compress_level=1) for i in test_pick
    ]
    exact = set()
    for s in sources:
        copy = save(Image.open(train_paths[s]), "train", int(labels[s]), compress_level=9)
        exact.add(frozenset((train_paths[s], copy)))
    near = set()
    for t in rng.choice(N_TEST, N_NEAR, replace=False):
        side = int(round(28 * rng.uniform(0.9, 1.1)))
        image = Image.open(test_paths[t]).resize((side, side), Image.Resampling.BILINEAR)
        copy = save(image, "train", int(test.labels[test_pick[t]]), "jpg", quality=int(rng.integers(75, 96)))
        near.add((test_paths[t], copy))
    return {"exact": exact, "near": near, "flipped": {train_paths[i] for i in flipped}}


def read_rows(path: Path) -> list[dict[str, str]]:
    return rundir.read_csv(path)


def _grey28(path: str) -> np.ndarray:
    """A file's grey pixels at Fashion-MNIST's 28x28 (area-averaged where a copy was resized)."""
    image = Image.open(path).convert("L")
    return np.asarray(image.resize((28, 28), Image.Resampling.BOX) if image.size != (28, 28) else image, float)


def closeness(path_a: str, path_b: str) -> tuple[float, float]:
    """(correlation, mean absolute difference in grey levels) of two files at 28x28."""
    a, b = _grey28(path_a), _grey28(path_b)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1]), float(np.abs(a - b).mean())


def planted_median(pairs: set[tuple[str, str]]) -> tuple[float, float]:
    """The median planted copy's closeness to its original: (correlation, mean absolute difference)."""
    values = np.array([closeness(a, b) for a, b in sorted(pairs)])
    return float(np.median(values[:, 0])), float(np.median(values[:, 1]))


def same_picture(path_a: str, path_b: str, median: tuple[float, float]) -> str | None:
    """Why two files are one picture, or None: `pixel-identical` (the same grey pixels at their own
    size), `near-identical` (16x16 area-averaged thumbnails within THUMB_LEVELS grey levels everywhere,
    a difference no eye sees) or `as close as a planted copy` (the same class folder and, at 28x28, a
    correlation and a mean absolute difference at least as good as the median planted copy's: a copy by
    the benchmark's own standard, whatever the checker measures)."""
    a, b = (Image.open(p).convert("L") for p in (path_a, path_b))
    if a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b)):
        return "pixel-identical"
    ta, tb = (np.asarray(x.resize((16, 16), Image.Resampling.BOX), dtype=np.int16) for x in (a, b))
    if np.abs(ta - tb).max() <= THUMB_LEVELS:
        return "near-identical"
    correlation, difference = closeness(path_a, path_b)
    same_class = Path(path_a).parent.name == Path(path_b).parent.name
    if same_class and correlation >= median[0] and difference <= median[1]:
        return f"as close as a planted copy (correlation {correlation:.4f}, mean difference {difference:.1f} levels)"
    return None  # printed: not identical


def score(out: Path, plants: dict[str, set]) -> dict[str, tuple[int, int, int, int]]:
    """kind -> (planted found, true findings, reported, planted) from the check directory's CSVs. The true
    findings are the planted ones found, except in `leaks+genuine`, which adds the unplanted leaks that
    `same_picture` shows to be Fashion-MNIST's own train/test duplicates (its recall stays against the plants)."""
    pairs = read_rows(out / "duplicates.csv")
    exact = {frozenset((r["path_a"], r["path_b"])) for r in pairs if r["kind"] == "exact"}
    leaks = {(r["path_a"], r["path_b"]) for r in pairs if r["kind"] != "exact" and r["same_split"] == "False"}
    flagged = {r["path"] for r in read_rows(out / "label_issues.csv")}
    median = planted_median(plants["near"])
    print(f"  the median planted copy: correlation {median[0]:.4f}, mean difference {median[1]:.1f} levels at 28x28")
    genuine = {pair: same_picture(*pair, median) for pair in sorted(leaks - plants["near"])}
    for (a, b), why in genuine.items():
        counted = "" if why in IDENTICAL else " (not counted)"
        print(f"  unplanted leak {a} {b}: {why or 'not identical'}{counted}")
    found_exact, found_leaks = len(exact & plants["exact"]), len(leaks & plants["near"])
    found_labels = len(flagged & plants["flipped"])
    # counted: one picture beyond doubt; "as close as a planted copy" is printed for a look, not counted (on
    # Fashion-MNIST that closeness also holds for some same-class look-alikes)
    true_leaks = found_leaks + sum(why in IDENTICAL for why in genuine.values())
    return {
        "exact": (found_exact, found_exact, len(exact), len(plants["exact"])),
        "leaks": (found_leaks, found_leaks, len(leaks), len(plants["near"])),
        "leaks+genuine": (found_leaks, true_leaks, len(leaks), len(plants["near"])),
        "labels": (found_labels, found_labels, len(flagged), len(plants["flipped"])),
    }


def run_check(tree: Path, out: Path, extra: list[str]) -> float:
    """`python -m pixlearn check TREE --out OUT` as a child process; its wall seconds."""
    cmd = [sys.executable, "-m", "pixlearn", "check", str(tree), "--out", str(out), "--overwrite", *extra]
    print("  " + " ".join(shlex.quote(c) for c in cmd[1:]), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, "COLUMNS": "160"})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"check failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    print("\n".join("    " + line for line in proc.stdout.splitlines()[-16:]))
    return wall


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def report(scores: dict[str, tuple[int, int, int, int]], wall: float) -> bool:
    ok = True
    print(f"\n{'finding':<22} {'recall':>8} {'precision':>10} {'found':>6} {'reported':>9} {'unplanted':>10}  target")
    for kind, (found, true, reported, planted) in scores.items():
        recall, precision = found / planted, true / max(reported, 1)
        row = f"{kind:<22} {recall:>8.3f} {precision:>10.3f} {found:>6} {reported:>9} {reported - true:>10}  "
        if TARGETS[kind] is None:
            print(row + "lower bound: the target is judged on leaks+genuine")
            continue
        want_r, want_p = TARGETS[kind]
        met = recall >= want_r and precision >= want_p
        ok &= met
        print(row + f"recall >= {want_r}, precision >= {want_p}: {'met' if met else 'NOT met'}")
    met = wall < TIME_TARGET_S
    print(
        f"wall time of the command: {wall:.1f} s (target < {TIME_TARGET_S} s on 2 cores: {'met' if met else 'NOT met'})"
    )
    print(f"load average after: {load_average()}")
    return ok and met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Write the tree and the check here (kept) instead of a temp folder.")
    parser.add_argument("--args", default="", help="Extra options for pixlearn check, e.g. '--size 96'.")
    parser.add_argument("--seed", type=int, default=SEED)
    a = parser.parse_args()
    print(header("pixlearn check on corrupted Fashion-MNIST (issue 16)"))
    with scratch("check") as tmp:
        root = a.keep or Path(tmp)
        tree, out = root / "tree", root / "check"
        started = time.perf_counter()
        plants = build_tree(tree, a.seed)
        if a.keep:  # for looking at the findings afterwards
            kept = {k: sorted(sorted(x) if isinstance(x, frozenset) else x for x in v) for k, v in plants.items()}
            (root / "plants.json").write_text(json.dumps(kept))
        print(f"tree: {N_TRAIN:,} train / {N_TEST:,} test images, {N_FLIP} labels flipped, {N_NEAR} near-duplicate "
              f"leaks, {N_EXACT} exact duplicates ({time.perf_counter() - started:.1f} s to write)")  # fmt: skip
        print(f"load average before: {load_average()}")
        wall = run_check(tree, out, shlex.split(a.args))
        return 0 if report(score(out, plants), wall) else 1


if __name__ == "__main__":
    sys.exit(main())
