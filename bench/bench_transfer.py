"""Transfer learning with EfficientNet-Lite0 (pixlearn.models.efficientnet / pretrained), in parts.

features: the backbone's forward pass (`model.features`: stem, blocks and head_conv, before the
pooling and the classifier) at 224x224, batch 32, under torch.inference_mode with channels-last
inputs, in images per second: float32 and bfloat16 weights (cast once, as inference copies are),
plain and with the convolutions packed for oneDNN (models.layers.pack_convolutions). Rounds are
interleaved so drifting load hits every variant alike. This is the cost of extracting features
from frozen ImageNet weights, the floor of any fine-tuning epoch. Weights do not change the
timings, so the network is freshly initialised (no package needed).

    python bench/bench_transfer.py                    # --parts features: about 2 minutes on 2 cores
    python bench/bench_transfer.py --rounds 3 --batch 16 --threads 1

Later parts (whole-command runs with --pretrained / --freeze) are to be added here.
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import header, interleave, median, seconds, spread
from torch import nn

from pixlearn.models.layers import pack_convolutions
from pixlearn.models.registry import create_model

PARTS = ("features",)


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


def part_features(batch: int, size: int, rounds: int) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(header("transfer learning: EfficientNet-Lite0"))
    if "features" in args.parts:
        part_features(args.batch, args.size, args.rounds)


if __name__ == "__main__":
    main()
