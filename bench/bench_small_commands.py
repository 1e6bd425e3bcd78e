"""Small whole commands, where start-up is most of the wait: two source trees of pixlearn side by side.

    python bench/bench_small_commands.py --old OLD_SRC --new NEW_SRC [--rounds 5]

OLD_SRC and NEW_SRC are `src` folders (for example of `git worktree add` checkouts of two revisions); each
command runs as `python -m pixlearn ...` with that folder first on PYTHONPATH, old and new in turn, the order
reversed every other round. The commands are the README's first ones on a small tree (36 training images
of 40x40, `--size 32 --epochs 2`), a 64x64 `compress` and a `check`. Prints each command's median wall
seconds (min-max) and the old / new ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, header, median, spread  # noqa: E402

sys.path.insert(0, str(REPO))
from tests.conftest import make_tree  # noqa: E402

COMMANDS = {
    "train": ["train", "data", "--out", "runs/{tag}", "--size", "32", "--epochs", "2", "--overwrite"],
    "evaluate": ["evaluate", "runs/{tag}", "data/test"],
    "predict": ["predict", "runs/{tag}", "data/test", "--csv", "pred-{tag}-{r}.csv"],
    "compress": ["compress", "photo.png", "-o", "photo-{tag}.pxl", "--bpp", "0.5"],
    "check": ["check", "data", "--out", "checks/{tag}", "--overwrite", "--embeddings", "pixels"],
}


def workspace(root: Path) -> None:
    groups = {"city": ("buildings", "street"), "nature": ("forest", "glacier", "mountain", "sea")}
    make_tree(root / "data", per_leaf={"train": 6, "test": 2}, groups=groups)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "photo.png")


def timed(src: Path, args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pixlearn", *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed with {src}:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True)
    parser.add_argument("--new", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(header("small whole commands: start-up and all, two source trees"))
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pixlearn-small-") as tmp:
        cwd = Path(tmp)
        workspace(cwd)
        for r in range(args.rounds):
            tags = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for name, command in COMMANDS.items():
                for tag in tags:
                    argv = [a.format(tag=tag, r=r) for a in command]
                    times.setdefault((name, tag), []).append(timed(trees[tag], argv, cwd))
            print(f"round {r + 1} done", flush=True)
    print("\nwall seconds, median (min-max)")
    for name in COMMANDS:
        old, new = times[(name, "old")], times[(name, "new")]
        print(f"  {name:9s} old {spread(old, 2)}  new {spread(new, 2)}  old/new {median(old) / median(new):.2f}x")


if __name__ == "__main__":
    main()
