"""The second seed, step by step, with pixlearn: learning an image as a function (x, y) -> colour.

The seed ("Learning image representation with Keras in R") loads a photo of a bird, turns it into a
table of (x, y, r, g, b) rows, fits three networks of growing depth with MSE and Adam at batch 128
(a 9-parameter sigmoid layer for 20 epochs, two 10-unit sigmoid layers for 20 epochs, then a tanh
and four ReLU layers of 100 for 100 epochs), and shows each reconstruction beside the original:
a gradient, then rays, then the bird. Here the same walkthrough runs on the astronaut photo that
ships with scikit-image, then continues with the methods that now lead the field (SIREN, Gaussian
Fourier features, a multiresolution hash grid), all on the same image.

    python examples/second_seed.py            # ~2 minutes on 2 cores: 128x128, 20 epochs each, 10 s per new model
    python examples/second_seed.py --full     # the seed's epochs (20, 20, 100) at 512x512, 60 s per new model

Everything lands in runs/second-seed/: one run directory per model (models/NAME/), the coordinate
table (pixels.csv), the progression figure (progression.png) and table (progression.csv).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import data

import pixlearn
from pixlearn.core.imaging import figures
from pixlearn.core.storage import rundir
from pixlearn.core.summary import format_summary
from pixlearn.field.comparison import compare_grid
from pixlearn.field.coords import image_to_table, save_table, table_header
from pixlearn.field.image import load_field_image
from pixlearn.field.rendering.renderer import format_weights

SEED_NETWORKS = ("seed-linear", "seed-small", "seed-deep")
NEW_MODELS = ("siren", "fourier", "hashgrid")


def load(size: int) -> np.ndarray:
    """Step 1: load the image and report its size (the seed's `dim(im)`: 640 480 1 3)."""
    image = load_field_image(data.astronaut(), "rgb", (size, size))
    print(f"dim: {image.width} {image.height} {image.frames} {image.channels}  (width, height, frames, channels)")
    return image.pixels


def as_table(pixels: np.ndarray, out: Path) -> None:
    """Step 2: the image as a data frame, one row per pixel (as.data.frame + spread)."""
    table = image_to_table(pixels)
    print("\n" + "  ".join(f"{c:>10}" for c in table_header(pixels.shape[2])))
    for row in table[:6]:
        print("  ".join(f"{v:>10.7g}" for v in row))
    save_table(table, out / "pixels.csv")
    print(f"{len(table):,} rows written to {out / 'pixels.csv'}")


def fit_seed_network(pixels: np.ndarray, name: str, epochs: int, out: Path) -> pixlearn.FitResult:
    """Steps 3-5: the seed's networks, trained as the seed trains them (MSE, Adam, batch 128, raw pixel
    coordinates), each shown beside the original (models/NAME/figures/side_by_side.png)."""
    result = pixlearn.fit_image(
        pixels, out / "models" / name, pixlearn.FitConfig(model=name, epochs=epochs), progress=True, overwrite=True
    )
    print(format_summary(result.model, (2,)))
    if name == "seed-linear":  # the seed reads the gradient off get_weights()
        print(format_weights(result.model))
    return result


def fit_new_model(pixels: np.ndarray, name: str, seconds: float, out: Path) -> pixlearn.FitResult:
    """Beyond the seed: each newer representation with its published settings, for a time budget."""
    config = pixlearn.FitConfig(model=name, time=seconds)
    return pixlearn.fit_image(pixels, out / "models" / name, config, progress=True, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the seed's epochs (20, 20, 100) at 512x512")
    parser.add_argument("--out", type=Path, default=Path("runs/second-seed"))
    args = parser.parse_args()
    size = 512 if args.full else 128
    epochs = {"seed-linear": 20, "seed-small": 20, "seed-deep": 100 if args.full else 20}
    seconds = 60.0 if args.full else 10.0
    args.out.mkdir(parents=True, exist_ok=True)

    pixels = load(size)
    as_table(pixels, args.out)
    results = [fit_seed_network(pixels, name, epochs[name], args.out) for name in SEED_NETWORKS]
    results += [fit_new_model(pixels, name, seconds, args.out) for name in NEW_MODELS]

    # The progression: gradient -> rays -> bird (here: astronaut), extended with the newer models.
    rows = [r.metrics.content() for r in results]  # metrics.json's keys: the table's columns
    figures.save(compare_grid(pixels, rows, [r.reconstruction for r in results]), args.out / "progression.png")
    columns = ["model", "params", "bytes", "steps", "seconds", "psnr", "ssim"]
    rundir.write_csv(args.out / "progression.csv", columns, [[m[c] for c in columns] for m in rows])
    print(f"\n{'model':<12}{'params':>10}{'steps':>8}{'seconds':>9}{'PSNR dB':>9}{'SSIM':>7}")
    for m in (r.metrics for r in results):
        print(f"{m.model:<12}{m.params:>10,}{m.steps:>8}{m.seconds:>9.1f}{m.psnr:>9.2f}{m.ssim:>7.3f}")
    print(f"\nProgression figure: {args.out / 'progression.png'}; table: {args.out / 'progression.csv'}")


if __name__ == "__main__":
    main()
