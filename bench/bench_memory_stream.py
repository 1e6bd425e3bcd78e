"""Peak memory of training as the folder grows from 2,000 to 20,000 images: streaming vs in memory.

Claim checked: with --stream, peak resident memory stays flat (within 200 MB) from 2,000 to
20,000 images, while in memory it grows with the folder (one uint8 copy of every decoded image).

Images: Fashion-MNIST (28x28 grey) written as PNG class folders to a temporary directory, then
decoded as the seed does (150x150 grey, batch 32) for one epoch of a tiny probe network, 20% held out. Each
(mode, size) runs in its own fresh subprocess, so ru_maxrss is that run's peak alone.

    python bench/bench_memory_stream.py                    # stream and memory, 2,000 and 20,000
    python bench/bench_memory_stream.py --modes stream cache --sizes 2000 20000

Data: $PIXLEARN_SHARED/fashion-mnist, else ../shared/data/fashion-mnist beside the repository.
Figures measured and the command used: bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
MODES = {"stream": {"stream": True}, "memory": {}, "cache": {"cache": "CACHE"}}
LIMIT_MB = 200.0  # the claim: streaming's peak grows by less than this from the smallest to the largest folder


def fashion_mnist_dir() -> Path:
    shared = os.environ.get("PIXLEARN_SHARED")
    folder = Path(shared) / "fashion-mnist" if shared else REPO.parent / "shared" / "data" / "fashion-mnist"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        raise SystemExit(f"Fashion-MNIST not found in {folder}; set PIXLEARN_SHARED to the folder holding it")
    return folder


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_folder(root: Path, n: int) -> Path:
    """root/LABEL/NNNNN.png for the first n Fashion-MNIST training images."""
    from PIL import Image

    source = fashion_mnist_dir()
    images = read_idx(source / "train-images-idx3-ubyte.gz")[:n]
    labels = read_idx(source / "train-labels-idx1-ubyte.gz")[:n]
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image, mode="L").save(root / CLASSES[label] / f"{i:05d}.png", compress_level=1)
    return root


# ---------------------------------------------------------------------------------- one measured run


class PeakSampler(threading.Thread):
    """Polls /proc/self/status: peak anonymous memory apart from file-backed (memory-mapped) pages."""

    def __init__(self, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.every_s, self.peak, self.running = every_s, {"RssAnon": 0, "RssFile": 0}, True

    def run(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(line.split()[1]))
            time.sleep(self.every_s)


def register_probe_model() -> None:
    """A deliberately tiny classifier: the figures measure the data path, not a network's activations
    (seed-cnn's own activations at 150x150 take over 1 GB, the same at any folder size)."""
    from torch import nn

    from pixlearn.models.registry import register_model

    @register_model("bench-probe", "classify", "Benchmark only: one strided convolution and a linear head.", 150)
    def bench_probe(in_channels: int = 1, num_classes: int = 10, input_size: tuple[int, int] = (150, 150)) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(128, num_classes),
        )  # fmt: skip


def child(data: Path, mode: str, cache: Path, out: Path) -> None:
    """Train once and print one JSON line of figures (run in a fresh process)."""
    from pixlearn.classify.training.loop import TrainConfig, train

    register_probe_model()
    options = {k: (str(cache) if v == "CACHE" else v) for k, v in MODES[mode].items()}
    config = TrainConfig(
        model="bench-probe", size=150, color="grayscale", epochs=1, batch_size=32, seed=0, workers=2, **options
    )
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    result = train(data, out, config, overwrite=True)
    seconds = time.perf_counter() - started
    sampler.running = False
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    last = result.history[-1].val_accuracy
    print(
        json.dumps(
            {
                "peak_rss_mb": round(me, 1),
                "peak_worker_rss_mb": round(workers, 1),
                "peak_anon_mb": round(sampler.peak["RssAnon"] / 1024, 1),
                "peak_file_mb": round(sampler.peak["RssFile"] / 1024, 1),
                "seconds": round(seconds, 1),
                "test_images": result.metrics.test_images,
                "val_accuracy": round(math.nan if last is None else last, 4),
            }
        )
    )


def measure(data: Path, mode: str, cache: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", str(data), "--mode", mode, "--cache", str(cache), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000], help="folder sizes, in images")
    parser.add_argument("--modes", nargs="+", default=["stream", "memory"], choices=list(MODES))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.mode, args.cache, args.out)
        return

    import torch

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# torch {torch.__version__}, numpy {np.__version__}")
    print("# probe network, 150x150 grey, batch 32, 1 epoch, 2 decoding workers")
    rows = []
    with tempfile.TemporaryDirectory(prefix="pixlearn-bench-") as tmp:
        tmp_path = Path(tmp)
        for n in args.sizes:
            started = time.perf_counter()
            data = write_folder(tmp_path / f"fmnist{n}", n)
            print(f"# wrote {n} PNG files in {time.perf_counter() - started:.1f}s", flush=True)
            for mode in args.modes:
                figures = measure(data, mode, tmp_path / "cache", tmp_path / f"run-{mode}-{n}")
                rows.append({"images": n, "mode": mode, **figures})
                print(json.dumps(rows[-1]), flush=True)
    print("\n| mode | images | peak RSS (MB) | peak worker RSS (MB) | peak anon (MB) | peak file-backed (MB) | s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['mode']} | {r['images']:,} | {r['peak_rss_mb']:.0f} | {r['peak_worker_rss_mb']:.0f} "
            f"| {r['peak_anon_mb']:.0f} | {r['peak_file_mb']:.0f} | {r['seconds']:.0f} |"
        )
    for mode in args.modes:
        peaks = [r["peak_rss_mb"] for r in rows if r["mode"] == mode]
        growth = max(peaks) - min(peaks)
        verdict = "flat" if growth <= LIMIT_MB else "grows"
        print(f"{mode}: peak RSS grows by {growth:.0f} MB from {min(args.sizes):,} to {max(args.sizes):,} images "
              f"({verdict}; limit {LIMIT_MB:.0f} MB)")  # fmt: skip


if __name__ == "__main__":
    main()
