"""The embedded demo: real photos shipped with scikit-image, the seed's whole workflow, offline.

`skimage.data.lfw_subset()` holds 200 real 25x25 grayscale images: 100 faces (Labeled Faces in
the Wild) and 100 non-face patches. Like the seed's city/nature task it is binary and grey.
The demo writes them as a seed-style folder tree, trains, evaluates, predicts on the held-back
"unlabeled" images and writes the report.

    >>> from pixlearn.classify.demo import run_demo
    >>> result = run_demo("runs/demo")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixlearn.classify.prediction import PredictionResult, predict
from pixlearn.classify.training import TrainConfig, TrainResult, train
from pixlearn.core import runs
from pixlearn.core.images import to_pil
from pixlearn.report.page import write_report

# label -> (group folder, sub-folder), the seed's train/city/buildings/ shape
DEMO_CLASSES = {"face": "lfw-faces", "other": "lfw-background"}
SPLIT_COUNTS = {"train": 70, "test": 20, "unlabeled": 10}  # per class, 100 images each


def make_demo_data(root: str | os.PathLike) -> Path:
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
    size=32,
    color="grayscale",
    epochs=20,
    batch_size=16,
    lr=3e-3,
    weight_decay=5e-4,
    optimizer="adamw",
    schedule="onecycle",
    flip=True,
    shift=0.1,
    seed=0,
)


@dataclass
class DemoResult:
    data: Path
    training: TrainResult
    predictions: PredictionResult


def run_demo(
    out: str | os.PathLike = "runs/demo", data: str | os.PathLike | None = None, progress: bool = False
) -> DemoResult:
    """Build the demo tree, train, evaluate on test/, predict unlabeled/, write the report."""
    out = Path(out)
    data_root = make_demo_data(Path(data) if data else out.parent / "demo-data")
    result = train(data_root, out, DEMO_CONFIG, overwrite=True, progress=progress)
    preds = predict(
        out,
        [data_root / "unlabeled"],
        csv_path=out / "predictions_unlabeled.csv",
        gallery=runs.RunDir(out).figure("predictions.png"),
    )
    write_report(out)  # again, now that the predictions gallery exists
    return DemoResult(data_root, result, preds)
