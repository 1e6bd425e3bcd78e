"""Item 1: training throughput of the seed's network (seed-cnn, 150x150 grey, 2 classes).

In one run, on one generated folder (Fashion-MNIST upscaled to 150x150 PNG, "tops vs other"):
pixlearn's training steps (`train_one_epoch`, the product's defaults) at the seed's batch size 10
and at the best of several batch sizes, a plain eager PyTorch loop written here (float32, NCHW,
batch 10, torch's default threads: what a direct port of the seed looks like), the Keras 3 +
TensorFlow peer on the same folder, and the machine's float32 matmul peak. pixlearn and the plain
loop are interleaved round by round; the peer runs between the rounds. Prints ratios.

    python bench/bench_train.py                 # about 5-10 minutes on a busy 2-core machine
    python bench/bench_train.py --images 300 --rounds 2 --no-peer    # a quick look
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import (
    header,
    interleave,
    matmul_peak_gflops,
    median,
    run_peer,
    scratch,
    spread,
    tops_tree,
    verdict,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import pixlearn.classify.training.loop as train_module
from pixlearn.classify.data.decoding import DecodeOptions, ImageSet, load_images
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.classify.training.loop import TrainConfig, make_optimizer, train_one_epoch
from pixlearn.core.devices import choose_threads, thread_count, uses_bf16
from pixlearn.core.progress import SILENT
from pixlearn.models.registry import create_model

BATCH_SIZES = (10, 32, 64, 128)  # candidates for pixlearn's best batch size


def train_flops_per_image(size: int = 150) -> float:
    """Forward + backward FLOPs of one size x size x 1 input through seed-cnn (built for 150x150),
    counted by torch; pixlearn feeds it the 109x109 it reads."""
    model = create_model("seed-cnn")
    x = torch.rand(1, 1, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return float(counter.get_total_flops())


def pixlearn_measure(data: ImageSet, batch_size: int, whole_input: bool = False, **options) -> Callable[[], float]:
    """Images/s of pixlearn's training steps with its defaults (threads, layout, precision) or `options`;
    `whole_input`: without cutting the rows and columns seed-cnn never reads (train.read_cut)."""
    config = TrainConfig(model="seed-cnn", head="sigmoid", batch_size=batch_size, epochs=1, lr=1e-3, **options)
    torch.manual_seed(0)
    model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    device = torch.device("cpu")
    epoch = [0]

    def measure() -> float:
        # The product's default: a fixed count, one thread per core (or the options' --threads).
        cut = train_module.read_cut
        if whole_input:
            train_module.read_cut = lambda *_: None
        try:
            with thread_count(choose_threads(config.threads)):
                started = time.perf_counter()
                train_one_epoch(model, data, optimizer, config, epoch[0], device, SILENT)
                elapsed = time.perf_counter() - started
        finally:
            train_module.read_cut = cut
        epoch[0] += 1
        return len(data) / elapsed

    return measure


class PlainSeedCNN(nn.Sequential):
    """The seed's network written out as a user would (same layers as pixlearn's seed-cnn)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 120, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(120, 60, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(60, 60, 3, stride=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(60, 40, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(40, 2),  # 150 px shrinks to 1x1 by the last conv
        )


def eager_measure(data: ImageSet, batch_size: int = 10) -> Callable[[], float]:
    """Images/s of a plain eager loop: float32 NCHW tensors made once, torch's default threads."""
    x_all = data.images.float() / 255.0  # the whole set as float32, as a direct port does
    y_all = nn.functional.one_hot(data.labels, 2).float()
    torch.manual_seed(0)
    model = PlainSeedCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def measure() -> float:
        started = time.perf_counter()
        order = torch.randperm(len(x_all))
        for index in order.split(batch_size):
            loss = loss_fn(model(x_all[index]), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return len(x_all) / (time.perf_counter() - started)

    return measure


def load_train_set(root, limit: int) -> ImageSet:
    splits = find_splits(root, LabelRule("first"))
    data = load_images(splits.train, DecodeOptions("grayscale", (150, 150)), splits.classes)
    return data.subset(torch.arange(min(limit, len(data))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="training images per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (half before, half after the peer)")
    parser.add_argument("--peer-train", type=int, default=2000, help="training images of the peer's folder")
    parser.add_argument("--peer-epochs", type=int, default=2, help="peer epochs (its median epoch is used)")
    parser.add_argument("--no-peer", action="store_true", help="skip the Keras peer")
    parser.add_argument("--tricks", action="store_true", help="also pixlearn b10 with each speed default undone")
    args = parser.parse_args()
    print(header("bench_train: seed-cnn 150x150x1, 2 classes, training steps"))
    peak = matmul_peak_gflops()
    flops, read_flops = train_flops_per_image(150), train_flops_per_image(109)
    print(
        f"matmul float32 peak {peak:,.0f} GFLOP/s; seed-cnn {flops / 1e6:,.0f} MFLOP per 150x150 training "
        f"image, {read_flops / 1e6:,.0f} MFLOP on the 109x109 it reads (what pixlearn runs)"
    )
    print(
        f"pixlearn defaults: threads {choose_threads(0)}, channels_last on, bf16 autocast "
        f"{'on' if uses_bf16('auto', torch.device('cpu')) else 'off'}"
    )
    with scratch("train") as tmp:
        root = tops_tree(tmp, max(args.peer_train, args.images), 400)
        data = load_train_set(root, args.images)
        measures = {f"pixlearn b{b}": pixlearn_measure(data, b) for b in BATCH_SIZES}
        measures["plain eager b10"] = eager_measure(data)
        if args.tricks:
            measures["b10 fp32"] = pixlearn_measure(data, 10, precision="fp32")
            measures["b10 NCHW"] = pixlearn_measure(data, 10, channels_last=False)
            measures["b10 1 thread"] = pixlearn_measure(data, 10, threads=1)
            measures["b10 none"] = pixlearn_measure(data, 10, precision="fp32", channels_last=False)
            measures["b10 whole input"] = pixlearn_measure(data, 10, whole_input=True)
        for m in measures.values():  # one untimed pass each: allocations and kernel choice
            m()
        before = interleave(measures, (args.rounds + 1) // 2)
        peer = None if args.no_peer else run_peer(root, args.peer_epochs, 10)
        after = interleave(measures, args.rounds // 2)
    results = {k: before[k] + after[k] for k in measures}
    print(f"\n{'contender':<18} images/s median (min-max)   share of matmul peak")
    for name, values in results.items():
        executed = read_flops if name.startswith(("pixlearn", "b10")) and name != "b10 whole input" else flops
        print(f"{name:<18} {spread(values):<28} {median(values) * executed / 1e9 / peak:6.1%}")
    best_name = max((f"pixlearn b{b}" for b in BATCH_SIZES), key=lambda k: median(results[k]))
    ours10, best = median(results["pixlearn b10"]), median(results[best_name])
    eager = median(results["plain eager b10"])
    print(f"\npixlearn b10 vs plain eager b10 : {verdict(ours10 / eager, 3)}")
    print(f"pixlearn best ({best_name}) vs plain eager b10 : {best / eager:.2f}x")
    if peer is not None:
        print(f"Keras peer b10: {peer.train_img_per_s:,.0f} images/s (its median epoch, {args.peer_train} images)")
        print(f"pixlearn b10 vs Keras peer b10 : {verdict(ours10 / peer.train_img_per_s, 1.5)}")
        print(f"pixlearn best ({best_name}) vs Keras peer b10 : {best / peer.train_img_per_s:.2f}x")


if __name__ == "__main__":
    main()
