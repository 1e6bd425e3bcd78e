"""Issue 17: expected calibration error before and after temperature scaling on the fashion-mnist recipe.

Writes Fashion-MNIST (../shared/data/fashion-mnist, or $PIXLEARN_SHARED/data/fashion-mnist) as a
folder tree of PNG files in a temporary folder, then runs what a user runs, as a child process:

    pixlearn train TREE --recipe fashion-mnist --val-split 0.1 --calibrate --seed S --out RUN

The recipe itself trains on all 60,000 images (`--val-split 0`); temperature scaling is fitted on a
split held out of the training folder, never on the test set, so this run holds out 10% per class
(6,000 images) and trains on the other 54,000. The temperature is fitted by LBFGS on the validation
NLL (classify.calibration.fit_temperature). Printed: the temperature, NLL and ECE (15 bins,
torchmetrics' definition) before and after on the validation split (from metrics.json), and on the
10,000 test images, which played no part in the fit: the run's model loaded by Predictor, the test
images decoded as evaluation decodes them, probabilities with the fitted temperature and with it
removed. Target: test ECE after temperature scaling at most 0.02.

The full figure needs the full recipe (20 epochs, about 10 minutes on 2 idle cores); `--epochs 2`
(and `--train-limit`) give a quick look whose ECE says little about the full recipe's.

    python bench/bench_calibration.py                        # the recorded figure: the full recipe
    nice -n 10 python bench/bench_calibration.py --epochs 2  # a quick look, about 3-5 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from common import header, require_fashion, scratch

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.data.datasets import fashion_mnist_tree
from pixlearn.classify.data.decoding import load_images
from pixlearn.classify.data.folders import LabelRule, scan_folder
from pixlearn.classify.evaluation.scores import expected_calibration_error, negative_log_likelihood
from pixlearn.classify.inference.prediction import Predictor

TARGET_ECE = 0.02


def train(tree: Path, run: Path, seed: int, epochs: int | None) -> float:
    cmd = [sys.executable, "-m", "pixlearn", "train", str(tree), "--recipe", "fashion-mnist", "--val-split", "0.1"]
    cmd += ["--calibrate", "--seed", str(seed), "--out", str(run)]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    print("$", " ".join(cmd[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def test_figures(run: Path, tree: Path) -> dict[str, float]:
    """NLL and ECE on the test images with the run's temperature and without it."""
    predictor = Predictor.from_run(run, PredictConfig(device="cpu"))
    samples, _ = scan_folder(tree / "test", LabelRule("first"))
    data = load_images(samples, predictor.options, predictor.spec.classes)
    labels = data.labels.numpy()
    calibrated = predictor.probabilities(data.images)
    predictor.spec = dataclasses.replace(predictor.spec, temperature=None)
    raw = predictor.probabilities(data.images)
    return {
        "test_images": len(labels),
        "test_accuracy": float((raw.argmax(1) == labels).mean()),
        "test_nll_before": negative_log_likelihood(raw, labels),
        "test_nll_after": negative_log_likelihood(calibrated, labels),
        "test_ece_before": expected_calibration_error(raw, labels),
        "test_ece_after": expected_calibration_error(calibrated, labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 20 epochs (a quick look)")
    parser.add_argument("--train-limit", type=int, default=None, help="only the first N training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    print(header("calibration: ECE before and after temperature scaling, fashion-mnist recipe"))
    with scratch("calibration") as tmp:
        tree = fashion_mnist_tree(require_fashion(), Path(tmp) / "tree", train_limit=args.train_limit)
        run = Path(tmp) / "run"
        wall = train(tree, run, args.seed, args.epochs)
        metrics = json.loads((run / "metrics.json").read_text())
        figures = {
            "epochs": metrics["epochs_run"],
            "train_wall_s": round(wall, 1),
            "temperature": metrics["temperature"],
            **{k: metrics[k] for k in ("val_nll_before", "val_nll_after", "val_ece_before", "val_ece_after")},
            **test_figures(run, tree),
        }
    print(f"epochs {figures['epochs']} (the full recipe: 20), whole command {figures['train_wall_s']:.0f} s")
    print(f"temperature {', '.join(f'{t:.4f}' for t in figures['temperature'])} (fitted on 10% of train/)")
    print(f"{'':18}{'NLL before':>12}{'NLL after':>12}{'ECE before':>12}{'ECE after':>12}")
    for where in ("val", "test"):
        row = [figures[f"{where}_{k}"] for k in ("nll_before", "nll_after", "ece_before", "ece_after")]
        print(f"{where + ' split':18}" + "".join(f"{v:12.4f}" for v in row))
    met = figures["test_ece_after"] <= TARGET_ECE
    print(
        f"test accuracy {figures['test_accuracy']:.4f}; test ECE after {figures['test_ece_after']:.4f} "
        f"(target <= {TARGET_ECE}: {'met' if met else 'NOT met'}"
        + ("" if args.epochs is None and args.train_limit is None else "; a quick run, not the recipe's figure")
        + ")"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
