"""Training batches: each process's share of an epoch, and the augmentations applied to a batch.

Everything here works on whole batches (no per-image Python): an epoch is a DistributedSampler
order split into index batches, and `augment` flips and shifts a batch in a few tensor operations
(and applies the photo augmentations of `training.augment` where asked).

    >>> [b.tolist() for b in epoch_batches(5, 2, epoch=0, seed=0, shuffle=False)]
    [[0, 1], [2, 3], [4]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.training.augment import photo_augment
from pixlearn.core import distributed
from pixlearn.models.layers import read_extent


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index batches of this process's share of one epoch (DistributedSampler, reshuffled per epoch)."""
    rank, world = distributed.rank(), distributed.world_size()
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


def read_cut(model: nn.Module, size: Sequence[int]) -> tuple[int, int] | None:
    """(rows, columns) of an input of `size` (height, width) that `model` reads, where that is less
    than all of it (`models.layers.read_extent`: seed-cnn reads 109x109 of 150x150); else None."""
    net = distributed.unwrap(model)
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
