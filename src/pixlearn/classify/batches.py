"""Batches for training and inference: each process's share of an epoch, input conversion,
augmentation, the one optimisation loop (`optimise`: every classifier's epoch, the CNN's and the
frozen-feature head's) and the one inference loop (validation, evaluation and prediction).

Everything here works on whole batches (no per-image Python): an epoch is a DistributedSampler
order split into index batches, images stay uint8 until `to_input` turns one batch into floats,
and `augment` flips and shifts a batch in a few tensor operations. Inference runs a copy of the
network (`inference_model`: eval mode, channels-last, bf16 weights where training ran in bf16) in
cache-sized batches (`batched_logits`), with optional mirror TTA (`forward_logits`).

    >>> import torch
    >>> [b.tolist() for b in epoch_batches(5, 2, epoch=0, seed=0, shuffle=False)]
    [[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from pixlearn.classify.augment import photo_augment
from pixlearn.classify.decoding import ImageSource
from pixlearn.classify.losses import classification_loss
from pixlearn.core.devices import uses_bf16
from pixlearn.core.runs import unwrap
from pixlearn.core.spec import ModelSpec
from pixlearn.models.layers import crop_unread_input, pack_convolutions, read_extent


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches of this process's share of one epoch (DistributedSampler, reshuffled per epoch)."""
    rank, world = rank_and_world()
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    yield from order.split(batch_size)


def epoch_data(
    data: ImageSource, batch_size: int, epoch: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) batches of this process's share of one epoch, in epoch_batches order;
    a StreamingSet decodes them (ahead, in worker processes) instead of slicing memory."""
    yield from data.batches(epoch_batches(len(data), batch_size, epoch, seed))


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


def read_cut(model: nn.Module, size: Sequence[int]) -> tuple[int, int] | None:
    """(rows, columns) of an input of `size` (height, width) that `model` reads, where that is less
    than all of it (`models.layers.read_extent`: seed-cnn reads 109x109 of 150x150); else None."""
    net = unwrap(model)
    if not isinstance(net, nn.Sequential):
        return None
    extent = read_extent(list(net), (int(size[0]), int(size[1])))
    return extent if extent is not None and extent != (int(size[0]), int(size[1])) else None


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    flip: bool,
    shift: float,
    erase: float = 0.0,
    crop_scale: float = 0.0,
    rotate: float = 0.0,
    jitter: float = 0.0,
) -> torch.Tensor:
    """Random flips, translations, then the photo augmentations (`classify.augment`: resized crops,
    rotations, colour jitter), then erased rectangles, of a whole batch at once (no per-image Python)."""
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(n, 1, 1, 1).to(x.device), x.flip(3), x)
    pad = int(round(shift * min(h, w)))
    if pad > 0:
        # Pad by reflection, then cut each image's window at its own random offset by gathering
        # rows and columns: a vectorised random crop (airbench's translate).
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        padded = padded.gather(2, rows.expand(n, x.shape[1], h, padded.shape[3]))
        x = padded.gather(3, cols.expand(n, x.shape[1], h, w))
    x = photo_augment(x, generator, crop_scale, rotate, jitter)  # draws nothing when all three are off
    if erase > 0:
        x = erase_rectangles(x, generator, erase)
    return x


def photo_options(config: object) -> tuple[float, float, float]:
    """`augment`'s photo options of a TrainConfig: (crop_scale, rotate, jitter)."""
    return config.crop_scale, config.rotate, config.jitter  # type: ignore[attr-defined]


def erase_rectangles(x: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017; torchvision's RandomErasing with value 0): with `probability`,
    one rectangle of 2-25% of the image, aspect 0.3-3.3, at a random place, set to 0 in every channel."""
    n, _, h, w = x.shape
    area = h * w * (0.02 + 0.23 * torch.rand(n, generator=generator))
    aspect = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * torch.rand(n, generator=generator))
    eh = (area * aspect).sqrt().round().clamp(1, h)
    ew = (area / aspect).sqrt().round().clamp(1, w)
    top = (torch.rand(n, generator=generator) * (h - eh + 1)).floor()
    left = (torch.rand(n, generator=generator) * (w - ew + 1)).floor()
    chosen = torch.rand(n, generator=generator) < probability
    rows, cols = torch.arange(h), torch.arange(w)
    in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    mask = in_rows[:, :, None] & in_cols[:, None, :] & chosen[:, None, None]
    return x.masked_fill(mask[:, None].to(x.device), 0)


def inference_model(model: nn.Module, bf16: bool = False) -> nn.Module:
    """A copy of `model` as inference runs it: eval mode, channels-last, weights in bfloat16 if `bf16`,
    convolutions packed for oneDNN with their ReLUs fused (`models.layers.pack_convolutions`), input
    rows and columns that the network never reads cut away first (`models.layers.crop_unread_input`).

    One path for validation, evaluation and prediction, so all three give the same probabilities.
    bf16 weights cast once, not autocast: autocast re-casts every weight on every call, which costs
    more than it saves on one image (seed-cnn, one 150x150 image: autocast 2.9 ms, float32 1.2 ms,
    bf16 weights 0.9 ms; bench/README.md). Accuracy: Fashion-MNIST test accuracy moved by at most
    0.03 points (4 models), 99.94-99.96% of the labels unchanged (one model). A copy, so the model
    being trained stays as it is.
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


# Inference batches sized so the largest activation stays in cache: seed-cnn's first layer writes
# 657,000 values per 150x150 image, and 256 images at once run 2-3x slower per image than 4-8
# (bf16, images/s by batch 1/4/16/64/256: seed-cnn 1036/1493/617/552/505, resnet-small at 64x64
# 240/481/1214/805/531; airnet-small at 28x28 keeps gaining up to 256). bench/README.md.
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


def optimise(
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: Any,
    epoch: int,
    steps_per_epoch: int,
    lr_at: Callable[[int, int, int, Any], float],
    weights: torch.Tensor | None,
    progress: Any,
) -> list[float]:
    """One epoch of optimiser steps over (inputs, labels) batches already on the device: the
    learning rate of each step (scaled per parameter group: transfer's backbone and head), the
    loss, the step, the running figures. Returns [loss sum, correct, seen] of this process."""
    loss_sum = correct = seen = 0.0
    for i, (x, y) in enumerate(batches):
        lr = lr_at(epoch * steps_per_epoch + i, steps_per_epoch * config.epochs, steps_per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        logits = forward(x).float()
        loss = classification_loss(logits, y, config.head, config.label_smoothing, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        progress.advance(len(y), loss=loss_sum / seen, acc=correct / seen)
    return [loss_sum, correct, seen]
