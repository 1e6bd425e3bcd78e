"""The embedded demo: real images shipped with scikit-learn, the seed's whole workflow, offline.

`sklearn.datasets.load_digits()` holds 1,797 real handwritten digits (8x8 grey scans from the UCI
collection, 43 writers). The demo writes them as a folder tree (30% train/, 60% test/, 10%
unlabeled/, per class, seeded), trains, evaluates, predicts on the held-back "unlabeled" images
and writes the report. The task is hard enough (about 98% right) that every section of the
report has content: a few mistakes, the most confused pair, the galleries.

`make_faces_data` writes scikit-image's 200 faces / non-faces (`lfw_subset`) in the seed's
`train/city/buildings/` shape; the distributed tests use it.

    >>> from pixlearn.classify.demo import run_demo
    >>> result = run_demo("runs/demo")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.inference.prediction import PredictResult, predict
from pixlearn.classify.training.loop import TrainConfig, TrainResult, train
from pixlearn.core.imaging.images import to_pil
from pixlearn.core.storage import rundir
from pixlearn.report.page import write_report

# label -> (group folder, sub-folder), the seed's train/city/buildings/ shape
DEMO_CLASSES = {"face": "lfw-faces", "other": "lfw-background"}
SPLIT_COUNTS = {"train": 70, "test": 20, "unlabeled": 10}  # per class, 100 images each
DIGITS = tuple("0123456789")  # class folders named by the digit, so they sort in order
# share of each class: a small training set and a large test set, so the test figures are firm and
# the report has mistakes to show (about 98% right, some 17 mistakes)
DIGIT_SPLITS = (("train", 0.3), ("test", 0.6), ("unlabeled", 0.1))


def make_demo_data(root: str | os.PathLike) -> Path:
    """Write load_digits as root/{train,test}/<digit name>/*.png and root/unlabeled/*.png."""
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    images = np.clip(digits.images / 16 * 255 + 0.5, 0, 255).astype(np.uint8)  # scans hold 0..16
    rng = np.random.default_rng(0)
    for label, name in enumerate(DIGITS):
        members = rng.permutation(np.flatnonzero(digits.target == label))
        cuts = np.cumsum([round(share * len(members)) for _, share in DIGIT_SPLITS])
        for (split, _), part in zip(DIGIT_SPLITS, np.split(members, cuts[:-1]), strict=True):
            folder = root / split if split == "unlabeled" else root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in part:
                target = folder / f"digit{int(i):04d}.png"
                if not target.exists():
                    to_pil(images[i]).save(target)
    return root


def make_faces_data(root: str | os.PathLike) -> Path:
    """Write lfw_subset as root/{train,test}/{face,other}/<sub>/*.png and root/unlabeled/*.png."""
    from skimage.data import lfw_subset

    root = Path(root)
    images = (lfw_subset() * 255 + 0.5).astype(np.uint8)
    rng = np.random.default_rng(0)
    for c, (label, sub) in enumerate(DEMO_CLASSES.items()):
        order = rng.permutation(100) + 100 * c
        start = 0
        for split, n in SPLIT_COUNTS.items():
            folder = root / split if split == "unlabeled" else root / split / label / sub
            folder.mkdir(parents=True, exist_ok=True)
            for i in order[start : start + n]:
                name = f"img{int(i):03d}.png"
                target = folder / name
                if not target.exists():
                    to_pil(images[i]).save(target)
            start += n
    return root


DEMO_CONFIG = TrainConfig(
    model="resnet-small",
    size=28,  # the 8x8 scans upsampled: resnet-small's smallest input
    color="grayscale",
    epochs=20,
    batch_size=32,
    lr=3e-3,
    weight_decay=5e-4,
    optimizer="adamw",
    schedule="onecycle",
    shift=0.1,  # no flips: a mirrored digit is another shape
    seed=0,
    explain=True,  # Grad-CAM overlays beside the mistakes gallery: what the network looked at
)


@dataclass
class DemoResult:
    data: Path
    training: TrainResult
    predictions: PredictResult


def run_demo(
    out: str | os.PathLike = "runs/demo", data: str | os.PathLike | None = None, progress: bool | None = None
) -> DemoResult:
    """Build the demo tree, train, evaluate on test/, predict unlabeled/, write the report. `progress`:
    None shows it when stderr is a terminal, True always, False never (`core.progress`)."""
    out = Path(out)
    data_root = make_demo_data(Path(data) if data else out.parent / "demo-digits")
    result = train(data_root, out, DEMO_CONFIG, overwrite=True, progress=progress)
    preds = predict(
        out,
        [data_root / "unlabeled"],
        out / "predictions_unlabeled.csv",
        PredictConfig(explain=True),
        progress,
        gallery=rundir.RunDir(out).figure("predictions.png"),
    )
    write_report(out)  # again, now that the predictions gallery exists
    return DemoResult(data_root, result, preds)
