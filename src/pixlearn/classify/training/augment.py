"""Augmentations that suit photos: random resized crops, small rotations and colour jitter.

Like `batches.augment` (which calls these after its flips and shifts, and before random erasing),
each works on a whole batch at once from one random generator, with no per-image Python:

- `random_affine`: a random resized crop (area share in [crop_scale, 1], aspect 3/4-4/3, at a
  random place) and a rotation up to `rotate` degrees, in one bilinear resample (`affine_grid` +
  `grid_sample`, reflection at the borders) back to the batch's size;
- `color_jitter`: brightness, contrast and (three channels only) saturation factors drawn per
  image in [1 - jitter, 1 + jitter], the result kept in [0, 1].

Off (0) they draw no random numbers, so a batch is the same as without them.

    >>> import torch
    >>> x = torch.rand(4, 3, 16, 16)
    >>> photo_augment(x, torch.Generator().manual_seed(0), 0.0, 0.0, 0.0) is x
    True
    >>> photo_augment(x, torch.Generator().manual_seed(0), 0.35, 10.0, 0.3).shape
    torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ASPECT = (3 / 4, 4 / 3)  # the crop's width / height range, drawn log-uniformly (torchvision's RandomResizedCrop)
LUMA = (0.299, 0.587, 0.114)  # RGB -> grey weights for saturation (ITU-R 601, as torchvision)


def photo_augment(
    x: torch.Tensor, generator: torch.Generator, crop_scale: float, rotate: float, jitter: float
) -> torch.Tensor:
    """Random resized crops and rotations (one resample), then colour jitter, of a batch in [0, 1]."""
    if crop_scale > 0 or rotate > 0:
        x = random_affine(x, generator, crop_scale, rotate)
    if jitter > 0:
        x = color_jitter(x, generator, jitter)
    return x


def random_affine(x: torch.Tensor, generator: torch.Generator, crop_scale: float, rotate: float) -> torch.Tensor:
    """Each image cropped (area share in [crop_scale, 1]; 0 = no crop), rotated up to `rotate` degrees
    and resampled to the batch's size, bilinearly, in one `grid_sample` over the whole batch."""
    n, _, h, w = x.shape
    if crop_scale > 0:
        area = crop_scale + (1 - crop_scale) * torch.rand(n, generator=generator, dtype=torch.float64)
        low, high = math.log(ASPECT[0]), math.log(ASPECT[1])
        aspect = torch.exp(low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64))
        cw, ch = (area * aspect).sqrt().clamp(max=1.0), (area / aspect).sqrt().clamp(max=1.0)
        # the crop's centre, anywhere that keeps it inside the image (normalised coordinates, -1..1)
        tx = (1 - cw) * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
        ty = (1 - ch) * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    else:
        cw = ch = torch.ones(n, dtype=torch.float64)
        tx = ty = torch.zeros(n, dtype=torch.float64)
    angle = torch.zeros(n, dtype=torch.float64)
    if rotate > 0:
        angle = math.radians(rotate) * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    cos, sin = angle.cos(), angle.sin()
    # output (normalised) -> input (normalised): scale to the crop, rotate in pixel space, move to the centre.
    # In pixels p = diag(w/2, h/2) u, so a rotation R in pixels is diag(2/w, 2/h) R diag(w/2, h/2) in u.
    theta = torch.stack(
        [
            torch.stack([cos * cw, -sin * ch * h / w, tx], 1),
            torch.stack([sin * cw * w / h, cos * ch, ty], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), [n, x.shape[1], h, w], align_corners=False)
    out = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.contiguous(memory_format=torch.channels_last) if _channels_last(x) else out


def color_jitter(x: torch.Tensor, generator: torch.Generator, jitter: float) -> torch.Tensor:
    """Brightness, contrast and (for three channels) saturation factors per image in [1 - j, 1 + j]."""
    n, c = x.shape[:2]
    factors = (1 - jitter + 2 * jitter * torch.rand(3, n, generator=generator)).to(x.device, x.dtype)
    brightness, contrast, saturation = (f.view(n, 1, 1, 1) for f in factors)
    x = (x * brightness).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    if c == 3:
        grey = _grey(x)
        x = ((x - grey) * saturation + grey).clamp(0, 1)
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _channels_last(x: torch.Tensor) -> bool:
    return x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
