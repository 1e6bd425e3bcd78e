"""Image classifiers: images (N, C, H, W) in [0, 1] -> class logits (N, classes).

Every constructor takes in_channels, num_classes and input_size (height, width), so the JSON
spec saved beside the weights rebuilds the exact network without any training flags.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pixlearn.models.layers import ConvBNAct, MaxPool2d, ResidualBlock, conv_out
from pixlearn.models.registry import InputTooSmallError, register_model


class SeedCNN(nn.Sequential):
    """The first seed's network, layer for layer (Keras: conv 120/60/60/40, stride 2, two max-pools).

    For 150x150x1 and 2 classes it has the seed's 120,242 parameters. The seed ends in a sigmoid;
    here the model returns logits and the loss (softmax or the seed's sigmoid) applies it.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, input_size: Sequence[int] = (150, 150)):
        h, w = (int(v) for v in input_size)
        for step, (kernel, stride) in enumerate([(3, 2), (2, 2), (3, 2), (3, 2), (2, 2), (3, 2)]):
            h, w = conv_out(h, kernel, stride), conv_out(w, kernel, stride)
            if h < 1 or w < 1:
                raise InputTooSmallError(
                    f"seed-cnn needs inputs of at least 109x109 (its stride chain shrinks "
                    f"{tuple(input_size)} to nothing at layer {step + 1}); use --size 150 or a model "
                    f"such as resnet-small that works at any size"
                )
        # Max-pool before ReLU: exactly the seed's ReLU-then-pool values (both are monotone, so they
        # commute), with the ReLU on a quarter of the elements; weights keep their positions (0, 3, 5, 8, 11).
        super().__init__(
            nn.Conv2d(in_channels, 120, 3, stride=2),
            MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(120, 60, 3, stride=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(60, 60, 3, stride=2),
            MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(60, 40, 3, stride=2),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(40 * h * w, num_classes),
        )


class ResNetSmall(nn.Module):
    """A small residual net for small data: BN, residual stages, global average pooling.

    Global pooling makes it independent of the input size (28x28 and up); the stem keeps full
    resolution for small inputs and strides by 2 for inputs of 96 pixels or more, where the
    first layer would otherwise cost most of the compute.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        input_size: Sequence[int] = (64, 64),
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        dropout: float = 0.1,
    ):
        super().__init__()
        stem_stride = 2 if min(input_size) >= 96 else 1
        self.stem = ConvBNAct(in_channels, widths[0], 3, stem_stride)
        stages: list[nn.Module] = []
        c_in = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                stages.append(ResidualBlock(c_in, width, stride))
                c_in = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(self.dropout(self.flatten(self.pool(x))))


@register_model("seed-cnn", "classify", "The first seed's CNN, exactly (needs inputs >= 109x109).", 150, 109)
def seed_cnn(in_channels: int = 1, num_classes: int = 2, input_size: Sequence[int] = (150, 150)) -> nn.Module:
    return SeedCNN(in_channels, num_classes, input_size)


@register_model("resnet-small", "classify", "Residual CNN with batch norm and global pooling; any size >= 28.", 64, 28)
def resnet_small(in_channels: int = 1, num_classes: int = 2, input_size: Sequence[int] = (64, 64)) -> nn.Module:
    return ResNetSmall(in_channels, num_classes, input_size, widths=(32, 64, 128), blocks=(1, 1, 1))


@register_model(
    "resnet-medium", "classify", "Wider, deeper residual CNN (64-128-256, two blocks a stage); any size >= 28.", 64, 28
)
def resnet_medium(in_channels: int = 1, num_classes: int = 2, input_size: Sequence[int] = (64, 64)) -> nn.Module:
    return ResNetSmall(in_channels, num_classes, input_size, widths=(64, 128, 256), blocks=(2, 2, 2))


class AirNet(nn.Sequential):
    """An airbench-style CNN for small images (28-64 px): a stem conv, then per stage a conv at full
    resolution, a 2x2 max-pool, BN, GELU and a second conv; global max-pool and a linear head.

    Pooling right after the first conv of a stage (KellerJordan/cifar10-airbench) halves the cost of
    everything after it; no residuals are needed at this depth. Built for Fashion-MNIST in a CPU time
    budget (pixlearn.recipes "fashion-mnist").
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: Sequence[int] = (24, 48, 96, 192)):
        stem, *stages = widths
        layers: list[nn.Module] = [*_conv_bn_gelu(in_channels, stem)]
        c_in = stem
        for width in stages:
            layers += [*_conv_bn_gelu(c_in, width, pool=True), *_conv_bn_gelu(width, width)]
            c_in = width
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
        super().__init__(*layers)


def _conv_bn_gelu(c_in: int, c_out: int, pool: bool = False) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    return [conv, *([MaxPool2d(2)] if pool else []), nn.BatchNorm2d(c_out), nn.GELU()]


@register_model(
    "airnet-small",
    "classify",
    "Airbench-style CNN for small inputs (built for 28-64 px, any >= 8), 24-48-96-192.",
    28,
    8,
)
def airnet_small(in_channels: int = 1, num_classes: int = 10, input_size: Sequence[int] = (28, 28)) -> nn.Module:
    return AirNet(in_channels, num_classes, widths=(24, 48, 96, 192))
