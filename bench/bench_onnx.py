"""Single-image latency of the exported model (onnxruntime) against pixlearn's Predictor, side by side.

For each model: a run with freshly initialised weights (weights do not change the timings) is exported
with `pixlearn.classify.inference.onnx.export` (which checks the file against pixlearn's float32 probabilities;
the largest difference is printed), then one decoded image (uint8, at the run's size) is predicted
again and again, in one process, in alternating blocks so that a slow minute of a shared machine
falls on every contender:

- pixlearn `Predictor.predict_array(image)` in the run's precision (auto: bf16 weights where the CPU
  computes bf16 natively) and with precision="fp32";
- onnxruntime `session.run` on the same image, its conversion to float32 / 255 inside the clock (Predictor
  converts inside its call too), CPUExecutionProvider, default session options (one thread per core,
  as torch).

Printed: median (min-max) milliseconds per call and the ratio pixlearn ms / onnxruntime ms (above 1:
onnxruntime is faster).

    python bench/bench_onnx.py                  # about a minute on 2 idle cores
    python bench/bench_onnx.py --calls 400 --models seed-cnn --threads 1
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from common import header, median, scratch, seconds, spread
from PIL import Image

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.inference.onnx import export
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.registry import create_model

# (model, side, colour): the seed's network at the seed's size, the fashion-mnist recipe's, a residual
# net at its default size, and the pretrained backbone at ImageNet's.
MODELS = {
    "seed-cnn": (150, "grayscale", "sigmoid"),
    "airnet-small": (28, "grayscale", "softmax"),
    "resnet-small": (64, "grayscale", "softmax"),
    "efficientnet-lite0": (224, "rgb", "softmax"),
}


def make_run(folder: Path, name: str) -> tuple[Path, np.ndarray]:
    """A run with fresh weights and a few test images listed as its final evaluation lists them."""
    side, color, head = MODELS[name]
    normalize = (0.5, 0.5) if name.startswith("efficientnet") else None
    spec = ModelSpec.classifier(name, ["a", "b"], (side, side), color, head=head, normalize=normalize)
    torch.manual_seed(0)
    weights.save_model(create_model(name, **spec.kwargs), spec, folder)
    rng = np.random.default_rng(0)
    channels = 1 if color == "grayscale" else 3
    images = rng.integers(0, 256, (8, side, side, channels), dtype=np.uint8)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / "test" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(image[..., 0] if channels == 1 else image).save(paths[-1])
    rows = [[str(p), "a", "a", "0.5", "0.5"] for p in paths]
    rundir.write_csv(folder / "predictions.csv", ["path", "true", "predicted", "p_a", "p_b"], rows)
    return folder, images[0]


def measure(name: str, root: Path, calls: int, threads: int, blocks: int = 4) -> None:
    import onnxruntime

    run, image = make_run(root / name, name)
    result = export(run)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
    session = onnxruntime.InferenceSession(str(result.path), options, providers=["CPUExecutionProvider"])
    predictor = Predictor.from_run(run, PredictConfig(device="cpu"), tune_allocator=True)
    fp32 = Predictor.from_run(run, PredictConfig(device="cpu", precision="fp32"), tune_allocator=True)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1)[None])

    def ort_call() -> np.ndarray:
        return session.run(None, {"images": chw.astype(np.float32) / 255.0})[0]

    contenders = {
        "pixlearn": lambda: predictor.predict_array(image),
        "pixlearn fp32": lambda: fp32.predict_array(image),
    }
    contenders["onnxruntime"] = ort_call
    for fn in contenders.values():  # warm-up: allocations, kernel choice, ORT's first-run optimisation
        for _ in range(20):
            fn()
    ms: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(blocks):
        for key, fn in contenders.items():
            ms[key] += [1000 * s for s in seconds(fn, max(1, calls // blocks))]
    ort_ms = median(ms["onnxruntime"])
    side, color, head = MODELS[name]
    print(f"\n{name} {side}x{side} {color}, {head}; export checked on {result.images} images, "
          f"largest difference {result.max_difference:.1e}")  # fmt: skip
    for key, values in ms.items():
        extra = f" (precision {predictor.precision})" if key == "pixlearn" else ""
        ratio = "" if key == "onnxruntime" else f"  pixlearn / onnxruntime {median(values) / ort_ms:.2f}x"
        print(f"  {key:<13} {spread(values, 3)} ms per image{extra}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="single-image calls timed per contender")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--threads", type=int, default=0, help="threads of both (0: each library's default)")
    args = parser.parse_args()
    import onnxruntime

    if args.threads:
        torch.set_num_threads(args.threads)

    print(header("bench_onnx: one decoded image, onnxruntime against Predictor (same process, alternating)"))
    ort_threads = args.threads or "default (one per core)"
    print(f"onnxruntime {onnxruntime.__version__}, CPUExecutionProvider, threads {ort_threads}; torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    with scratch("onnx") as tmp:
        for name in args.models.split(","):
            measure(name.strip(), Path(tmp), args.calls, args.threads)
    print(f"\nload average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
