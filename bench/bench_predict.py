"""Item 3: prediction with seed-cnn, one image through the API and a whole folder, against the peer.

pixlearn: `Predictor.from_run(run, tune_allocator=True).predict_array(image)` on a decoded 150x150 grey image (what
the peer's `model.predict(x)` receives), in the run's precision (auto: bf16 weights where the CPU
has native bf16, as training used) and in float32, `predict_image(path)` including decoding, and
`pixlearn.predict.predict(run, [folder])` writing the CSV, in images per second. The peer: the
seed's Keras model, one `model.predict` call per image (as the seed does) and a folder read with
`load_img` then predicted in one `predict` call. Weights do not change the timings, so both
sides use freshly initialised networks.

    python bench/bench_predict.py                 # about 2 minutes
    python bench/bench_predict.py --no-peer
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch
from common import header, median, peer_python, scratch, seconds, spread, tops_tree, verdict

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.data.folders import find_image_files
from pixlearn.classify.inference.prediction import Predictor, predict
from pixlearn.core.imaging.images import decode_image
from pixlearn.core.storage import weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.registry import create_model

PEER_PREDICT = """
import glob, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras
files = sorted(f for f in glob.glob(sys.argv[1] + "/**/*", recursive=True) if os.path.isfile(f))
calls = int(sys.argv[2])
keras.utils.set_random_seed(0)
model = keras.Sequential([  # keras_seed.py's network
    keras.Input((150, 150, 1)),
    keras.layers.Conv2D(120, 3, strides=2, activation="relu"), keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(60, 3, strides=2, activation="relu"),
    keras.layers.Conv2D(60, 3, strides=2, activation="relu"), keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(40, 3, strides=2, activation="relu"),
    keras.layers.Flatten(), keras.layers.Dense(2, activation="sigmoid")])
x = keras.utils.img_to_array(keras.utils.load_img(files[0], color_mode="grayscale", target_size=(150, 150)))[None] / 255
model.predict(x, verbose=0)
t = time.perf_counter()
for _ in range(calls):
    np.argmax(model.predict(x, verbose=0))
one_ms = 1000 * (time.perf_counter() - t) / calls
t = time.perf_counter()
X = np.stack([keras.utils.img_to_array(keras.utils.load_img(
    f, color_mode="grayscale", target_size=(150, 150))) / 255.0 for f in files])
labels = np.argmax(model.predict(X, verbose=0), 1)
print("RESULT", one_ms, len(files) / (time.perf_counter() - t))
"""


def make_run(folder: Path) -> Path:
    """A run directory holding a freshly initialised seed-cnn, as `pixlearn train` would write it."""
    torch.manual_seed(0)
    model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    spec = ModelSpec.classifier("seed-cnn", ["other", "tops"], (150, 150), "grayscale", head="sigmoid")
    weights.save_model(model, spec, folder)
    return folder


def predictor_bf16(predictor: Predictor) -> str:
    return "yes" if next(predictor.model.parameters()).dtype == torch.bfloat16 else "no (float32)"


def forward_table(repeats: int = 3) -> None:
    """Images/s of forward passes by batch size, float32 and bf16 weights (the inference defaults' evidence)."""
    from pixlearn.classify.inference.forward import inference_batch_size, inference_model

    print("\nforward passes over 256 images, images/s by images per pass (chosen: the cache rule)")
    for name, size in (("seed-cnn", 150), ("airnet-small", 28), ("resnet-small", 64)):
        torch.manual_seed(0)
        model = create_model(name, in_channels=1, num_classes=10, input_size=(size, size))
        x = torch.rand(256, 1, size, size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for bf16 in (False, True):
                net = inference_model(model, bf16)
                xi = x.to(next(net.parameters()).dtype)
                row = []
                for b in (1, 4, 16, 64, 256):
                    passes = lambda net=net, xi=xi, b=b: [net(xi[i : i + b]) for i in range(0, 256, b)]  # noqa: E731
                    rate = 256 / median(seconds(passes, repeats))
                    row.append(f"{b}: {rate:,.0f}")
                chosen = inference_batch_size(net, xi)
                print(f"  {name:<13} {'bf16' if bf16 else 'fp32'}  {'  '.join(row)}  (chosen {chosen})")


# seed-cnn's training steps (bf16 autocast, batches of 10 and 32) and inference passes (6 images,
# bf16 weights), timed in fresh processes with and without devices.keep_freed_memory: the
# allocator setting is process-wide, so each side needs processes of its own.
ALLOCATOR_PROBE = """
import sys, time, torch
from pixlearn.classify.inference.forward import inference_model
from pixlearn.core.devices import keep_freed_memory
from pixlearn.models.registry import create_model
if sys.argv[1] == "keep":
    keep_freed_memory()
torch.manual_seed(0)
model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
model = model.to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters())
def step(n):
    x = torch.rand(n, 1, 150, 150).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().logsumexp(1).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
rates = []
for n in (10, 32):
    for _ in range(3):
        step(n)
    started = time.perf_counter()
    for _ in range(15):
        step(n)
    rates.append(15 * n / (time.perf_counter() - started))
net = inference_model(model, bf16=True)
x = torch.rand(258, 1, 150, 150).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    net(x[:6])
    started = time.perf_counter()
    for i in range(0, 258, 6):
        net(x[i : i + 6])
    rates.append(258 / (time.perf_counter() - started))
print(*rates)
"""


def allocator_table(processes: int = 3) -> None:
    """Images/s of seed-cnn training steps and inference passes, default malloc vs keep_freed_memory."""
    print("\nseed-cnn images/s in fresh processes, glibc defaults vs keep_freed_memory (alternating)")
    columns = ("train b10", "train b32", "infer b6 bf16")
    results: dict[str, list[list[float]]] = {"default": [], "keep": []}
    for _ in range(processes):
        for mode in results:
            proc = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE, mode], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"allocator probe failed: {proc.stderr.strip()[-300:]}")
            results[mode].append([float(v) for v in proc.stdout.split()])
    for mode, runs_ in results.items():
        label = "glibc defaults" if mode == "default" else "keep_freed_memory"
        cells = [" / ".join(f"{r[i]:,.0f}" for r in runs_) for i in range(len(columns))]
        print(f"  {label:<18} " + "   ".join(f"{c}: {v}" for c, v in zip(columns, cells, strict=True)))


def run_peer(folder: Path, calls: int) -> tuple[float, float] | None:
    if not peer_python().exists():
        print(f"  peer skipped: {peer_python()} missing")
        return None
    proc = subprocess.run(
        [str(peer_python()), "-c", PEER_PREDICT, str(folder), str(calls)], capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        print(f"  peer failed: {proc.stderr.strip()[-300:]}")
        return None
    one_ms, folder_ips = (float(v) for v in lines[-1].split()[1:])
    return one_ms, folder_ips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images in the folder to predict")
    parser.add_argument("--calls", type=int, default=200, help="single-image calls timed")
    parser.add_argument("--no-peer", action="store_true", help="skip the Keras peer")
    parser.add_argument("--batches", action="store_true", help="also time forward passes by batch size")
    parser.add_argument(
        "--allocator", action="store_true", help="also time a forward pass with and without keep_freed_memory"
    )
    args = parser.parse_args()
    print(header("bench_predict: seed-cnn 150x150x1, 2 classes"))
    with scratch("predict") as tmp:
        tmp = Path(tmp)
        folder = tops_tree(tmp / "tree", args.images, 0, 150, "png") / "train"
        os.sync()  # the files just written would otherwise be flushed by the kernel during the timings
        # The run's precision (auto); tune_allocator: the opt-in for repeated calls (devices.keep_freed_memory),
        # which Predictor used unasked before it was made opt-in.
        predictor = Predictor.from_run(make_run(tmp / "run"), PredictConfig(device="cpu"), tune_allocator=True)
        fp32 = Predictor.from_run(tmp / "run", PredictConfig(device="cpu", precision="fp32"), tune_allocator=True)
        first = find_image_files(folder)[0]
        image = decode_image(first, "grayscale", (150, 150))
        for _ in range(20):  # warm-up: allocations and kernel choice
            predictor.predict_array(image)
            fp32.predict_array(image)
        array_ms: list[float] = []
        fp32_ms: list[float] = []
        for _ in range(4):  # alternating blocks: a slow minute of the machine falls on both
            array_ms += [1000 * s for s in seconds(lambda: predictor.predict_array(image), args.calls // 4)]
            fp32_ms += [1000 * s for s in seconds(lambda: fp32.predict_array(image), args.calls // 4)]
        file_ms = [1000 * s for s in seconds(lambda: predictor.predict_image(first), args.calls)]
        folder_s = seconds(lambda: predict(tmp / "run", [folder], tmp / "p.csv", PredictConfig(device="cpu")), 1)[0]
        peer = None if args.no_peer else run_peer(folder, args.calls)
        array_after = [1000 * s for s in seconds(lambda: predictor.predict_array(image), args.calls)]
        fp32_ms += [1000 * s for s in seconds(lambda: fp32.predict_array(image), args.calls)]
    array_ms += array_after
    within = sum(ms <= 1.0 for ms in array_ms) / len(array_ms)
    met = "met" if median(array_ms) <= 1.0 else "NOT met"
    print(f"\npredict_array, one decoded image : {spread(array_ms, 2)} ms per call (target median <= 1 ms: {met})")
    print(f"  calls within 1 ms: {within:.0%}")
    print(f"  precision of the run ({predictor.precision}): bf16 weights {predictor_bf16(predictor)}")
    print(f"  the same with precision='fp32'   : {spread(fp32_ms, 2)} ms per call")
    print(f"predict_image, one PNG file       : {spread(file_ms, 2)} ms per call (decoding included)")
    print(f"predict(run, [folder]) with CSV   : {args.images / folder_s:,.0f} images/s ({args.images} files)")
    if peer is not None:
        one_ms, folder_ips = peer
        print(f"Keras peer model.predict, one image: {one_ms:.1f} ms per call")
        print(f"Keras peer folder (load_img + predict): {folder_ips:,.0f} images/s")
        print(f"one image, peer ms / pixlearn ms : {one_ms / median(array_ms):.1f}x faster")
        print(f"folder, pixlearn vs peer : {verdict(args.images / folder_s / folder_ips, 1)}")
    if args.batches:
        forward_table()
    if args.allocator:
        allocator_table()


if __name__ == "__main__":
    main()
