"""The first seed, step by step, with pixlearn: binary grayscale image classification with a CNN.

The seed ("CNN for Binary Grayscale Image Classification with Keras in R") groups the Intel
scenes into city (buildings, street) and nature (forest, glacier, mountain, sea), loads them at
150x150 in grey, trains its CNN for 10 epochs at batch 10, saves and reloads the model, prints a
confusion matrix and P(Nature|City), shows 16 mistakes with their probabilities and predicts
unlabeled images. Here the same walkthrough runs on real photos of clothes, Fashion-MNIST,
grouped the same way: "tops" (t-shirt, pullover, coat, shirt) versus "other" (the rest), each
original class in its own subfolder, upscaled to 150x150 like the seed's scenes.

    python examples/first_seed.py                      # ~2 minutes on 2 cores (2,000 images, 3 epochs)
    python examples/first_seed.py --train-images 14000 --epochs 10   # the seed's scale

Fashion-MNIST is read from ../shared/data/fashion-mnist (or $PIXLEARN_SHARED/data/fashion-mnist).
Everything lands in runs/first-seed/: the folder tree, the run directory with its figures and tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pixlearn
from pixlearn.classify.data.datasets import TOPS_VS_OTHER, fashion_mnist_tree
from pixlearn.core.summary import format_summary

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    base = Path(os.environ.get("PIXLEARN_SHARED", REPO.parent / "shared"))
    return base / "data" / "fashion-mnist"


def dir_tree(root: Path, depth: int = 3) -> None:
    """The seed's fs::dir_tree(recurse = 2): folders only."""
    print(root)
    for path in sorted(p for p in root.rglob("*") if p.is_dir() and len(p.relative_to(root).parts) <= depth):
        rel = path.relative_to(root)
        print("    " * (len(rel.parts) - 1) + "├── " + rel.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "first-seed")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=3, help="the seed trains 10")
    parser.add_argument("--size", type=int, default=150)
    args = parser.parse_args()

    # Data: a seed-style tree, train/tops/tshirt/*.png ... test/other/bag/*.png
    data = args.out / "data"
    if data.exists():
        shutil.rmtree(data)
    fashion_mnist_tree(
        shared_data(),
        data,
        size=args.size,
        groups=TOPS_VS_OTHER,
        train_limit=args.train_images,
        test_limit=args.test_images + 400,
    )
    # The last 400 test images play the seed's unlabeled seg_pred folder.
    unlabeled = args.out / "unlabeled"
    unlabeled.mkdir(parents=True, exist_ok=True)
    test_files = sorted((data / "test").rglob("*.png"), key=lambda p: p.name)
    for path in test_files[args.test_images :]:
        path.rename(unlabeled / path.name)
    dir_tree(data, depth=3)

    # Define the model: the seed's CNN, and its summary table.
    config = pixlearn.TrainConfig(
        model="seed-cnn",
        size=args.size,
        color="grayscale",
        epochs=args.epochs,
        batch_size=10,
        head="sigmoid",  # the seed: a 2-unit sigmoid layer with binary cross-entropy
        optimizer="adam",
        lr=1e-3,
        labels="first",
        val_split=0.0,  # the seed validates on the test set every epoch (pixlearn's default holds 10% of train/ out)
        seed=123,
    )
    from pixlearn.models.registry import create_model

    print(
        format_summary(
            create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(args.size,) * 2),
            (1, args.size, args.size),
        )
    )

    # Compile and fit, with the test set for validation as the seed does; history, checkpoints
    # and the saved model (safetensors + JSON, not HDF5) land in the run directory.
    run = args.out / "run"
    result = pixlearn.train(data, run, config, progress=True, overwrite=True)
    for row in result.history:  # history.csv's rows: the seed's history, epoch by epoch
        print(
            f"epoch {row.epoch}: loss {row.loss:.4f}, accuracy {row.accuracy:.4f}, "
            f"val_loss {row.val_loss:.4f}, val_accuracy {row.val_accuracy:.4f}"
        )

    # Save / load: the model is rebuilt from model.json and model.safetensors.
    model, spec = pixlearn.load_model(run)
    print("reloaded", spec.model, "classes", list(spec.classes))

    # Evaluation: confusion matrix as proportions of all images (the seed's table) and
    # the conditional error rates P(predicted | true), the seed's P(Nature|City).
    evaluated = pixlearn.evaluate(run, data / "test", run / "evaluations" / "test", pixlearn.EvaluateConfig())
    ev = evaluated.evaluation
    classes = ev.classes
    props, rates = ev.confusion_proportions(), ev.conditional_error_rates()
    print(f"\naccuracy {ev.accuracy:.4f}\nconfusion matrix (share of all images; rows true, columns predicted)")
    for i, c in enumerate(classes):
        print(f"  {c:>6} " + "  ".join(f"{v:.2f}" for v in props[i]))
    for i, true in enumerate(classes):
        for j, pred in enumerate(classes):
            if i != j:
                print(f"P({pred} | {true}) = {rates[i, j]:.1%}")

    # Examples of misclassification: 16 seeded mistakes with every class probability written on them.
    print("misclassified gallery:", run / "evaluations" / "test" / "figures" / "misclassified.png")

    # Validation on unseen images: predictions for the unlabeled folder, a CSV and a gallery of 16.
    predictor = pixlearn.Predictor.from_run(run)
    print("one image:", predictor.predict_image(next(unlabeled.glob("*.png"))))
    preds = pixlearn.predict(
        run, unlabeled, run / "predictions_unlabeled.csv", gallery=run / "figures" / "predictions.png"
    )
    print(f"{len(preds.predictions)} unlabeled images predicted -> {preds.csv}, gallery {preds.gallery}")


if __name__ == "__main__":
    main()
