"""The one inference loop (validation, evaluation, prediction, export): input conversion, the
inference copy of a network, and logits in cache-sized batches.

Images stay uint8 until `to_input` turns one batch into floats. Inference runs a copy of the network
(`inference_model`: eval mode, channels-last, bf16 weights where training ran in bf16) in cache-sized
batches (`batched_logits`), with optional mirror TTA (`forward_logits`).

    >>> import torch
    >>> to_input(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), torch.device("cpu")).tolist()
    [[[[1.0, 1.0], [1.0, 1.0]]]]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pixlearn.core.devices import uses_bf16
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.layers import crop_unread_input, pack_convolutions


def to_input(
    batch: torch.Tensor,
    device: torch.device,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    normalize: Sequence[float] | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> floats in [0, 1] on the device; done per batch, never for the whole set.
    With `normalize` (a spec's (mean, std)), then `normalise`d in float32 before the cast to `dtype`.

    bfloat16 holds every integer up to 256 exactly and torch divides it in float32, so dtype=bfloat16
    gives exactly the float32 result cast to bfloat16, with one pass fewer.
    """
    x = batch if batch.device == device else batch.to(device, non_blocking=True)
    if normalize is not None:
        x = normalise(x.to(torch.float32).div_(255.0), normalize).to(dtype)
    else:
        x = x.to(dtype).div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def normalise(x: torch.Tensor, normalize: Sequence[float] | None) -> torch.Tensor:
    """(x - mean) / std of inputs in [0, 1] for a spec's `normalize` (mean, std); x itself for None.
    The one normalisation of training (after augmentation), validation, evaluation and prediction."""
    return x if normalize is None else (x - float(normalize[0])) / float(normalize[1])


def model_dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters(), torch.empty(0)).dtype


def inference_model(model: nn.Module, bf16: bool = False) -> nn.Module:
    """A copy of `model` as inference runs it: eval mode, channels-last, weights in bfloat16 if `bf16`,
    convolutions packed for oneDNN with their ReLUs fused (`models.layers.pack_convolutions`), input
    rows and columns that the network never reads cut away first (`models.layers.crop_unread_input`).

    One path for validation, evaluation and prediction, so all three give the same probabilities.
    bf16 weights cast once, not autocast: autocast re-casts every weight on every call, which costs more
    than it saves on one image, where bf16 weights cast once beat float32
    (bench/README.md, "Inference: precision, batch size and layers"). Accuracy: Fashion-MNIST test
    accuracy moved by at most 0.03 points (4 models), 99.94-99.96% of the labels unchanged (one model). A
    copy, so the model being trained stays as it is.
    """
    net = copy.deepcopy(model).eval()
    if bf16:
        net = net.to(torch.bfloat16)
    return crop_unread_input(pack_convolutions(net.to(memory_format=torch.channels_last)))


def forward_logits(model: nn.Module, x: torch.Tensor, tta: bool = False, shift: int = 0) -> torch.Tensor:
    """Float32 logits of a batch in [0, 1] in the model's dtype (`to_input(..., dtype=model_dtype(model))`);
    with `tta`, the mean of the logits of each image and of its mirror; with `shift` too, that mean
    weighted 1/2 and 1/4 each for the image moved `shift` pixels up-left and down-right (reflected
    edges), each with its mirror.

    Test-time augmentation with the flip and shifts the model was trained with (fastai's `tta`,
    airbench's mirror-translate TTA): the mirror +0.16 to +0.26 points on Fashion-MNIST, the shifts
    about +0.2 more for two passes per view (bench/README.md).
    """
    if not tta:
        return model(x).float()
    logits = _mirrored(model, x)
    if not shift:
        return logits
    height, width = x.shape[-2:]
    padded = F.pad(x, (shift, shift, shift, shift), mode="reflect")
    moved = (padded[..., :height, :width], padded[..., 2 * shift :, 2 * shift :])
    return logits / 2 + sum(_mirrored(model, m) for m in moved) / 4


def _mirrored(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (model(x).float() + model(x.flip(3)).float()) / 2


# Inference batches sized so the largest activation stays in cache: seed-cnn's first layer writes 657,000
# values per 150x150 image, and 256 images at once run slower per image than a handful
# (bench/README.md, "Inference: precision, batch size and layers"). Safe: in eval mode no layer mixes the
# images of a batch, so its size changes how many go through at once, not what each is computed from.
INFERENCE_CACHE_BYTES = 8 * 2**20
MAX_INFERENCE_BATCH = 256


def inference_batch_size(model: nn.Module, sample: torch.Tensor) -> int:
    """Images per forward pass: as many as keep the largest activation within INFERENCE_CACHE_BYTES.

    `sample` is one input batch as the model takes it (dtype, layout); only its first image is run.
    """
    largest = [1]

    def record(_module: nn.Module, _inputs: object, out: object) -> None:
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out[:1].numel() * out.element_size())

    hooks = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return max(1, min(MAX_INFERENCE_BATCH, INFERENCE_CACHE_BYTES // largest[0]))


def input_batch_size(net: nn.Module, images: torch.Tensor, device: torch.device) -> int:
    """inference_batch_size of `net` for uint8 images like `images` (N, C, H, W)."""
    return inference_batch_size(net, to_input(images[:1], device, True, model_dtype(net)))


def batched_logits(
    net: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    tta: bool = False,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    normalize: Sequence[float] | None = None,
    shift: int = 0,
) -> torch.Tensor:
    """Float logits of uint8 images (N >= 1) through an inference_model, `batch_size` images per pass
    (default: input_batch_size), inputs in `dtype` (default: model_dtype(net), a walk over the
    modules that a caller predicting one image at a time saves by passing it). The one inference
    loop of evaluation, validation and Predictor."""
    size = batch_size or input_batch_size(net, images, device)
    dtype = dtype or model_dtype(net)
    logits = [
        forward_logits(net, to_input(images[i : i + size], device, True, dtype, normalize), tta, shift)
        for i in range(0, len(images), size)
    ]
    return logits[0] if len(logits) == 1 else torch.cat(logits)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    device: torch.device,
    tta: bool = False,
    bf16: bool = False,
    normalize: Sequence[float] | None = None,
    shift: int = 0,
) -> torch.Tensor:
    """Logits for uint8 images (N, C, H, W) by `inference_model`, in cache-sized batches; on the CPU.
    `normalize`: the spec's (mean, std), see `normalise`; `tta` and `shift`: `forward_logits`."""
    if len(images) == 0:
        return torch.empty(0, 0)
    net = inference_model(model, bf16)
    return batched_logits(net, images, device, tta, normalize=normalize, shift=shift).cpu()


def spec_logits(model: nn.Module, images: torch.Tensor, device: torch.device, spec: ModelSpec) -> torch.Tensor:
    """`predict_logits` as a saved model's spec says: its normalisation, TTA and shift, and bf16 where
    its precision and the device give it (as training ran and Predictor runs)."""
    bf16 = uses_bf16(spec.precision, device)
    return predict_logits(model, images, device, spec.tta, bf16, spec.normalize, spec.tta_shift)


