"""Item 2: loading a folder (decode, grey conversion, resize to 150x150) against the peer's load_img loop.

Generated trees of PNG and JPEG files (default 5,000 each), of two shapes: `seed`, Fashion-MNIST
upscaled to 150x150 (the size the seed's photos already have: nothing to resize), and `photos`,
RGB crops of 300-480 px a side from scikit-image's sample photographs (decode, grey and resize
all do work). Per tree, interleaved round by round: pixlearn's decoding (`load_images`:
worker processes for 1,000 files or more, JPEG draft mode) and the peer's `keras.utils.load_img`
loop (the exact loop of `../shared/peers/keras_seed.py`, run in the peer's venv). Then the
second epoch: the decoded uint8 cache on disk (`pixlearn.streaming`, `--cache`) read in training
batches, against decoding again; and a later run that opens the cache again.

    python bench/bench_load.py                    # both shapes, about 10 minutes
    python bench/bench_load.py --trees photos --images 1000 --no-peer
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import torch
from common import header, interleave, median, peer_python, photo_tree, scratch, spread, tops_tree, verdict
from PIL import Image

from pixlearn.classify.data.decoding import DecodeOptions, load_images
from pixlearn.classify.data.folders import LabelRule, find_image_files, find_splits
from pixlearn.classify.data.streaming import open_stream

OPTIONS = DecodeOptions("grayscale", (150, 150), "squash")

# The peer's own loading loop (keras_seed.py's load()), timed over every file of the tree.
PEER_LOAD = """
import glob, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras
files = sorted(f for f in glob.glob(sys.argv[1] + "/**/*", recursive=True) if os.path.isfile(f))
t = time.perf_counter()
X = np.stack([keras.utils.img_to_array(keras.utils.load_img(
    f, color_mode="grayscale", target_size=(150, 150))) / 255.0 for f in files])
print("RESULT", len(files) / (time.perf_counter() - t))
"""


def pixlearn_load(root: Path):
    samples = find_splits(root, LabelRule("first")).train

    def measure() -> float:
        started = time.perf_counter()
        data = load_images(samples, OPTIONS)
        return len(data) / (time.perf_counter() - started)

    return measure


def peer_load(root: Path):
    def measure() -> float:
        proc = subprocess.run([str(peer_python()), "-c", PEER_LOAD, str(root)], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"peer load failed: {proc.stderr.strip()[-300:]}")
        return float(lines[-1].split()[1])

    return measure


def decode_only(root: Path):
    """Images/s of Pillow's decoding alone (open + load, no conversion or resize) on one core: the
    floor under any Pillow-based loader. For PNG (no reduced-scale decoding) the cores times this
    rate bounds what a loader can reach."""
    files = find_image_files(root)

    def measure() -> float:
        started = time.perf_counter()
        for path in files:
            with Image.open(path) as image:
                image.load()
        return len(files) / (time.perf_counter() - started)

    return measure


def cached_epoch(root: Path, cache: Path, batch_size: int = 64, repeats: int = 5) -> tuple[float, float, float]:
    """Images/s: building the cache (the first epoch), a later epoch of the same run read from it
    (median of `repeats`), and a later run that opens the cache again (checking every file's size
    and time) and reads one epoch."""
    splits = find_splits(root, LabelRule("first"))
    started = time.perf_counter()
    stream = open_stream(splits.train, OPTIONS, splits.classes, cache=cache)
    build = len(stream) / (time.perf_counter() - started)

    def one_epoch(s) -> int:
        return sum(len(x) for x, _ in s.batches(torch.randperm(len(s)).split(batch_size)))

    epochs, reopened = [], []
    for _ in range(repeats):  # an epoch from the cache takes a fraction of a second: one reading is noise
        started = time.perf_counter()
        epochs.append(one_epoch(stream) / (time.perf_counter() - started))
        started = time.perf_counter()
        again = open_stream(splits.train, OPTIONS, splits.classes, cache=cache)
        reopened.append(one_epoch(again) / (time.perf_counter() - started))
    return build, median(epochs), median(reopened)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images per tree (PNG and JPEG)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per tree")
    parser.add_argument("--no-peer", action="store_true", help="skip the Keras peer")
    parser.add_argument(
        "--trees", nargs="+", choices=("seed", "photos"), default=["seed", "photos"], help="tree shapes to measure"
    )
    args = parser.parse_args()
    print(header(f"bench_load: decode + grey + resize to 150x150, {args.images} images per tree"))
    peer = not args.no_peer and peer_python().exists()
    if not peer:
        print(f"  peer skipped ({peer_python()} missing or --no-peer)")
    with scratch("load") as tmp:
        for shape, fmt in [(shape, fmt) for shape in args.trees for fmt in ("png", "jpg")]:
            folder = Path(tmp) / f"{shape}-{fmt}"
            if shape == "seed":
                root = tops_tree(folder, args.images, 0, 150, fmt)
            else:
                root = photo_tree(folder, args.images, fmt)
            measures = {"pixlearn": pixlearn_load(root)}
            if peer:
                measures["keras load_img"] = peer_load(root)
            if fmt == "png":
                measures["Pillow decode only, 1 core"] = decode_only(root)
            results = interleave(measures, args.rounds)
            build, cached, reopened = cached_epoch(root, Path(tmp) / f"cache-{shape}-{fmt}")
            print(f"\n{shape} tree, {fmt.upper()}, {args.images} files: images/s median (min-max)")
            for name, values in results.items():
                print(f"  {name:<16} {spread(values)}")
            ours = median(results["pixlearn"])
            if peer:
                print(f"  pixlearn vs keras load_img : {verdict(ours / median(results['keras load_img']), 3)}")
            if peer and fmt == "png":
                cores = os.cpu_count() or 1
                bound = cores * median(results["Pillow decode only, 1 core"]) / median(results["keras load_img"])
                print(f"  bound for any Pillow loader on {cores} cores (decode only, no resize): {bound:.2f}x the peer")
            print(f"  first epoch writing the uint8 cache: {build:,.0f} images/s")
            print(f"  second epoch from the cache, in batches of 64: {cached:,.0f} images/s")
            print(f"  a later run: reopen the cache (stat every file) + one epoch: {reopened:,.0f} images/s")
            print(f"  cached epoch vs decoding again : {verdict(cached / ours, 20)}")


if __name__ == "__main__":
    main()
