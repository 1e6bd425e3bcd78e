"""Shared pieces of the benchmarks: header, matmul peak, timing, data trees, the Keras peer.

Absolute times drift on shared machines, so every benchmark measures the things it compares
in one run, back to back or interleaved, and prints ratios. The header printed first states the
hardware, library versions, date and load average the figures were taken under.

Environment variables:
    PIXLEARN_SHARED       folder holding data/fashion-mnist and peers/ (default: ../shared next to the repo)
    PIXLEARN_PEER_PYTHON  python of a venv with tensorflow-cpu and keras (default: .cache/peer/bin/python,
                          which `make bench` creates)
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("PIXLEARN_SHARED", REPO.parent / "shared"))


def fashion_dir() -> Path:
    return shared_dir() / "data" / "fashion-mnist"


def peer_python() -> Path:
    return Path(os.environ.get("PIXLEARN_PEER_PYTHON", REPO / ".cache" / "peer" / "bin" / "python"))


def peer_script() -> Path:
    return shared_dir() / "peers" / "keras_seed.py"


# ---------------------------------------------------------------------------------- header


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def header(title: str) -> str:
    """What the figures below were measured on: hardware, versions, date, load."""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return "\n".join(
        [
            f"== {title} ==",
            f"date     {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"machine  {cpu_name()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB; load average {load}",
            f"versions python {platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), numpy {np.__version__}, pillow {PIL.__version__}",
        ]
    )


# ---------------------------------------------------------------------------------- timing


def seconds(fn: Callable[[], object], repeats: int = 1) -> list[float]:
    """Wall seconds of each of `repeats` calls of fn; only the call is inside the clock."""
    out = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out.append(time.perf_counter() - started)
    return out


def matmul_peak_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best observed GFLOP/s of an n x n matrix product (2 n^3 flops), the machine's practical peak."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # first call allocates and picks the kernel
    best = min(seconds(lambda: torch.mm(a, b), repeats))
    return 2 * n**3 / best / 1e9


def interleave(measures: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each measure once per round, in turn, so drifting load hits every contender alike."""
    results: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            results[name].append(measure())
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], digits: int = 1) -> str:
    """`median (min-max, n=k)` of a list of measurements."""
    return f"{median(values):,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f}, n={len(values)})"


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x (target {target:g}x: {'met' if ratio >= target else 'NOT met'})"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------- data


def require_fashion() -> Path:
    root = fashion_dir()
    if not (root / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"Fashion-MNIST not found in {root}; set PIXLEARN_SHARED to the folder holding data/fashion-mnist")
    return root


def tops_tree(out: Path, n_train: int, n_test: int, size: int = 150, fmt: str = "png") -> Path:
    """Fashion-MNIST upscaled to size x size, labelled "tops vs other" (ANCHORS.md), written under out."""
    from pixlearn.classify.data.datasets import TOPS_VS_OTHER, fashion_mnist_tree

    return fashion_mnist_tree(require_fashion(), out, size, TOPS_VS_OTHER, n_train, n_test, fmt)


# scikit-image's sample photographs that ship with the package (no download), all at least 300 px a side.
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
    "colorwheel", "camera", "coins", "brick", "grass", "gravel", "moon",
)  # fmt: skip


def photo_tree(out: Path, n: int, fmt: str = "jpg", seed: int = 0) -> Path:
    """n camera-sized RGB files (random 300-480 px crops of scikit-image's sample photos, flipped at
    random) under out/train/<photo>/, the shape of a folder of photos to be resized to 150x150."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = {}
    for name in PHOTOS:
        arr = getattr(skimage.data, name)()
        sources[name] = np.stack([arr] * 3, -1) if arr.ndim == 2 else arr[..., :3]
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        photo = sources[name]
        h = int(rng.integers(300, min(480, photo.shape[0]) + 1))
        w = int(rng.integers(300, min(480, photo.shape[1]) + 1))
        y, x = int(rng.integers(0, photo.shape[0] - h + 1)), int(rng.integers(0, photo.shape[1] - w + 1))
        crop = photo[y : y + h, x : x + w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        folder = out / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i:05d}.{fmt}", quality=90)
    return out


def scratch(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary folder for generated data; benchmarks never write data into the repository."""
    return tempfile.TemporaryDirectory(prefix=f"pixlearn-{prefix}-")


# ---------------------------------------------------------------------------------- the Keras peer


@dataclass
class PeerResult:
    load_img_per_s: float
    train_img_per_s: float
    predict_one_ms: float
    test_acc: float
    seconds: float


def run_peer(root: Path, epochs: int = 2, batch_size: int = 10, timeout: float = 1800) -> PeerResult | None:
    """Run the Keras 3 + TensorFlow peer on the same folder; None (with a note) when it is not installed."""
    python, script = peer_python(), peer_script()
    if not python.exists() or not script.exists():
        print(
            f"  peer skipped: {python} or {script} missing (make bench creates the venv; or set PIXLEARN_PEER_PYTHON)"
        )
        return None
    started = time.perf_counter()
    cmd = [str(python), str(script), str(root), "--epochs", str(epochs), "--batch-size", str(batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    match = re.search(r"^RESULT (.*)$", proc.stdout, re.M)
    if proc.returncode != 0 or match is None:
        print(f"  peer failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return None
    fields = dict(kv.split("=") for kv in match.group(1).split())
    return PeerResult(
        float(fields["load_img_per_s"]),
        float(fields["train_img_per_s"]),
        float(fields["predict_one_ms"]),
        float(fields["test_acc"]),
        time.perf_counter() - started,
    )
