"""seed-deep's render: where its tanh of raw pixel coordinates is saturated, the rest of the network
sees one of a few inputs.

seed-deep's first layer is tanh(a x + b y + c) over 100 units, x and y raw pixel numbers. In bfloat16,
what its hidden layers read at render time, tanh(z) is exactly +-1 once |z| > 3.466; a fitted net
keeps each unit in that range over most of an image, so the active units of a row are known from
its weights alone: unit k is active on the columns where |a_k x + zy_k| < SATURATED, one interval
per row. `SaturatedTanhMlp.forward_grid` finds those intervals per band of rows (numpy, per segment
of a row, not per pixel), then

- a segment where no unit is active is a sign pattern: each distinct pattern is evaluated once;
- a pixel with one active unit k is (the other units' signs, k, bf16 tanh of unit k): pixels equal in
  all three have equal first-layer rows, evaluated once;
- pixels with several active units are evaluated once per run of equal neighbours.

Only active pixels go through the first layer. Exact: an evaluated row is a first-layer row of the
every-pixel render, and a row's result does not depend on the rows beside it (tests compare both
ways with `torch.equal`). Fitted to the 16-MP astronaut, 72% of the pixels have no active unit and 20%
one, and 11.6% of the pixels are evaluated; the render phase of whole `pixlearn fit` commands takes
less than half as long as the neighbour runs of the previous render
(bench/README.md, "Rendering, measuring and writing a fit").

    >>> SATURATED > 3.4657                # atanh(1 - 2**-9): tanh rounds to 1 in bf16 beyond it
    True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# |z| from which a unit counts as saturated: tanh(z) rounds to +-1 in bf16 beyond 3.4657; the margin
# covers the float32 rounding of z (MAX_MAGNITUDE) and of oneDNN's tanh.
SATURATED = 3.6
MAX_MAGNITUDE = 1e5  # |a x| + |b y| + |c| beyond this and float32's rounding of z could eat the margin
# Rows per call of a layer: oneDNN builds a kernel per row count, so every call has CHUNK rows or a
# multiple of BUCKET (at most CHUNK / BUCKET kernels per render, where a count per call cost more
# than the sharing saved).
CHUNK = 8_192
BUCKET = 256
# Pixels per band: a band's distinct rows are found across its rows; 64 rows of 4,096 evaluated
# 11.6% of the pixels where 16 rows evaluated 15.3% (16-MP astronaut).
BAND_PIXELS = 262_144


def evaluate(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`layer` on the rows of `x` in calls of CHUNK rows, the last padded to a multiple of BUCKET."""
    parts = []
    for start in range(0, len(x), CHUNK):
        part = x[start : start + CHUNK]
        rows = len(part)
        parts.append(layer(nn.functional.pad(part, (0, 0, 0, -rows % BUCKET)))[:rows])
    if not parts:  # no rows: one padded call gives the output's shape and type
        return layer(x.new_zeros(BUCKET, x.shape[1]))[:0]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


class SaturatedTanhMlp(nn.Module):
    """A rendering copy of tanh(Linear(2, n)) followed by `rest`: `first` computes the tanh layer
    (float32), `rest` reads it in bfloat16. Renderers call `forward_grid`; `forward` evaluates every
    pixel it is given, for coordinates that are not a grid."""

    renders_grids = True  # read by Renderer
    pixels_per_call = BAND_PIXELS

    def __init__(self, layer: nn.Linear, first: nn.Module, rest: nn.Module):
        super().__init__()
        self.first, self.rest = first, rest
        weight = layer.weight.detach().double().cpu().numpy()
        self.a, self.b = weight[:, 0], weight[:, 1]
        self.c = np.zeros(len(self.a)) if layer.bias is None else layer.bias.detach().double().cpu().numpy()
        self.finite = bool(np.isfinite(weight).all() and np.isfinite(self.c).all())

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return evaluate(self.rest, self._first_layer(coords))

    def grid_state(self) -> None:
        return None

    def _first_layer(self, coords: torch.Tensor) -> torch.Tensor:
        out = torch.empty(len(coords), len(self.a), dtype=torch.bfloat16, device=coords.device)
        for start in range(0, len(coords), CHUNK):  # converted while in cache: no float32 copy of every row
            out[start : start + CHUNK] = evaluate(self.first, coords[start : start + CHUNK])
        return out

    def forward_grid(self, ys: torch.Tensor, xs: torch.Tensor, state: None = None) -> torch.Tensor:
        """Colours of every pixel of the rows `ys` x columns `xs` (coordinates), row-major."""
        x, y = xs.double().cpu().numpy(), ys.double().cpu().numpy()
        magnitude = np.abs(self.a).max() * np.abs(x).max() + np.abs(self.b).max() * np.abs(y).max()
        if not self.finite or magnitude + np.abs(self.c).max() > MAX_MAGNITUDE or np.any(np.diff(x) <= 0):
            grid = torch.stack((xs.repeat(len(ys)), ys.repeat_interleave(len(xs))), dim=1)
            return self(grid)  # no margin to trust, or not a grid of increasing columns: every pixel
        segments = _Segments(self.a, self.b[None, :] * y[:, None] + self.c, x)
        return self._render(segments, xs, ys)

    def _render(self, seg: _Segments, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        width = len(xs)
        # every saturated segment: its sign pattern, each distinct one evaluated once
        saturated = seg.count == 0
        signs = seg.signs(saturated)
        patterns, pattern_of = _distinct(np.packbits(signs, axis=1))
        row_of_segment = np.full(len(seg.count), -1)
        row_of_segment[saturated] = pattern_of
        source = np.repeat(row_of_segment, seg.length)  # per pixel: the evaluated row it reads
        inputs = [torch.from_numpy(signs[patterns]).to(torch.bfloat16).mul_(2.0).sub_(1.0)]
        # active pixels through the first layer
        active = ~saturated
        lengths = seg.length[active]
        starts = seg.row[active] * width + seg.start[active]
        pixel = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        columns, rows = torch.from_numpy(pixel % width), torch.from_numpy(pixel // width)
        h = self._first_layer(torch.stack((xs[columns], ys[rows]), dim=1))
        # one active unit k: equal in (the other units' signs, k, bf16 tanh of unit k) means equal rows
        single = np.repeat(seg.count[active] == 1, lengths)
        one = seg.count == 1
        unit = seg.unit[one]
        context = seg.signs(one)
        context[np.arange(len(unit)), unit] = False
        _, group = _distinct(np.concatenate((np.packbits(context, axis=1), _bytes(unit)), axis=1))
        group_of_pixel = np.repeat(group, seg.length[one])
        unit_of_pixel = np.repeat(unit, seg.length[one])
        single_rows = np.flatnonzero(single)
        value = h.view(torch.int16).numpy()[single_rows, unit_of_pixel].astype(np.int64) & 0xFFFF
        firsts, key_of = _distinct(group_of_pixel * 65_536 + value)
        inputs.append(h[torch.from_numpy(single_rows[firsts])])
        offset = len(patterns)
        source[pixel[single]] = offset + key_of
        # several active units: once per run of equal neighbours
        several = h[torch.from_numpy(np.flatnonzero(~single))]
        new = _new_rows(several)
        inputs.append(several[new])
        offset += len(firsts)
        source[pixel[~single]] = offset + np.cumsum(new.numpy()) - 1
        outputs = evaluate(self.rest, torch.cat(inputs))
        return outputs.index_select(0, torch.from_numpy(source))


class _Segments:
    """Each row of a band cut where any unit's active interval begins or ends: per segment its row,
    first column, length, how many units are active and, where one is, which."""

    def __init__(self, a: np.ndarray, zy: np.ndarray, x: np.ndarray):
        rows, n = zy.shape
        width = len(x)
        self.a, self.zy, self.x = a, zy, x
        with np.errstate(divide="ignore", invalid="ignore"):
            ends = np.stack(((-SATURATED - zy) / a, (SATURATED - zy) / a))
        low, high = ends.min(0), ends.max(0)
        level = a == 0  # constant along the row: active over all of it, or nowhere
        if level.any():
            everywhere = level & (np.abs(zy) < SATURATED)
            low = np.where(level, np.where(everywhere, -np.inf, np.inf), low)
            high = np.where(level, np.where(everywhere, np.inf, -np.inf), high)
        begin = np.searchsorted(x, low.ravel(), "right").reshape(rows, n)  # first column inside
        end = np.maximum(np.searchsorted(x, high.ravel(), "left").reshape(rows, n), begin)  # first after
        cuts = np.concatenate((begin, end), axis=1)
        order = np.argsort(cuts, axis=1, kind="stable")
        # walking a row's cuts in order: +1 where an interval begins, -1 where it ends; the units'
        # numbers (1-based) likewise, so a segment with one active unit sums to that unit's number
        labels = np.broadcast_to(np.concatenate((np.arange(1, n + 1), -np.arange(1, n + 1))), (rows, 2 * n))
        labels = np.take_along_axis(labels, order, 1)
        zero = np.zeros((rows, 1), int)
        edges = np.concatenate((zero, np.take_along_axis(cuts, order, 1), np.full((rows, 1), width)), 1)
        count = np.concatenate((zero, np.cumsum(np.sign(labels), 1)), 1)
        unit = np.concatenate((zero, np.cumsum(labels, 1)), 1) - 1
        length = np.diff(edges, axis=1)
        keep = length.ravel() > 0
        self.row = np.repeat(np.arange(rows), 2 * n + 1)[keep]
        self.start, self.length = edges[:, :-1].ravel()[keep], length.ravel()[keep]
        self.count, self.unit = count.ravel()[keep], unit.ravel()[keep]

    def signs(self, which: np.ndarray) -> np.ndarray:
        """Each selected segment's signs of every unit's z at its first pixel, (segments, n) bool."""
        return self.a * self.x[self.start[which]][:, None] + self.zy[self.row[which]] > 0


def _distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each distinct key's first occurrence, each key's distinct number); keys 1-D or rows of bytes."""
    if keys.ndim == 2:
        keys = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _bytes(values: np.ndarray) -> np.ndarray:
    return values.astype("<u2").view(np.uint8).reshape(-1, 2)


def _new_rows(x: torch.Tensor) -> torch.Tensor:
    """Whether each row differs from the one before it (the first always does), compared as 64-bit words."""
    words = x.view(torch.int64) if x.shape[1] % 4 == 0 else x.view(torch.int16)
    new = torch.ones(len(x), dtype=torch.bool)
    # a sum, not any(): faster here, the same answer (bench/README.md, "Rendering, measuring and writing a fit")
    new[1:] = (words[1:] != words[:-1]).sum(1) != 0
    return new
