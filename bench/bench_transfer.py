"""Transfer learning with EfficientNet-Lite0 (issues 15 and 30): pretrained against from scratch, as whole commands.

Every part but the forward timing runs whole `python -m pixlearn train ...` commands as child
processes, as a user waits for them: wall seconds (perf_counter around the child) and CPU seconds
(user + sys of the child and the worker processes it waited for, from RUSAGE_CHILDREN); test
accuracy from the run's metrics.json (`test_accuracy`, scored once on test/ by the final
evaluation), epochs and seconds per epoch from history.csv, the thread count pixlearn chose from
config.json. The data are written to a temporary folder, never into the repository. All runs use
`--val-split 0`: every training image is trained on and test/ is the per-epoch validation set;
nothing is selected on it (no early stopping), the final weights are the ones scored.

- twemoji: the Twemoji 64x64 PNGs of the npm package emoji-datasource-twitter@16.0.0 (images
  CC-BY 4.0, Twitter / jdecked; the package MIT), read from `--twemoji-tgz`, or from
  .cache/twemoji/ in the repository (gitignored), where `npm pack` puts it the first time; checked
  against npm's SHA-512. Tree `train|test/CATEGORY/SUBCATEGORY/CODE.png` of the 1,906 base emoji of
  emoji.json in the 9 categories other than "Component" (skin-tone variants left out); an emoji is
  a test image when the first byte of the SHA-256 of its `unified` code point is < 0.2 x 256
  (about 20%). Labels: the category (pixlearn's default `--labels first`), 9 classes. Runs:
  (a) `--pretrained --freeze` at 128x128, (b) fine-tuning at 96x96 (1 head epoch, then the whole
  network), (c) from scratch, airnet-small at 64x64 (the native size) with flips and shifts, given
  the wall time of each of (a) and (b) in turn ("the same wall time"): a 2-epoch probe of (c)
  measures the seconds of an epoch (its second, validation included) and the fixed cost (probe
  wall minus its epochs' seconds), and (c) gets epochs = floor((wall - fixed) / epoch seconds), at
  least 1. Targets: (a) and (b) each at least 10 points of test accuracy above (c) given its wall.
- fashion100: Fashion-MNIST (../shared/data/fashion-mnist), 10 classes, 100 training images per
  class and 2,000 test images, both drawn with numpy's default_rng(0), written as 28x28 PNG files;
  the runs resize them to 112x112 (pretrained) or keep 28x28 (from scratch, the fashion-mnist
  recipe). Targets: `--freeze` >= 80% test accuracy within 60 s of wall time end to end (decoding,
  features, training, the final evaluation and the report, the whole command); fine-tuning >= the
  freeze run's accuracy + 3 points within 300 s. From scratch: for reference.
- features: (1) the backbone's forward pass (`model.features`: stem, blocks and head_conv) at
  224x224, batch 32, under torch.inference_mode with channels-last inputs, in images per second:
  float32 and bfloat16 weights, plain and with the convolutions packed for oneDNN
  (models.layers.pack_convolutions), rounds interleaved; freshly initialised weights (the
  timings do not depend on them). (2) As a whole command, `pixlearn train PHOTOS --model
  efficientnet-lite0 --pretrained --freeze --size 224 --epochs 1` on N camera-sized JPEG files
  (common.photo_tree, 300-480 px, 14 classes; 10% held out as the validation split, whose features
  are computed too, so the features of all N images are computed). Its features phase is timed
  from the run's own output lines, timestamped by this script as they arrive: from "computing
  the frozen backbone's features" to the "epoch 1/1" line (the phase plus one head epoch on the
  cached features and writing features.safetensors); images/s = N / that. Also printed: N / the
  whole command's wall, and the marginal rate (N - n0) / (wall(N) - wall(n0)) against a run on
  n0 = 28 images (decoding, the final evaluation and the report included; the start-up cancels).
  Target: the features phase >= 120 images/s.
- defaults (issue 30; runs only when named in --parts): on the twemoji and fashion100 trees above, the
  DEFAULT settings, no size, epoch or rate given (`--model efficientnet-lite0 --pretrained --val-split 0`
  and nothing else; the colour stays auto: twemoji rgb, fashion100 grayscale): `--freeze`; fine-tuning,
  whose default rate 1e-3 is also the middle one of the hand-picked rates; `--lr auto`; fine-tuning at
  the other hand-picked rates, `--lr 3e-4` and `--lr 3e-3` (`--rates`); each for `--seeds` seeds (3:
  `--seed 0`, 1, 2), seed by seed, both sets in turn. Printed per set and setup: the mean, standard
  deviation and range over the seeds of test accuracy and wall seconds, the settings the defaults resolved
  to (config.json) and the rates `--lr auto` found (metrics.json's lr_found); the fine-tuning run's wall
  over the freeze run's and its accuracy minus the freeze run's, from the means (and seed by seed).
  Targets, on the means: fine-tuning wall <= 5x the freeze wall and accuracy >= freeze + 3 points (both
  sets); twemoji fine-tuning >= 83%; `--lr auto` within 1 point of the best hand-picked rate (both sets).
  Each finished run is appended as one JSON line to `--results` (default
  .cache/bench_transfer/defaults.jsonl in the repository, gitignored): its key (the set, `--quick`, the
  whole argument list, `--threads` included), the run's figures, the load average before and after it,
  the time and a fingerprint of the package's source. A rerun skips the runs whose key is in the file
  and reuses their figures (noting those measured on other source), so a stopped benchmark resumes and
  `--seeds 3` after `--seeds 1` runs seeds 1 and 2 only; delete the file, or name another, to measure
  afresh. `--quick` adds `--epochs 2` (1 head epoch + 1 full) to every run on the tiny trees.

    python bench/bench_transfer.py                          # all but defaults: 10-15 minutes on 2 idle cores (estimate)
    python bench/bench_transfer.py --quick                  # smoke test: tiny sizes, 1-3 epochs, 2-3 minutes
    python bench/bench_transfer.py --parts defaults         # 30 whole commands (3 seeds): about an hour (estimate)
    python bench/bench_transfer.py --parts defaults --quick --seeds 1 --results smoke.jsonl   # its smoke test
    python bench/bench_transfer.py --parts fashion100 --json fashion100.json
    python bench/bench_transfer.py --parts twemoji --twemoji-tgz emoji-datasource-twitter-16.0.0.tgz
    python bench/bench_transfer.py --parts features --rounds 3 --batch 16 --threads 1
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from common import REPO, header, interleave, median, photo_tree, require_fashion, scratch, seconds, spread
from torch import nn

from pixlearn.classify.config import TrainConfig
from pixlearn.models.layers import pack_convolutions
from pixlearn.models.registry import create_model

PARTS = ("twemoji", "fashion100", "features", "defaults")
DEFAULT_PARTS = PARTS[:3]  # defaults, an hour's runs, only when named
TIMEOUT_S = 3600.0  # per command

# ---- twemoji
TWEMOJI_SPEC = "emoji-datasource-twitter@16.0.0"
TWEMOJI_FILE = "emoji-datasource-twitter-16.0.0.tgz"
TWEMOJI_SHA512 = "7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ=="  # npm
TWEMOJI_IMAGES = "package/img/twitter/64/"
TWEMOJI_LEFT_OUT = ("Component",)
TEST_SHARE = 0.2
QUICK_SHARE = 0.12  # --quick keeps the emoji whose SHA-256's second byte is < this x 256
TARGET_OVER_SCRATCH = 0.10  # freeze and fine-tuning each at least 10 points above from scratch

PRETRAINED = ["--model", "efficientnet-lite0", "--pretrained", "--val-split", 0]
TW_FREEZE = [*PRETRAINED, "--freeze", "--size", 128, "--color", "rgb", "--epochs", 30, "--schedule", "cosine"]
TW_FINETUNE = [*PRETRAINED, "--size", 96, "--color", "rgb", "--epochs", 6, "--schedule", "cosine", "--flip"]
# --epochs from the probe
TW_SCRATCH = [
    "--model", "airnet-small", "--size", 64, "--color", "rgb", "--val-split", 0, "--optimizer", "sgd",
    "--lr", 0.1, "--weight-decay", 5e-4, "--label-smoothing", 0.1, "--schedule", "onecycle",
    "--warmup-epochs", 1, "--batch-size", 64, "--flip", "--shift", 0.07,
]  # fmt: skip
PROBE_EPOCHS = 2

# ---- fashion100
FM_PER_CLASS, FM_TEST, FM_SEED = 100, 2000, 0
FM_FREEZE = [*PRETRAINED, "--freeze", "--size", 112, "--color", "grayscale", "--epochs", 30, "--schedule", "cosine"]
FM_FINETUNE = [
    *PRETRAINED, "--size", 112, "--color", "grayscale", "--epochs", 12, "--schedule", "cosine", "--flip",
    "--shift", 0.1, "--erase", 0.25, "--tta", "--tta-shift", 4, "--lr", 2e-3,
]  # fmt: skip
FM_SCRATCH = ["--recipe", "fashion-mnist", "--batch-size", 50, "--lr", 0.05, "--epochs", 30]
TARGET_FREEZE_ACC, TARGET_FREEZE_WALL = 0.80, 60.0
TARGET_FINETUNE_GAIN, TARGET_FINETUNE_WALL = 0.03, 300.0

# ---- defaults (issue 30)
DEFAULT_SETS = ("twemoji", "fashion100")
DEFAULT_LR = next(f.default for f in fields(TrainConfig) if f.name == "lr")
HAND_RATES = (3e-4, DEFAULT_LR, 3e-3)
QUICK_DEFAULT_EPOCHS = 2  # --quick: 1 head epoch + 1 of the whole network
RESULTS = REPO / ".cache" / "bench_transfer" / "defaults.jsonl"  # gitignored
TARGET_DEFAULT_WALL_RATIO, TARGET_DEFAULT_GAIN = 5.0, 0.03  # fine-tuning against --freeze
TARGET_TWEMOJI_FINETUNE, TARGET_AUTO_GAP = 0.83, 0.01

# ---- features, whole command
FEATURE_CMD = [*PRETRAINED[:3], "--freeze", "--size", 224, "--epochs", 1]  # default 10% validation split
FEATURE_N, FEATURE_N_QUICK, FEATURE_N0 = 1000, 56, 28
TARGET_FEATURES_PER_S = 120.0
PHASE_START, PHASE_END = "computing the frozen backbone's features", "epoch 1/"

QUICK_EPOCHS = {"freeze": 3, "finetune": 2}  # --quick: epochs of the pretrained runs (fine-tuning: 1 head + 1 full)

THREADS: int | None = None  # --threads, passed to every pixlearn train
SETTINGS = ("size", "color", "epochs", "head_epochs", "lr", "lr_mult", "schedule", "batch_size")  # kept of config.json


class BenchmarkFailed(RuntimeError):
    """A measured command could not run or failed: the figures would be meaningless."""


# ---------------------------------------------------------------------------------- one command


@dataclass
class Run:
    name: str
    args: list[str]
    wall: float
    cpu: float
    test_accuracy: float
    test_images: int
    epochs: int
    epoch_seconds: list[float]
    threads: int | None
    precision: str | None
    marks: dict[str, float] = field(default_factory=dict)  # seconds from the start to the first line matching
    settings: dict[str, object] = field(default_factory=dict)  # config.json's SETTINGS: what the defaults resolved to
    lr_found: list[dict] = field(default_factory=list)  # metrics.json's, for --lr auto: each phase's rate

    @property
    def fixed(self) -> float:
        """Wall seconds outside the epochs: start-up, decoding, features, final evaluation, report."""
        return self.wall - sum(self.epoch_seconds)


def command_args(args: list) -> list[str]:
    """The arguments after `--out OUT` of a run: args as text, with --threads where given."""
    return [str(a) for a in args] + (["--threads", str(THREADS)] if THREADS else [])


def train_run(name: str, data: Path, out: Path, args: list, marks: tuple[str, ...] = ()) -> Run:
    """`python -m pixlearn train DATA --out OUT ARGS` as a child process, its output lines timestamped
    as they arrive; raises BenchmarkFailed if it fails."""
    args = command_args(args)
    cmd = [sys.executable, "-m", "pixlearn", "train", str(data), "--out", str(out), *args]
    env = {**os.environ, "COLUMNS": "160"}  # Rich wraps at 80 columns when not on a terminal
    print(f"  {name:<22} pixlearn train {data.name} {' '.join(args)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    seen: dict[str, float] = {}
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env
        )
    except OSError as e:
        raise BenchmarkFailed(f"{' '.join(cmd)}\n  could not run: {e}") from e
    killer = threading.Timer(TIMEOUT_S, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.perf_counter() - started
            for mark in marks:
                if mark not in seen and line.lstrip().startswith(mark):
                    seen[mark] = now
            tail = [*tail[-40:], line.rstrip()]
        proc.wait()
    finally:
        killer.cancel()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 or not (out / "metrics.json").exists():
        lines = "\n    ".join(tail[-15:]) or "(no output)"
        raise BenchmarkFailed(f"{' '.join(cmd)}\n  exit {proc.returncode}; last lines:\n    {lines}")
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    with open(out / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    run = Run(
        name, args, wall, cpu, float(metrics["test_accuracy"]), int(metrics["test_images"]), len(history),
        [float(h["seconds"]) for h in history], config.get("threads"), config.get("precision"), seen,
        {k: config.get(k) for k in SETTINGS}, metrics.get("lr_found") or [],
    )  # fmt: skip
    print(
        f"  {'':<22} test accuracy {run.test_accuracy:.2%} on {run.test_images}, {run.wall:.1f} s wall, "
        f"{run.cpu:.1f} CPU-s, {run.epochs} epochs ({sum(run.epoch_seconds):.1f} s), {run.threads} threads",
        flush=True,
    )
    return run


def runs_table(runs: list[Run]) -> None:
    print(
        f"\n{'run':<22} {'test acc':>9} {'wall s':>8} {'CPU s':>8} {'epochs':>6} {'epoch s':>8} {'fixed s':>8} "
        f"{'threads':>7}"
    )
    for r in runs:
        per_epoch = median(r.epoch_seconds) if r.epoch_seconds else 0.0
        print(
            f"{r.name:<22} {r.test_accuracy:>9.2%} {r.wall:>8.1f} {r.cpu:>8.1f} {r.epochs:>6} {per_epoch:>8.1f} "
            f"{r.fixed:>8.1f} {r.threads!s:>7}"
        )
    print(
        "(epoch s: median seconds of an epoch, validation included; fixed s: wall minus the epochs' seconds; "
        "threads: pixlearn's choice, from the cores other work left free, in config.json)"
    )


VERDICTS: list[str] = []


def check(label: str, ok: bool, text: str) -> None:
    """Print a verdict line (and keep it for the summary at the end)."""
    line = f"{label:<48}: {text} ({'met' if ok else 'NOT met'})"
    VERDICTS.append(line)
    print(line)


def epochs_arg(args: list, epochs: int) -> list:
    """args with its --epochs value replaced (or added)."""
    out = list(args)
    if "--epochs" in out:
        out[out.index("--epochs") + 1] = epochs
    else:
        out += ["--epochs", epochs]
    return out


# ---------------------------------------------------------------------------------- twemoji


def twemoji_tarball(given: Path | None) -> Path:
    """The npm tarball: --twemoji-tgz, or .cache/twemoji/ (fetched there with `npm pack` the first time)."""
    if given is not None:
        path = given.expanduser().resolve()
        if not path.is_file():
            raise BenchmarkFailed(f"--twemoji-tgz {given}: no such file")
    else:
        cache = REPO / ".cache" / "twemoji"
        path = cache / TWEMOJI_FILE
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            print(f"fetching {TWEMOJI_SPEC} with `npm pack` into {cache} ...", flush=True)
            try:
                subprocess.run(["npm", "pack", TWEMOJI_SPEC], cwd=cache, check=True, capture_output=True, timeout=600)
            except (OSError, subprocess.SubprocessError) as e:
                raise BenchmarkFailed(
                    f"could not fetch {TWEMOJI_SPEC} with npm ({e}); download it and pass --twemoji-tgz PATH"
                ) from e
            if not path.is_file():
                raise BenchmarkFailed(f"npm pack wrote no {path}; pass --twemoji-tgz PATH")
    digest = hashlib.sha512(path.read_bytes()).digest()
    if base64.b64encode(digest).decode() != TWEMOJI_SHA512:
        raise BenchmarkFailed(f"{path}: SHA-512 differs from npm's for {TWEMOJI_SPEC}")
    return path


def code_hash(unified: str) -> bytes:
    return hashlib.sha256(unified.encode()).digest()


def is_test(unified: str) -> bool:
    """About TEST_SHARE of the emoji, chosen by the SHA-256 of the code point (stable across versions)."""
    return code_hash(unified)[0] < TEST_SHARE * 256


def twemoji_tree(tgz: Path, out: Path, share: float = 1.0) -> dict[str, dict[str, int]]:
    """Write out/train|test/CATEGORY/SUBCATEGORY/IMAGE.png from the tarball; images per split and category.

    share < 1 keeps only the emoji whose hash's second byte is < share x 256 (--quick)."""
    entries, images = None, {}
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if member.name == "package/emoji.json":
                entries = json.load(tar.extractfile(member))
            elif member.isfile() and member.name.startswith(TWEMOJI_IMAGES) and member.name.endswith(".png"):
                images[member.name[len(TWEMOJI_IMAGES) :]] = tar.extractfile(member).read()
    if entries is None:
        raise BenchmarkFailed(f"{tgz}: no package/emoji.json")
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for e in entries:
        if e["category"] in TWEMOJI_LEFT_OUT or e["image"] not in images:
            continue
        if share < 1 and code_hash(e["unified"])[1] >= share * 256:
            continue
        split = "test" if is_test(e["unified"]) else "train"
        folder = out / split / e["category"] / e["subcategory"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / e["image"]).write_bytes(images[e["image"]])
        counts[split][e["category"]] = counts[split].get(e["category"], 0) + 1
    return counts


def part_twemoji(tgz_arg: Path | None, quick: bool) -> dict:
    tgz = twemoji_tarball(tgz_arg)
    print(
        f"\n-- twemoji: {TWEMOJI_SPEC} ({tgz}); Twemoji graphics (c) Twitter, Inc and other contributors, "
        "CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"
    )
    with scratch("transfer-twemoji") as tmp_name:
        tmp = Path(tmp_name)
        counts = twemoji_tree(tgz, tmp / "twemoji", QUICK_SHARE if quick else 1.0)
        tree = tmp / "twemoji"
        n_train, n_test = (sum(counts[s].values()) for s in ("train", "test"))
        print(f"tree: {n_train} train / {n_test} test 64x64 RGBA PNGs, {len(counts['train'])} categories")
        for cat in sorted(counts["train"]):
            print(f"  {cat:<20} {counts['train'][cat]:>5} {counts['test'].get(cat, 0):>5}")
        freeze, finetune = TW_FREEZE, TW_FINETUNE
        if quick:
            freeze, finetune = (
                epochs_arg(freeze, QUICK_EPOCHS["freeze"]),
                epochs_arg(finetune, QUICK_EPOCHS["finetune"]),
            )
        runs = [train_run("freeze", tree, tmp / "freeze", freeze)]
        runs.append(train_run("fine-tune", tree, tmp / "finetune", finetune))
        probe = train_run("scratch probe", tree, tmp / "probe", epochs_arg(TW_SCRATCH, PROBE_EPOCHS))
        epoch_s = probe.epoch_seconds[-1]
        fixed = probe.wall - sum(probe.epoch_seconds)
        # each pretrained run against from scratch given that run's own wall time ("the same wall time")
        scratch_runs: dict[int, Run] = {}
        matched = []
        for r in runs:
            epochs = max(1, math.floor((r.wall - fixed) / epoch_s))
            print(
                f"  {r.name}: {r.wall:.1f} s; probe: {epoch_s:.2f} s an epoch (its last), "
                f"{fixed:.1f} s fixed -> from scratch gets {epochs} epochs"
            )
            if epochs not in scratch_runs:
                name = f"scratch, {epochs} epochs"
                scratch_runs[epochs] = train_run(name, tree, tmp / f"scratch{epochs}", epochs_arg(TW_SCRATCH, epochs))
            matched.append((r, scratch_runs[epochs]))
    runs_table([*runs, probe, *scratch_runs.values()])
    for r, s_run in matched:
        gap = r.test_accuracy - s_run.test_accuracy
        print(f"{r.name}: scratch wall / its wall: {s_run.wall / r.wall:.2f}x")
        check(
            f"twemoji {r.name} - from scratch in the same wall time (test accuracy)",
            gap >= TARGET_OVER_SCRATCH,
            f"{100 * gap:+.1f} points against {s_run.name}, target >= +{100 * TARGET_OVER_SCRATCH:.0f}",
        )
    return {
        "tarball": str(tgz),
        "counts": counts,
        "probe_epoch_s": epoch_s,
        "probe_fixed_s": fixed,
        "runs": [asdict(r) for r in [*runs, probe, *scratch_runs.values()]],
        "matched": {r.name: s_run.name for r, s_run in matched},
    }


# ---------------------------------------------------------------------------------- fashion100


def fashion100_tree(out: Path, per_class: int, n_test: int, seed: int = FM_SEED) -> Path:
    """out/train/CLASS/*.png (per_class images of each class) and out/test/CLASS/*.png (n_test images),
    28x28, drawn without replacement by numpy's default_rng(seed)."""
    from pixlearn.classify.data.datasets import ArraySet, read_fashion_mnist, write_tree

    rng = np.random.default_rng(seed)
    root = require_fashion()
    train, test = read_fashion_mnist(root, "train"), read_fashion_mnist(root, "test")
    chosen = np.concatenate(
        [rng.choice(np.flatnonzero(train.labels == c), per_class, replace=False) for c in range(len(train.classes))]
    )
    picked = rng.choice(len(test), n_test, replace=False)
    for split, data, index in (("train", train, chosen), ("test", test, picked)):
        write_tree(ArraySet(data.images[index], data.labels[index], data.classes), out / split)
    return out


def part_fashion100(quick: bool) -> dict:
    per_class, n_test = (10, 200) if quick else (FM_PER_CLASS, FM_TEST)
    print(
        f"\n-- fashion100: Fashion-MNIST, {per_class} training images per class, {n_test} test images "
        f"(default_rng({FM_SEED})), 28x28 PNG; pretrained runs at 112x112"
    )
    freeze, finetune, scratch_args = FM_FREEZE, FM_FINETUNE, FM_SCRATCH
    if quick:
        freeze, finetune = epochs_arg(freeze, QUICK_EPOCHS["freeze"]), epochs_arg(finetune, QUICK_EPOCHS["finetune"])
        scratch_args = epochs_arg(scratch_args, 2)
    with scratch("transfer-fashion100") as tmp_name:
        tmp = Path(tmp_name)
        tree = fashion100_tree(tmp / "fashion100", per_class, n_test)
        runs = [
            train_run("freeze", tree, tmp / "freeze", freeze),
            train_run("fine-tune", tree, tmp / "finetune", finetune),
            train_run("scratch (reference)", tree, tmp / "scratch", scratch_args),
        ]
    runs_table(runs)
    fr, ft = runs[0], runs[1]
    check(
        "fashion100 freeze test accuracy",
        fr.test_accuracy >= TARGET_FREEZE_ACC,
        f"{fr.test_accuracy:.2%}, target >= {TARGET_FREEZE_ACC:.0%}",
    )
    check(
        "fashion100 freeze wall, whole command",
        fr.wall <= TARGET_FREEZE_WALL,
        f"{fr.wall:.1f} s, target <= {TARGET_FREEZE_WALL:.0f} s",
    )
    gain = ft.test_accuracy - fr.test_accuracy
    check(
        "fashion100 fine-tune - freeze (test accuracy)",
        gain >= TARGET_FINETUNE_GAIN,
        f"{100 * gain:+.1f} points, target >= +{100 * TARGET_FINETUNE_GAIN:.0f}",
    )
    check(
        "fashion100 fine-tune wall, whole command",
        ft.wall <= TARGET_FINETUNE_WALL,
        f"{ft.wall:.1f} s, target <= {TARGET_FINETUNE_WALL:.0f} s",
    )
    return {"per_class": per_class, "test_images": n_test, "runs": [asdict(r) for r in runs]}


# ---------------------------------------------------------------------------------- defaults (issue 30)


def rate_text(rate: float) -> str:
    """3e-4, 1e-3, 2.5e-3: a rate as one would type it."""
    mantissa, exponent = f"{rate:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def default_setups(rates: list[float], quick: bool) -> dict[str, list]:
    """Each setup's arguments (before --seed): freeze, fine-tuning, --lr auto, then the hand-picked rates
    other than the default one (the fine-tuning run is that one); --quick adds --epochs 2 to each."""
    setups: dict[str, list] = {"freeze": [*PRETRAINED, "--freeze"], "fine-tune": list(PRETRAINED)}
    setups["lr auto"] = [*PRETRAINED, "--lr", "auto"]
    for rate in rates:
        if not math.isclose(rate, DEFAULT_LR):
            setups[f"lr {rate_text(rate)}"] = [*PRETRAINED, "--lr", rate]
    return {name: epochs_arg(args, QUICK_DEFAULT_EPOCHS) if quick else args for name, args in setups.items()}


def hand_picked(rates: list[float]) -> dict[str, str]:
    """The setup of each hand-picked rate, by its text: the default rate's is the fine-tuning run."""
    return {rate_text(r): "fine-tune" if math.isclose(r, DEFAULT_LR) else f"lr {rate_text(r)}" for r in rates}


def code_fingerprint() -> str:
    """The SHA-256 of the package's source files (paths and contents), shortened: what a stored run was measured on."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "src" / "pixlearn").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class Results:
    """The runs finished so far, one JSON line each in `path`, by key; appended to as each run ends."""

    def __init__(self, path: Path) -> None:
        self.path, self.code, self.records = path, code_fingerprint(), {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a stopped run: that run is measured again
        self.reused_other_code = 0

    @staticmethod
    def key(data: str, quick: bool, args: list) -> str:
        return json.dumps([data, quick, command_args(args)])

    def get(self, key: str) -> Run | None:
        record = self.records.get(key)
        if record is None:
            return None
        self.reused_other_code += record.get("code") != self.code
        return Run(**record["run"])

    def add(self, key: str, run: Run, load_before: tuple[float, ...]) -> None:
        record = {
            "key": key, "run": asdict(run), "load_before": load_before, "load_after": os.getloadavg(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "code": self.code,
        }  # fmt: skip
        self.records[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def defaults_runs(tgz_arg: Path | None, quick: bool, seeds: int, rates: list[float], results: Results):
    """Every (set, setup)'s runs, seed by seed, both sets in turn; runs in `results` are reused."""
    setups = default_setups(rates, quick)
    runs: dict[str, dict[str, list[Run]]] = {s: {name: [] for name in setups} for s in DEFAULT_SETS}
    with scratch("transfer-defaults") as tmp_name:
        tmp, trees = Path(tmp_name), {}

        def tree(data: str) -> Path:  # written the first time a run needs it
            if data not in trees:
                if data == "twemoji":
                    twemoji_tree(twemoji_tarball(tgz_arg), tmp / data, QUICK_SHARE if quick else 1.0)
                    print("  twemoji: Twemoji graphics (c) Twitter, Inc and other contributors, CC-BY 4.0")
                    trees[data] = tmp / data
                else:
                    per_class, n_test = (10, 200) if quick else (FM_PER_CLASS, FM_TEST)
                    trees[data] = fashion100_tree(tmp / data, per_class, n_test)
            return trees[data]

        for seed in range(seeds):
            for data in DEFAULT_SETS:
                for name, args in setups.items():
                    seeded = [*args, "--seed", seed]
                    key = results.key(data, quick, seeded)
                    run = results.get(key)
                    if run is None:
                        load = os.getloadavg()
                        out = tmp / "runs" / f"{data}-{name.replace(' ', '-')}-{seed}"
                        run = train_run(f"{data} {name}, seed {seed}", tree(data), out, seeded)
                        results.add(key, run, load)
                        shutil.rmtree(out, ignore_errors=True)
                    else:
                        print(f"  {data} {name}, seed {seed}: from {results.path.name}: {run.test_accuracy:.2%}, "
                              f"{run.wall:.1f} s")  # fmt: skip
                    runs[data][name].append(run)
    return runs


def settings_text(run: Run) -> str:
    """What the defaults resolved to, from config.json."""
    s = run.settings
    head = f" ({s.get('head_epochs')} head)" if s.get("head_epochs") else ""
    return f"size {s.get('size')}, {s.get('epochs')} epochs{head}, lr {s.get('lr')}, {s.get('color')}"


def found_text(run: Run) -> str:
    """The rates --lr auto found, phase by phase ("head 2e-2 full 3e-4"), from metrics.json."""
    return " ".join(f"{f.get('phase') or 'all'} {rate_text(f['lr'])}" for f in run.lr_found)


def defaults_table(data: str, runs: dict[str, list[Run]]) -> None:
    print(f"\n-- defaults, {data}: over {len(runs['freeze'])} seed(s) (sd: standard deviation)")
    print(
        f"{'setup':<10} {'test acc: mean':>14} {'sd':>5} {'min-max':>13} {'wall s: mean':>12} {'sd':>5} "
        f"{'min-max':>9} {'threads':>7}  settings (seed 0); lr auto: the rates found, seed by seed"
    )
    for name, rs in runs.items():
        accs, walls = [r.test_accuracy for r in rs], [r.wall for r in rs]
        (acc, acc_sd), (wall, wall_sd) = mean_sd(accs), mean_sd(walls)
        found = "; ".join(found_text(r) for r in rs if r.lr_found)
        print(
            f"{name:<10} {acc:>14.2%} {100 * acc_sd:>5.2f} {f'{100 * min(accs):.2f}-{100 * max(accs):.2f}':>13} "
            f"{wall:>12.1f} {wall_sd:>5.1f} {f'{min(walls):.0f}-{max(walls):.0f}':>9} {rs[0].threads!s:>7}  "
            f"{settings_text(rs[0])}" + (f"; found {found}" if found else "")
        )


def defaults_verdicts(data: str, runs: dict[str, list[Run]], rates: list[float]) -> dict:
    freeze, tuned = runs["freeze"], runs["fine-tune"]
    acc = {name: mean_sd([r.test_accuracy for r in rs])[0] for name, rs in runs.items()}
    ratio = mean_sd([r.wall for r in tuned])[0] / mean_sd([r.wall for r in freeze])[0]
    gain = acc["fine-tune"] - acc["freeze"]
    per_seed = ", ".join(f"{t.wall / f.wall:.1f}x {100 * (t.test_accuracy - f.test_accuracy):+.1f}"
                         for f, t in zip(freeze, tuned, strict=True))  # fmt: skip
    print(f"fine-tune / freeze, seed by seed (wall, accuracy points): {per_seed}")
    check(f"{data} defaults: fine-tune wall / freeze wall", ratio <= TARGET_DEFAULT_WALL_RATIO,
          f"{ratio:.2f}x, target <= {TARGET_DEFAULT_WALL_RATIO:g}x")  # fmt: skip
    check(f"{data} defaults: fine-tune - freeze (test accuracy)", gain >= TARGET_DEFAULT_GAIN,
          f"{100 * gain:+.2f} points ({acc['fine-tune']:.2%} against {acc['freeze']:.2%}), "
          f"target >= +{100 * TARGET_DEFAULT_GAIN:.0f}")  # fmt: skip
    if data == "twemoji":
        check("twemoji defaults: fine-tune test accuracy", acc["fine-tune"] >= TARGET_TWEMOJI_FINETUNE,
              f"{acc['fine-tune']:.2%}, target >= {TARGET_TWEMOJI_FINETUNE:.0%}")  # fmt: skip
    picked = hand_picked(rates)
    best = max(picked, key=lambda r: acc[picked[r]])
    gap = acc["lr auto"] - acc[picked[best]]
    check(f"{data} defaults: lr auto - the best hand-picked rate", gap >= -TARGET_AUTO_GAP,
          f"{100 * gap:+.2f} points ({acc['lr auto']:.2%} against --lr {best}'s {acc[picked[best]]:.2%}), "
          f"target >= -{100 * TARGET_AUTO_GAP:.0f}")  # fmt: skip
    return {"mean_accuracy": acc, "wall_ratio": ratio, "gain": gain, "best_rate": best, "auto_gap": gap}


def part_defaults(tgz_arg: Path | None, quick: bool, seeds: int, rates: list[float], results_path: Path) -> dict:
    results = Results(results_path)
    print(
        f"\n-- defaults: twemoji and fashion100 with the default settings, {seeds} seed(s); hand-picked rates "
        f"{', '.join(hand_picked(rates))}; results in {results_path} ({len(results.records)} runs there)"
    )
    runs = defaults_runs(tgz_arg, quick, seeds, rates, results)
    if results.reused_other_code:
        print(f"note: {results.reused_other_code} run(s) reused from {results_path.name} were measured on other source")
    out = {"results": str(results_path), "seeds": seeds, "rates": rates}
    for data, by_setup in runs.items():
        defaults_table(data, by_setup)
        out[data] = {"verdicts": defaults_verdicts(data, by_setup, rates),
                     "runs": {name: [asdict(r) for r in rs] for name, rs in by_setup.items()}}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- features


def features_measures(batch: int, size: int) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """Each variant's network (its `features` is run) and input batch."""
    base = create_model("efficientnet-lite0", "classify", in_channels=3, num_classes=1000, input_size=(size, size))
    base = base.eval().to(memory_format=torch.channels_last)
    x = (torch.rand(batch, 3, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    variants = {}
    for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        plain = copy.deepcopy(base).to(dtype)
        variants[f"{label} plain"] = (plain, x.to(dtype))
        variants[f"{label} packed"] = (pack_convolutions(copy.deepcopy(plain)), x.to(dtype))
    return variants


def part_features(batch: int, size: int, rounds: int) -> dict:
    print(f"\n-- features: the backbone's forward pass at {size}x{size}, batch {batch}, {rounds} rounds")
    variants = features_measures(batch, size)

    def measure(net: nn.Module, x: torch.Tensor) -> float:
        with torch.inference_mode():
            return seconds(lambda: net.features(x))[0]

    with torch.inference_mode():
        for net, x in variants.values():  # warm-up: oneDNN picks kernels (and packs) on the first call
            out = net.features(x)
        print(f"features out {tuple(out.shape)} per batch of {batch} at {size}x{size}")
    times = interleave({name: (lambda nx=nx: measure(*nx)) for name, nx in variants.items()}, rounds)
    print(f"{'variant':<12} {'images/s: median (min-max, n)':<34} ms/image")
    for name, values in times.items():
        rates = [batch / t for t in values]
        print(f"{name:<12} {spread(rates):<34} {1000 * median(values) / batch:.1f}")
    fp32, bf16 = median(times["fp32 plain"]), median(times["bf16 plain"])
    print(f"bf16 / fp32 speed (plain): {fp32 / bf16:.2f}x")
    return {name: batch / median(values) for name, values in times.items()}


def part_features_command(quick: bool) -> dict:
    n = FEATURE_N_QUICK if quick else FEATURE_N
    print(
        f"\n-- features as a whole command: pixlearn train --freeze --epochs 1 at 224x224 on {n} and "
        f"{FEATURE_N0} JPEG photos (300-480 px)"
    )
    with scratch("transfer-features") as tmp_name:
        tmp = Path(tmp_name)
        big, small = photo_tree(tmp / f"photos{n}", n), photo_tree(tmp / f"photos{FEATURE_N0}", FEATURE_N0)
        marks = (PHASE_START, PHASE_END)
        run = train_run(f"freeze, {n} images", big, tmp / "run-n", FEATURE_CMD, marks)
        base = train_run(f"freeze, {FEATURE_N0} images", small, tmp / "run-n0", FEATURE_CMD, marks)
    runs_table([run, base])
    if not all(m in run.marks for m in marks):
        raise BenchmarkFailed(f"the run printed no {PHASE_START!r} / {PHASE_END!r} lines: cannot time the phase")
    phase = run.marks[PHASE_END] - run.marks[PHASE_START]
    per_s = n / phase
    marginal = (n - FEATURE_N0) / (run.wall - base.wall)
    print(
        f"features phase ({PHASE_START!r} -> {PHASE_END!r} lines): {phase:.1f} s for {n} images = {per_s:.0f} images/s"
    )
    print(f"whole command: {n} / {run.wall:.1f} s = {n / run.wall:.0f} images/s")
    print(
        f"marginal, whole commands: ({n} - {FEATURE_N0}) / ({run.wall:.1f} - {base.wall:.1f} s) = {marginal:.0f} "
        "images/s (decoding, final evaluation and report included)"
    )
    check(
        "features phase at 224x224, images/s",
        per_s >= TARGET_FEATURES_PER_S,
        f"{per_s:.0f}, target >= {TARGET_FEATURES_PER_S:.0f}",
    )
    return {
        "images": n,
        "phase_s": phase,
        "phase_images_per_s": per_s,
        "command_images_per_s": n / run.wall,
        "marginal_images_per_s": marginal,
        "runs": [asdict(run), asdict(base)],
    }


# ---------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS), help="default: all but defaults"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny data sets, 1-3 epochs")
    parser.add_argument("--twemoji-tgz", type=Path, default=None, help=f"the npm tarball {TWEMOJI_FILE}")
    parser.add_argument("--batch", type=int, default=32, help="features forward pass: batch")
    parser.add_argument("--size", type=int, default=224, help="features forward pass: input side")
    parser.add_argument("--rounds", type=int, default=None, help="features forward pass: rounds (5; --quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads here and pixlearn train --threads")
    parser.add_argument("--seeds", type=int, default=3, help="defaults: seeds of each setup (--seed 0, 1, ...)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(HAND_RATES), help="defaults: hand-picked rates")
    parser.add_argument("--results", type=Path, default=RESULTS, help="defaults: the runs so far, one JSON line each")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.quick else 5)
    started = time.perf_counter()
    print(header("bench_transfer: transfer learning with EfficientNet-Lite0 (issues 15 and 30)"))
    print(f"parts {' '.join(args.parts)}{' (--quick: tiny sizes, the figures mean nothing)' if args.quick else ''}")
    results: dict = {"header": header("bench_transfer"), "quick": args.quick}
    try:
        if "twemoji" in args.parts:
            results["twemoji"] = part_twemoji(args.twemoji_tgz, args.quick)
        if "fashion100" in args.parts:
            results["fashion100"] = part_fashion100(args.quick)
        if "features" in args.parts:
            results["features_forward"] = part_features(args.batch, args.size, rounds)
            results["features_command"] = part_features_command(args.quick)
        if "defaults" in args.parts:
            results["defaults"] = part_defaults(args.twemoji_tgz, args.quick, args.seeds, args.rates, args.results)
    except BenchmarkFailed as e:
        print(f"\nbench_transfer FAILED: {e}", file=sys.stderr)
        return 1
    print(f"\nverdicts (whole script {time.perf_counter() - started:.0f} s)")
    for line in VERDICTS:
        print(line)
    results["verdicts"] = VERDICTS
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
