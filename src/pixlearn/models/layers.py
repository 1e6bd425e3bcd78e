"""Building blocks shared by the registered models. Models import blocks from here, never from
each other (timm's layers/ rule)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_out(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis (no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


class ConvBNAct(nn.Sequential):
    """3x3 (or k x k) convolution, batch norm, ReLU: the unit of the small residual nets."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut, He et al. 2016."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNAct(c_in, c_out, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=True)
        # Zero-init the last BN's scale so each block starts as the identity (Goyal et al. 2017):
        # deeper nets then train as stably as shallow ones from the first step.
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d that, when no gradient is needed, takes a 2x2 stride-2 max as the max of four
    strided slices.

    Why: torch's CPU max-pool writes an int64 argmax index per output even under inference_mode,
    an extra 8 bytes per value that backward alone needs; the slices write none
    (bench/README.md, "Speed defaults and why they are safe"). Same values (a max is exact; NaN propagates in
    both); with gradients, or any other pooling shape, torch's own kernel runs.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.plain_2x2 = self._plain_2x2()  # decided once: the check costs more than the slices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.plain_2x2 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        if x.shape[-2] % 2 or x.shape[-1] % 2:  # floor mode: an odd last row or column is dropped
            x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
        # Pairs of rows, then pairs of columns: two passes instead of three
        # (bench/README.md, "Speed defaults and why they are safe")
        rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
        return torch.maximum(rows[..., 0::2], rows[..., 1::2])

    def _plain_2x2(self) -> bool:
        pair = (2, 2)
        return (
            nn.modules.utils._pair(self.kernel_size) == pair
            and nn.modules.utils._pair(self.stride) == pair
            and nn.modules.utils._pair(self.padding) == (0, 0)
            and nn.modules.utils._pair(self.dilation) == (1, 1)
            and not self.ceil_mode
            and not self.return_indices
        )


def _onednn_ops_available() -> bool:
    ops = torch.ops.mkldnn
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(ops, "_reorder_convolution_weight")
        and hasattr(ops, "_convolution_pointwise")
    )


ONEDNN_PACKING = _onednn_ops_available()


class PackedConv2d(nn.Module):
    """A trained Conv2d, and the ReLU right after it if any, as oneDNN runs them fastest on a CPU:
    the weights reordered once into oneDNN's blocked layout, the ReLU applied inside the convolution.

    Why: a plain Conv2d reorders its weights on every call and the ReLU is one more pass over the
    output; for one 150x150 image through seed-cnn that overhead is most of the time of the small
    layers (bench/README.md, "Speed defaults and why they are safe"). These are
    the two oneDNN operators torch.compile's CPU freezing pass emits. Inference only: with
    gradients, on another device, or where this torch build lacks the operators, it runs the plain
    layers. The packing follows the first input's channels and size; other batch sizes give the
    same values (test).
    """

    def __init__(self, conv: nn.Conv2d, relu: bool):
        super().__init__()
        self.conv = conv
        self.relu = relu
        self.post_op = "relu" if relu else "none"
        self.geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.packable = ONEDNN_PACKING and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
        self.packed: torch.Tensor | None = None  # not a buffer: derived, never saved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed
        fast = packed is not None and x.dtype == packed.dtype and x.dim() == 4 and x.device.type == "cpu"
        if not fast or torch.is_grad_enabled():
            if not self._can_pack(x):
                y = self.conv(x)
                return torch.relu(y) if self.relu else y
            packed = self.packed = torch.ops.mkldnn._reorder_convolution_weight(
                self.conv.weight.detach(), *self.geometry, [1, *x.shape[1:]]
            )
        return torch.ops.mkldnn._convolution_pointwise(x, packed, self.conv.bias, *self.geometry, self.post_op, [], "")

    def _can_pack(self, x: torch.Tensor) -> bool:
        return (
            self.packable
            and not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dim() == 4
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _onednn_bf16()))
            and x.dtype == self.conv.weight.dtype
        )

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's signature
        self.packed = None  # .to(), .half() and the like change the weights: pack them again
        return super()._apply(fn, recurse)


def _onednn_bf16() -> bool:
    # oneDNN refuses bf16 convolutions on CPUs without AVX512 or AVX-NE-CONVERT: the plain layer runs
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pack_convolutions(net: nn.Module) -> nn.Module:
    """Replace, in place, every Conv2d inside an nn.Sequential of `net` by a PackedConv2d, taking in
    the ReLU that follows it directly or after a max-pool. For inference copies only
    (pixlearn.batches.inference_model)."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        layers = list(seq)
        kept: list[nn.Module] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            if type(layer) is nn.Conv2d:
                nxt = layers[i + 1 : i + 3]
                if nxt and type(nxt[0]) is nn.ReLU:
                    kept.append(PackedConv2d(layer, relu=True))
                    i += 2
                elif len(nxt) == 2 and isinstance(nxt[0], nn.MaxPool2d) and type(nxt[1]) is nn.ReLU:
                    # conv, max-pool, ReLU (seed-cnn's order) = conv with its ReLU fused, then max-pool:
                    # both are monotone, so they commute, and the fused ReLU costs nothing.
                    kept += [PackedConv2d(layer, relu=True), nxt[0]]
                    i += 3
                else:
                    kept.append(PackedConv2d(layer, relu=False))
                    i += 1
            else:
                kept.append(layer)
                i += 1
        if len(kept) != len(layers) or any(a is not b for a, b in zip(kept, layers, strict=True)):
            _set_layers(seq, kept)
    return net


def _set_layers(seq: nn.Sequential, layers: Sequence[nn.Module]) -> None:
    for name in list(seq._modules):
        del seq._modules[name]
    for index, layer in enumerate(layers):
        seq.add_module(str(index), layer)


# Layers whose outputs at one position depend on the inputs at that position only. Not batch norm:
# in training its statistics pool every position, read later or not.
_ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Identity, nn.Dropout)


def read_extent(layers: Sequence[nn.Module], size: tuple[int, int]) -> tuple[int, int] | None:
    """Rows and columns of an input of `size` that a chain of layers reads, where the chain is
    unpadded convolutions and max-pools (and elementwise layers) up to a Flatten; None for any
    other chain. Strided layers in floor mode drop trailing rows and columns that the next layer
    cannot fit a window on; what they drop was never needed.

        >>> from torch import nn
        >>> read_extent([nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten()], (8, 8))
        (7, 7)
    """
    windows: list[tuple[int, int]] = []  # (kernel, stride) per spatial layer, square only
    for layer in layers:
        if isinstance(layer, PackedConv2d):
            layer = layer.conv
        if isinstance(layer, nn.Flatten):
            break
        if isinstance(layer, _ELEMENTWISE):
            continue
        window = _square_window(layer)
        if window is None:
            return None
        windows.append(window)
    else:
        return None  # no Flatten: a global pooling or head may read everything
    extent = []
    for length in size:
        outs = [length]
        for kernel, stride in windows:
            outs.append(conv_out(outs[-1], kernel, stride))
        if outs[-1] < 1:
            return None
        need = outs[-1]
        for kernel, stride in reversed(windows):
            need = (need - 1) * stride + kernel
        extent.append(need)
    return extent[0], extent[1]


def _square_window(layer: nn.Module) -> tuple[int, int] | None:
    if isinstance(layer, nn.Conv2d):
        geometry = (layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        ok = layer.padding in ((0, 0), "valid") and layer.dilation == (1, 1)
    elif isinstance(layer, nn.MaxPool2d):
        pair = nn.modules.utils._pair
        stride = layer.stride if layer.stride is not None else layer.kernel_size
        geometry = (pair(layer.kernel_size), pair(stride), pair(layer.padding), pair(layer.dilation))
        ok = geometry[2] == (0, 0) and geometry[3] == (1, 1) and not layer.ceil_mode
    else:
        return None
    (kh, kw), (sh, sw) = geometry[0], geometry[1]
    if not ok or kh != kw or sh != sw:
        return None
    return kh, sh


class CropUnread(nn.Module):
    """First layer of an inference copy: cuts away the trailing rows and columns of the input that
    the rest of the network never reads (`read_extent`), so no layer computes values that are
    dropped later.

    Why: seed-cnn's stride-2 chain reads only the top-left 109x109 of a 150x150 image; every
    convolution before the last does about half its work for outputs that no later layer uses
    (the seed's Keras network does the same). Same logits, by construction (test).
    """

    def __init__(self, chain: Sequence[nn.Module]):
        super().__init__()
        self._chain = tuple(chain)  # a tuple, so not registered again as submodules
        self._extents: dict[tuple[int, int], tuple[int, int] | None] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size not in self._extents:
            self._extents[size] = read_extent(self._chain, size)
        extent = self._extents[size]
        if extent is None or extent == size:
            return x
        return x[..., : extent[0], : extent[1]]


def crop_unread_input(net: nn.Module) -> nn.Module:
    """Put a CropUnread in front of `net` if it is an nn.Sequential; in place. For inference copies."""
    if isinstance(net, nn.Sequential) and not (len(net) and isinstance(net[0], CropUnread)):
        _set_layers(net, [CropUnread(list(net)), *net])
    return net
