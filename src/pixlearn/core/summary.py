"""Keras-style model summaries: layer, output shape and parameter count, as the seeds print.

    >>> from pixlearn.models.registry import create_model
    >>> from pixlearn.core.summary import summarize, format_summary
    >>> rows = summarize(create_model("seed-cnn"), (1, 150, 150))
    >>> [r.params for r in rows if r.params]
    [1200, 64860, 32460, 21640, 82]

Shapes are written channels-last, (None, height, width, channels), as Keras writes them.
Activations folded into a layer in Keras (ReLU, sigmoid, tanh) are folded here too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

# torch class -> Keras layer type, so the table reads like the seed's
_KERAS_TYPES = {
    "Conv2d": "Conv2D",
    "MaxPool2d": "MaxPooling2D",
    "AvgPool2d": "AveragePooling2D",
    "AdaptiveAvgPool2d": "GlobalAveragePooling2D",
    "Flatten": "Flatten",
    "Linear": "Dense",
    "BatchNorm2d": "BatchNormalization",
    "Dropout": "Dropout",
}
_FOLDED = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Hardtanh, nn.GELU, nn.SiLU)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int | None, ...]
    params: int


def _keras_type(module: nn.Module) -> str:
    cls = type(module).__name__
    return _KERAS_TYPES.get(cls, getattr(module, "keras_type", cls))


def _snake(kind: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", kind).lower().replace("2_d", "2d")


def _channels_last(shape: torch.Size) -> tuple[int | None, ...]:
    dims = list(shape[1:])
    if len(dims) == 3:  # (C, H, W) -> (H, W, C)
        dims = dims[1:] + dims[:1]
    return (None, *dims)


def _is_leaf(module: nn.Module) -> bool:
    return not list(module.children()) or getattr(module, "keras_type", None) is not None


def summarize(model: nn.Module, input_shape: Sequence[int]) -> list[LayerRow]:
    """Run one dummy batch through `model` and return a row per leaf layer, in call order.

    input_shape excludes the batch: (channels, height, width) for images, (2,) for coordinates.
    """
    rows: list[LayerRow] = []
    counts: Counter[str] = Counter()
    handles = []

    def hook(module: nn.Module, _inputs, output) -> None:
        if isinstance(module, _FOLDED) or not isinstance(output, torch.Tensor):
            return
        kind = _keras_type(module)
        base = _snake(kind)
        name = base if counts[base] == 0 else f"{base}_{counts[base]}"
        counts[base] += 1
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if getattr(module, "keras_type", None):  # a composite block shown as one layer
            params = sum(p.numel() for p in module.parameters())
        rows.append(LayerRow(name, kind, _channels_last(output.shape), params))

    seen: set[int] = set()
    for module in model.modules():
        if module is model and list(model.children()):
            continue
        if _is_leaf(module) and id(module) not in seen:
            # Modules inside a composite block are covered by the block's own row.
            seen.update(id(m) for m in module.modules())
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return rows


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _shape_text(shape: tuple[int | None, ...]) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def format_summary(model: nn.Module, input_shape: Sequence[int], title: str = "sequential") -> str:
    """The Keras text table: Layer (type) / Output Shape / Param #, then the totals."""
    rows = summarize(model, input_shape)
    total, trainable = count_params(model)
    first = max([36] + [len(f"{r.name} ({r.kind})") + 2 for r in rows])
    width = first + 44
    line, thick = "_" * width, "=" * width
    out = [f'Model: "{title}"', line, f"{'Layer (type)':<{first}}{'Output Shape':<32}{'Param #':<12}", thick]
    for i, row in enumerate(rows):
        label = f"{row.name} ({row.kind})"
        out.append(f"{label:<{first}}{_shape_text(row.output_shape):<32}{row.params:<12}")
        out.append(thick if i == len(rows) - 1 else line)
    out += [
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        line,
    ]
    return "\n".join(out)
