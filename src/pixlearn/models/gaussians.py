"""2D Gaussians as a field model, GaussianImage style (Zhang et al., ECCV 2024), in plain PyTorch.

Each Gaussian has a position, a Cholesky-factored covariance and a colour; a pixel's colour is a
background level plus the accumulated sum of every Gaussian's colour times its weight at the pixel
(no depth order, no alpha compositing: GaussianImage's "accumulated summation"). Coordinates are
in [-1, 1], so a fitted set renders at any resolution.

The weight is given compact support, max(exp(-q / 2) - exp(-9 / 2), 0) with q the squared Mahalanobis
distance: zero outside the 3-sigma ellipse and continuous at its edge. That makes tiling exact, not an
approximation: the domain is cut into cells, each cell lists the Gaussians whose 3-sigma box overlaps
it, and a pixel is evaluated against its cell's list only (`Gaussians2d.forward`); the dense
evaluation against every Gaussian (`dense_forward`) gives the same values. Pixels are processed in
chunks of at most PAIR_CHUNK (pixel, Gaussian) pairs, so memory stays bounded whatever the image size.

    >>> import torch
    >>> from pixlearn.models.registry import create_model
    >>> model = create_model("gaussians", out_features=1, count=100)
    >>> sum(p.numel() for p in model.parameters())     # 100 x (2 position + 3 Cholesky + 1 colour) + 1
    601
    >>> coords = torch.rand(50, 2) * 2 - 1
    >>> bool(torch.allclose(model(coords), model.dense_forward(coords), atol=1e-6))
    True
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pixlearn.models.registry import register_model

CUTOFF = 9.0  # squared Mahalanobis radius of the support: the 3-sigma ellipse, as GaussianImage's tiles
FLOOR = math.exp(-CUTOFF / 2)  # the weight is exp(-q/2) - FLOOR inside, so it reaches 0 at the edge
PAIR_CHUNK = 1 << 21  # (pixel, Gaussian) pairs evaluated at once: ~100 MB of float32 temporaries at most
PARAM_BUDGET = 65_536  # the default count keeps a model within this many parameters


def default_count(out_features: int, params: int = PARAM_BUDGET) -> int:
    """Gaussians that fit in `params` parameters: 2 + 3 + C each, plus C for the background.

    >>> default_count(1), default_count(3)
    (10922, 8191)
    """
    return max(1, (params - out_features) // (5 + out_features))


class Gaussians2d(nn.Module):
    """`count` 2D Gaussians in [-1, 1]^2 with colours of `out_features` channels, plus a background.

    Parameters are scaled so that one Adam learning rate suits them all: a position is stored in
    units of the mean spacing between Gaussians (a step of lr moves a Gaussian by lr of its own size),
    the Cholesky diagonal as a logit of its share of `max_sigma`, so each step changes a Gaussian's
    size by a fraction of itself, and colours directly.
    """

    def __init__(self, out_features: int, count: int, max_sigma: float = 0.15, init_sigma: float = 0.7):
        super().__init__()
        if count < 1 or not 0 < max_sigma <= 2:
            raise ValueError(f"gaussians needs count >= 1 and 0 < max_sigma <= 2, got {count}, {max_sigma}")
        self.count, self.max_sigma = count, max_sigma
        self.spacing = 2.0 / math.sqrt(count)  # mean distance between neighbours when spread evenly
        # Positions uniform over the domain (GaussianImage: uniform in the image); sizes a fraction of
        # the spacing, so that the Gaussians tile the image from the start without piling up.
        self.position = nn.Parameter((torch.rand(count, 2) * 2 - 1) / self.spacing)
        share = min(0.99, init_sigma * self.spacing / max_sigma)
        logit = math.log(share / (1 - share))
        self.cholesky = nn.Parameter(torch.tensor([logit, 0.0, logit]).repeat(count, 1))
        self.colour = nn.Parameter(torch.randn(count, out_features) * 0.01)
        self.background = nn.Parameter(torch.full((out_features,), 0.5))
        self.cells = max(1, min(512, round(math.sqrt(count))))  # cells per side of the tiling
        self._table: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ the Gaussians' geometry

    def factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Centres (N, 2) and the Cholesky factor L = [[a, 0], [b, c]] of each covariance (N each)."""
        centre = self.position * self.spacing
        a = self.max_sigma * torch.sigmoid(self.cholesky[:, 0])
        b = self.max_sigma * torch.tanh(self.cholesky[:, 1])
        c = self.max_sigma * torch.sigmoid(self.cholesky[:, 2])
        return centre, a, b, c

    def packed(self) -> torch.Tensor:
        """One row per Gaussian (centre x, y, a, b, c, colours): one gather per pair reads all of it."""
        centre, a, b, c = self.factors()
        return torch.cat([centre, a[:, None], b[:, None], c[:, None], self.colour], dim=1)

    def _cell_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(start of each cell's list, Gaussian numbers sorted by cell): each Gaussian appears in every
        cell its 3-sigma box overlaps. Cached while the parameters are unchanged (rendering)."""
        versions = (self.position._version, self.cholesky._version, id(self.position), id(self.cholesky))
        if self._table is not None and self._table[0] == versions and not torch.is_grad_enabled():
            return self._table[1], self._table[2]
        with torch.no_grad():
            centre, a, b, c = self.factors()
            radius_x = math.sqrt(CUTOFF) * a  # sqrt(Sigma_xx) = a; sqrt(Sigma_yy) = sqrt(b^2 + c^2)
            radius_y = math.sqrt(CUTOFF) * torch.sqrt(b * b + c * c)
            n = self.cells
            low_x, high_x = self._cell_of(centre[:, 0] - radius_x), self._cell_of(centre[:, 0] + radius_x)
            low_y, high_y = self._cell_of(centre[:, 1] - radius_y), self._cell_of(centre[:, 1] + radius_y)
            wide, tall = high_x - low_x + 1, high_y - low_y + 1
            spans = wide * tall
            owner = torch.repeat_interleave(torch.arange(self.count, device=spans.device), spans)
            local = torch.arange(len(owner), device=spans.device) - torch.repeat_interleave(
                torch.cumsum(spans, 0) - spans, spans
            )
            own = torch.stack([low_x, low_y, wide], 1).index_select(0, owner)  # one gather, not three
            cell = (own[:, 1] + local // own[:, 2]) * n + own[:, 0] + local % own[:, 2]
            cell, order = torch.sort(cell, stable=True)
            start = torch.zeros(n * n + 1, dtype=torch.long, device=spans.device)
            start[1:] = torch.cumsum(torch.bincount(cell, minlength=n * n), 0)
            table = (start, owner.index_select(0, order))
        if not torch.is_grad_enabled():
            self._table = (versions, *table)
        return table

    def _cell_of(self, value: torch.Tensor) -> torch.Tensor:
        return ((value + 1) * (self.cells / 2)).floor().clamp_(0, self.cells - 1).long()

    # ------------------------------------------------------------------ evaluation

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Colours (N, C) at coordinates (N, 2) in [-1, 1], each pixel against its cell's Gaussians."""
        start, gaussians = self._cell_table()
        cell = self._cell_of(coords[:, 1]) * self.cells + self._cell_of(coords[:, 0])
        first = start.index_select(0, cell)
        counts = start.index_select(0, cell + 1) - first
        rows, out = self.packed(), []
        for lo, hi in _chunks(counts, PAIR_CHUNK):
            n = counts[lo:hi]
            pixel = torch.repeat_interleave(torch.arange(hi - lo, device=n.device), n)
            offset = torch.arange(len(pixel), device=n.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
            ids = gaussians.index_select(0, first[lo:hi].index_select(0, pixel) + offset)
            out.append(_FusedSplat.apply(coords[lo:hi], pixel, rows.index_select(0, ids), hi - lo))
        total = torch.cat(out) if len(out) != 1 else out[0]
        return total + self.background

    def dense_forward(self, coords: torch.Tensor) -> torch.Tensor:
        """The same colours computed against every Gaussian (no tiling): the reference for `forward`."""
        rows = self.packed()
        step = max(1, PAIR_CHUNK // self.count)
        out = []
        for lo in range(0, len(coords), step):
            part = coords[lo : lo + step]
            pixel = torch.arange(len(part), device=coords.device).repeat_interleave(self.count)
            out.append(_splat(part, pixel, rows.repeat(len(part), 1), len(part)))
        return torch.cat(out) + self.background


def _splat(coords: torch.Tensor, pixel: torch.Tensor, rows: torch.Tensor, pixels: int) -> torch.Tensor:
    """Sum over pairs (pixel, Gaussian row) of colour x weight into `pixels` outputs."""
    at = coords.index_select(0, pixel)
    dx = at[:, 0] - rows[:, 0]
    dy = at[:, 1] - rows[:, 1]
    # q = d^T (L L^T)^-1 d = |L^-1 d|^2, by forward substitution (no 2x2 inverse, no determinant)
    z1 = dx / rows[:, 2]
    z2 = (dy - rows[:, 3] * z1) / rows[:, 4]
    weight = (torch.exp(-0.5 * (z1 * z1 + z2 * z2)) - FLOOR).clamp_min(0.0)
    values = rows[:, 5:] * weight[:, None]
    out = torch.zeros(pixels, rows.shape[1] - 5, dtype=values.dtype, device=values.device)
    return out.index_add(0, pixel, values)


class _FusedSplat(torch.autograd.Function):
    """`_splat` with its backward written out: autograd of the plain version records ~25 temporaries
    per pair, this keeps three (z1, z2, exp(-q/2)). `dense_forward` uses the plain version, so the
    tests' tiled-against-dense gradients check this backward."""

    @staticmethod
    def forward(ctx, coords: torch.Tensor, pixel: torch.Tensor, rows: torch.Tensor, pixels: int) -> torch.Tensor:
        at = coords.index_select(0, pixel)
        z1 = (at[:, 0] - rows[:, 0]) / rows[:, 2]
        z2 = (at[:, 1] - rows[:, 1] - rows[:, 3] * z1) / rows[:, 4]
        e = torch.exp(-0.5 * (z1 * z1 + z2 * z2))
        weight = (e - FLOOR).clamp_min_(0.0)
        out = torch.zeros(pixels, rows.shape[1] - 5, dtype=rows.dtype, device=rows.device)
        out.index_add_(0, pixel, rows[:, 5:] * weight[:, None])
        ctx.save_for_backward(pixel, rows, z1, z2, e)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pixel, rows, z1, z2, e = ctx.saved_tensors
        inside = e > FLOOR
        g = grad.index_select(0, pixel)
        d_rows = torch.empty_like(rows)
        d_rows[:, 5:] = g * (e - FLOOR).clamp_min_(0.0)[:, None]
        # weight = e - FLOOR inside the ellipse; e = exp(-q/2), q = z1^2 + z2^2
        dq = (g * rows[:, 5:]).sum(1).mul_(inside).mul_(e).mul_(-0.5)
        dz2 = 2 * z2 * dq
        dz1 = 2 * z1 * dq - dz2 * rows[:, 3] / rows[:, 4]
        d_dy = dz2 / rows[:, 4]  # z2 = (dy - b z1) / c
        d_dx = dz1 / rows[:, 2]  # z1 = dx / a
        d_rows[:, 0], d_rows[:, 1] = -d_dx, -d_dy
        d_rows[:, 2] = -d_dx * z1
        d_rows[:, 3] = -d_dy * z1
        d_rows[:, 4] = -d_dy * z2
        return None, None, d_rows, None


def _chunks(counts: torch.Tensor, limit: int) -> list[tuple[int, int]]:
    """Consecutive ranges of pixels whose pair counts sum to at most `limit` (a pixel alone may exceed it)."""
    if len(counts) == 0:
        return [(0, 0)]
    ends = torch.cumsum(counts, 0)
    if int(ends[-1]) <= limit:
        return [(0, len(counts))]
    bounds, lo = [], 0
    while lo < len(counts):
        base = int(ends[lo - 1]) if lo else 0
        hi = int(torch.searchsorted(ends, base + limit, right=True))
        hi = max(hi, lo + 1)
        bounds.append((lo, hi))
        lo = hi
    return bounds


@register_model(
    "gaussians",
    "field",
    "2D Gaussians (position, Cholesky covariance, colour) summed, GaussianImage style; tiled on the CPU.",
    size_arg="count",
)
def gaussians(
    in_features: int = 2,
    out_features: int = 3,
    count: int | None = None,
    max_sigma: float = 0.15,
    init_sigma: float = 0.7,
) -> nn.Module:
    # count: by default as many Gaussians as fit in 65,536 parameters (a 256x256 image's pixels):
    # 10,922 grey, 8,191 RGB
    if in_features != 2:
        raise ValueError("gaussians are 2D (in_features=2)")
    return Gaussians2d(out_features, count if count is not None else default_count(out_features), max_sigma, init_sigma)
