"""`latent-grid`: multi-resolution latent grids and a small synthesis, the model of `pixlearn compress`.

An image of H x W pixels keeps one grid of latent values per level, ceil(H / 2^l) x ceil(W / 2^l) cells
(l = 0 finest). Synthesis starts at the coarsest grid and, level by level, upsamples 2x (bicubic) and
adds the next grid, then maps the channels to colours (COOL-CHIC's latents, Ladune et al. 2023, with a
Laplacian-pyramid synthesis, Burt & Adelson 1983). Colour images keep luma and two chroma channels
(JPEG's YCbCr); chroma starts one level up (`chroma_from`), as 4:2:0 does. No synthesis network:
a learned MLP started from zero lost to the pyramid started from the image (bench/README, codec).

Why a pyramid rather than COOL-CHIC's learned synthesis from zero: on a CPU an encoder gets a few
hundred full-image steps, and COOL-CHIC's latents, starting at zero, were at 24.9 dB after 400 steps
on a 512x512 photo at 1 bpp (JPEG: 33.0 dB). The pyramid's latents have a closed-form start
(`analyse`) that reconstructs the image exactly, so every step goes into rate-distortion tuning.

    >>> import torch
    >>> model = create_latent_grids(width=32, height=24, out_features=3, levels=3)
    >>> [tuple(g.shape[1:]) for g in model.latents]
    [(1, 24, 32), (3, 12, 16), (3, 6, 8)]
    >>> model = create_latent_grids(width=32, height=24, out_features=3, levels=3, chroma_from=0)
    >>> picture = torch.rand(3, 24, 32)
    >>> model.analyse(picture)
    >>> bool((model.image() - picture).abs().max() < 1e-5)
    True
    >>> model(torch.zeros(5, 2)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixlearn.models.registry import register_model

MAX_LEVELS = 12
# JPEG's full-range YCbCr (ITU-T T.871), rows: Y, Cb, Cr from R, G, B; channels centred on 0.
RGB_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def level_shapes(width: int, height: int, levels: int) -> list[tuple[int, int]]:
    """(rows, columns) of each level's grid, finest first."""
    return [(math.ceil(height / 2**level), math.ceil(width / 2**level)) for level in range(levels)]


def level_channels(channels: int, levels: int, chroma_from: int) -> list[int]:
    """Channels each level holds: colour images keep only luma below `chroma_from`."""
    return [1 if channels == 3 and level < chroma_from else channels for level in range(levels)]


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Each output value is computed on its own, in a fixed order: the same in any thread count.
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class LatentGrids(nn.Module):
    """Latent pyramid + colour transform. `image()` renders the whole image;
    `forward(coords)` any points in [-1, 1] (x, y), so it also works as an ordinary field model."""

    def __init__(self, width: int, height: int, channels: int, levels: int, chroma_from: int):
        super().__init__()
        self.width, self.height, self.channels, self.chroma_from = width, height, channels, chroma_from
        shapes = level_shapes(width, height, levels)
        counts = level_channels(channels, levels, chroma_from)
        self.latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, c, *s)) for c, s in zip(counts, shapes, strict=True)]
        )
        colour = torch.linalg.inv(torch.tensor(RGB_TO_YCC, dtype=torch.float64)) if channels == 3 else None
        self.register_buffer("to_rgb", colour if colour is not None else torch.eye(channels, dtype=torch.float64))

    @property
    def levels(self) -> int:
        return len(self.latents)

    def channel_image(self, grids: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The pyramid summed to full size, (1, C, H, W), in luma/chroma (or grey) units centred on 0."""
        grids = list(self.latents) if grids is None else grids
        x = grids[-1]
        x = torch.cat([x, x.new_zeros(1, self.channels - x.shape[1], *x.shape[2:])], 1)
        for g in reversed(grids[:-1]):
            x = upsample(x, tuple(g.shape[-2:]))
            x = torch.cat([x[:, : g.shape[1]] + g, x[:, g.shape[1] :]], 1)
        return x

    def image(self, grids: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Colours (C, H, W) near [0, 1], unclipped (for training)."""
        x = self.channel_image(grids)[0]
        m = self.to_rgb.to(x.dtype)
        # Written out term by term (not a matmul): the sum's order, and so its bits, never depend on threads.
        rgb = torch.stack([sum(m[i, j] * x[j] for j in range(self.channels)) for i in range(self.channels)])
        return rgb + 0.5

    @torch.no_grad()
    def analyse(self, picture: torch.Tensor) -> None:
        """Set the latents to the Laplacian pyramid of `picture` (C, H, W) in [0, 1]: exact reconstruction."""
        x = picture.to(self.to_rgb.dtype) - 0.5
        if self.channels == 3:
            x = torch.einsum("ij,jhw->ihw", torch.tensor(RGB_TO_YCC, dtype=x.dtype), x)
        gauss = [x[None]]
        for g in self.latents[1:]:
            gauss.append(F.adaptive_avg_pool2d(gauss[-1], tuple(g.shape[-2:])))
        self.latents[-1].copy_(gauss[-1][:, : self.latents[-1].shape[1]])
        for level in range(self.levels - 2, -1, -1):
            detail = gauss[level] - upsample(gauss[level + 1], tuple(gauss[level].shape[-2:]))
            self.latents[level].copy_(detail[:, : self.latents[level].shape[1]])

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        grid = coords.reshape(1, 1, -1, 2).to(self.latents[0].dtype)
        picture = self.image()[None]
        return F.grid_sample(picture, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, :, 0].T


@register_model(
    "latent-grid",
    "field",
    "Multi-resolution latent grids (a Laplacian pyramid, COOL-CHIC style latents); the `pixlearn compress` model.",
)
def create_latent_grids(
    in_features: int = 2,
    out_features: int = 3,
    width: int = 64,
    height: int = 64,
    levels: int = 7,
    chroma_from: int = 1,
) -> nn.Module:
    if in_features != 2:
        raise ValueError("latent-grid maps 2D coordinates only (in_features=2)")
    levels = max(1, min(levels, MAX_LEVELS, 1 + math.ceil(math.log2(max(width, height, 2)))))
    return LatentGrids(width, height, out_features, levels, chroma_from)
