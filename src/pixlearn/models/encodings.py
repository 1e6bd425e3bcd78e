"""Input encodings for coordinate networks: Gaussian Fourier features and a multiresolution hash grid.

Both take coordinates in [-1, 1] (N, in_features) and return features (N, out_dim). Plain PyTorch:
no CUDA extension, so they run (and are tested) on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GaussianFourierFeatures(nn.Module):
    """gamma(v) = [cos(2 pi B v), sin(2 pi B v)], B ~ N(0, sigma^2) (Tancik et al. 2020, section 5).

    v is the coordinate rescaled to [0, 1], the paper's convention, so sigma means what the paper's
    sigma means (its 2D image experiments use sigma = 10). B is a fixed buffer, drawn from `seed`
    and saved with the weights, never trained.
    """

    keras_type = "FourierFeatures"

    def __init__(self, in_features: int = 2, mapping_size: int = 256, sigma: float = 10.0, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_features, mapping_size, generator=generator) * sigma)
        self.out_dim = 2 * mapping_size

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        projected = (2.0 * math.pi) * (((coords + 1.0) * 0.5) @ self.B)
        return torch.cat((torch.cos(projected), torch.sin(projected)), dim=-1)


class BilinearGather(torch.autograd.Function):
    """out[m] = sum_k weight[m, k] * table[index[m, k]]; backward: one index_add_ into the table.

    Forward and backward together beat `table[index]` under autograd and
    `F.embedding_bag(per_sample_weights=...)` on a CPU (bench/README.md, "Means measured").
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        feats = torch.index_select(table, 0, index.reshape(-1)).reshape(*index.shape, table.shape[1])
        ctx.save_for_backward(index, weight)
        ctx.rows = table.shape[0]
        return torch.einsum("mkf,mk->mf", feats, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        index, weight = ctx.saved_tensors
        contrib = (weight[..., None] * grad[:, None, :]).reshape(-1, grad.shape[1])
        table_grad = torch.zeros(ctx.rows, grad.shape[1], dtype=grad.dtype, device=grad.device)
        return table_grad.index_add_(0, index.reshape(-1), contrib), None, None


# Spatial hash of instant-ngp (Mueller et al. 2022, eq. 4): x * 1 xor y * 2654435761, in uint32
# arithmetic; as a signed int32 the second prime is 2654435761 - 2**32.
_PRIME_Y = 2654435761 - 2**32


class HashGrid2d(nn.Module):
    """Multiresolution hash encoding in 2D (instant-ngp, Mueller et al. 2022, section 3).

    `levels` grids, resolutions growing geometrically from `base_resolution` to `finest_resolution`;
    each level holds at most 2**log2_table feature vectors of `features` numbers. A coarse level
    whose (res + 1)^2 vertices fit in its table is stored densely (one entry per vertex, no
    collisions, and no more entries than vertices, so small grids cost few parameters); finer
    levels hash the vertex (x, y) into the table. Features are bilinearly interpolated from the
    four surrounding vertices and the levels concatenated: out_dim = levels * features.

    The gather and its backward are written by hand (`BilinearGather`): autograd's own backward
    of table indexing (and of `F.embedding_bag`) is much slower on a CPU than one `index_add_`
    (bench/README.md, "The hash grid's gather and grid encoding").
    Gradients flow to the table and the MLP only, not to the coordinates.
    """

    keras_type = "HashGrid"

    def __init__(
        self,
        levels: int = 16,
        features: int = 2,
        log2_table: int = 12,
        base_resolution: int = 16,
        finest_resolution: int = 256,
        init_scale: float = 1e-4,
    ):
        super().__init__()
        if levels < 1 or features < 1:
            raise ValueError("a hash grid needs at least one level and one feature")
        growth = (finest_resolution / base_resolution) ** (1.0 / (levels - 1)) if levels > 1 else 1.0
        resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        table = 2**log2_table
        sizes = [min((r + 1) ** 2, table) for r in resolutions]
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + size)
        self.register_buffer("resolution", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("stride", torch.tensor([r + 1 for r in resolutions], dtype=torch.int32), persistent=False)
        self.register_buffer("offset", torch.tensor(offsets, dtype=torch.int32), persistent=False)
        # resolutions grow, so the dense levels come first: levels [0, dense_levels) are dense
        self.dense_levels = sum((r + 1) ** 2 <= table for r in resolutions)
        self.table_size = table
        # instant-ngp initialises entries uniformly in [-1e-4, 1e-4] (section 4): near zero so that
        # the MLP starts from a smooth function, but not zero so levels are distinguishable.
        self.table = nn.Parameter(torch.empty(sum(sizes), features).uniform_(-init_scale, init_scale))
        self.levels, self.features = levels, features
        self.out_dim = levels * features

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        n = coords.shape[0]
        unit = ((coords + 1.0) * 0.5).clamp(0.0, 1.0)  # [-1, 1] -> [0, 1]
        # (L, N) layout: each level's rows are contiguous, so the dense and hashed levels are two
        # plain slices instead of a torch.where over every element.
        px = unit[:, 0][None, :] * self.resolution[:, None]
        py = unit[:, 1][None, :] * self.resolution[:, None]
        top = self.resolution[:, None] - 1
        x0, y0 = torch.minimum(px.floor(), top), torch.minimum(py.floor(), top)
        fx, fy = px - x0, py - y0
        # int32 indices halve the memory traffic of int64; the hash relies on 32-bit wrap-around
        # multiplication exactly as instant-ngp's uint32 arithmetic does.
        x0, y0 = x0.to(torch.int32), y0.to(torch.int32)
        index = torch.empty(self.levels, n, 4, dtype=torch.int32, device=coords.device)
        k = self.dense_levels
        if k:
            stride = self.stride[:k, None]
            base = x0[:k] + y0[:k] * stride + self.offset[:k, None]
            index[:k] = torch.stack((base, base + 1, base + stride, base + stride + 1), dim=-1)
        if k < self.levels:
            xs, ys = x0[k:], y0[k:] * _PRIME_Y
            ys1, xs1 = ys + _PRIME_Y, xs + 1
            mask, offset = self.table_size - 1, self.offset[k:, None]
            index[k:] = torch.stack(
                (
                    torch.bitwise_and(torch.bitwise_xor(xs, ys), mask) + offset,
                    torch.bitwise_and(torch.bitwise_xor(xs1, ys), mask) + offset,
                    torch.bitwise_and(torch.bitwise_xor(xs, ys1), mask) + offset,
                    torch.bitwise_and(torch.bitwise_xor(xs1, ys1), mask) + offset,
                ),
                dim=-1,
            )
        gx, gy = 1.0 - fx, 1.0 - fy
        weight = torch.stack((gx * gy, fx * gy, gx * fy, fx * fy), dim=-1).to(self.table.dtype)
        # int64 for the gather: CPU index_add_ is slower with int32 indices (bench/README.md, "Means measured")
        index = index.reshape(-1, 4).long()
        out = BilinearGather.apply(self.table, index, weight.reshape(-1, 4))  # (L * N, F)
        return out.reshape(self.levels, n, self.features).permute(1, 0, 2).reshape(n, self.out_dim)

    # ------------------------------------------------------------------ rendering a regular grid

    def vertex_grids(self) -> list[torch.Tensor]:
        """Each level's features at every one of its vertices, (res + 1, res + 1, F) indexed [y, x].

        Why: on a regular pixel grid, rows share their y corners and columns their x corners, so a
        render interpolates these small grids (`encode_grid`) instead of hashing 4 corners per pixel.
        """
        grids = []
        for level in range(self.levels):
            side = int(self.stride[level])
            y = torch.arange(side, dtype=torch.int32, device=self.table.device)[:, None]
            x = torch.arange(side, dtype=torch.int32, device=self.table.device)[None, :]
            if level < self.dense_levels:
                index = x + y * side
            else:  # the forward's hash of vertex (x, y): x xor y * prime, in int32 wrap-around arithmetic
                index = torch.bitwise_and(torch.bitwise_xor(x, y * _PRIME_Y), self.table_size - 1)
            index = (index + self.offset[level]).reshape(-1).long()
            grids.append(self.table.index_select(0, index).reshape(side, side, self.features))
        return grids

    def encode_grid(self, ys: torch.Tensor, xs: torch.Tensor, grids: list[torch.Tensor]) -> torch.Tensor:
        """The encoding of every pixel of the grid rows `ys` x columns `xs` (coordinates in [-1, 1]),
        row-major (len(ys) * len(xs), out_dim): the forward's bilinear interpolation done as one
        lerp along y per row and one along x per column; equal to the forward up to float rounding."""
        out = torch.empty(len(ys), len(xs), self.levels, self.features, dtype=self.table.dtype, device=ys.device)
        unit_y, unit_x = ((ys + 1.0) * 0.5).clamp(0.0, 1.0), ((xs + 1.0) * 0.5).clamp(0.0, 1.0)
        for level, grid in enumerate(grids):
            res = self.resolution[level]
            y0, fy = _cell(unit_y, res)
            x0, fx = _cell(unit_x, res)
            rows = torch.lerp(grid[y0], grid[y0 + 1], fy[:, None, None].to(grid.dtype))  # (Y, res + 1, F)
            # vertices first: each column's gather copies one block of Y x F values, where a gather along the middle
            # dimension copied F at a time; the same values
            # (bench/README.md, "The hash grid's gather and grid encoding")
            columns = rows.transpose(0, 1).contiguous()  # (res + 1, Y, F)
            left, right = columns.index_select(0, x0), columns.index_select(0, x0 + 1)  # (X, Y, F)
            out[:, :, level] = torch.lerp(left, right, fx[:, None, None].to(grid.dtype)).transpose(0, 1)
        return out.reshape(len(ys) * len(xs), self.out_dim)


def _cell(unit: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The lower vertex and the fraction within its cell, computed as HashGrid2d.forward does."""
    position = unit * res
    low = torch.minimum(position.floor(), res - 1)
    return low.long(), position - low
