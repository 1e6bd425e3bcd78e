"""Entropy coding of the quantised latent grids, with constriction's ANS coder.

Each symbol is coded with a zero-mean Laplace quantised to integers, whose scale depends on its
context: the magnitudes of the 3x3 parent cells one level coarser (already decoded), summed and
bucketed by bit length. Detail at an edge has large parents, so flat regions cost almost nothing
(the zero-tree observation of Shapiro's EZW, 1993). Contexts are computed from integers only, and the
scales come from a fixed table indexed by bytes in the file, so the encoder and decoder build the same
integer probability tables (constriction quantises each Laplace to 24-bit integer frequencies).

    >>> q = [np.array([[[0, 1], [-2, 0]]]), np.array([[[3]]])]
    >>> codes = fit_codes(q, [0.5, 0.25], buckets=4)
    >>> words = encode(q, codes, buckets=4)
    >>> [np.array_equal(a, b) for a, b in zip(q, decode(words, codes, [(1, 2, 2), (1, 1, 1)], 4, "x.pxl"))]
    [True, True]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import constriction
import numpy as np
import torch

from pixlearn.core.errors import ConfigError
from pixlearn.field.codec.container import MAX_SYMBOL, SCALE_TABLE, ChannelCode, CodecFileError

_SEARCH = 64  # most steps of the walk from the moment estimate to the best scale


def buckets_of(parent: np.ndarray | None, shape: tuple[int, int], buckets: int) -> np.ndarray:
    """Context bucket of every cell of a (rows, cols) grid from its parent grid's integers."""
    if parent is None:
        return np.zeros(shape[0] * shape[1], dtype=np.int64)
    a = np.pad(np.abs(parent.astype(np.int64)), 1)
    rows, cols = parent.shape
    box = sum(a[i : i + rows, j : j + cols] for i in range(3) for j in range(3))
    child = box[np.arange(shape[0]) // 2][:, np.arange(shape[1]) // 2]
    return np.minimum(np.frexp(child.astype(np.float64))[1], buckets - 1).reshape(-1).astype(np.int64)


def _contexts(q: list[np.ndarray], level: int, channel: int, buckets: int) -> np.ndarray:
    parent = q[level + 1][channel] if level + 1 < len(q) else None
    return buckets_of(parent, q[level].shape[1:], buckets)


def laplace_bits(symbols: np.ndarray, scale: float) -> float:
    """Bits of coding `symbols` with a zero-mean Laplace of `scale` quantised to integers (the ideal
    code length; constriction's integer tables come within a fraction of a percent)."""
    a = np.abs(symbols.astype(np.float64))
    tail = 0.5 * (np.exp(-np.maximum(a - 0.5, 0) / scale) - np.exp(-(a + 0.5) / scale))
    p = np.where(a > 0, tail, -np.expm1(-0.5 / scale))
    return float(-np.log2(np.maximum(p, 1e-12)).sum())


def _best_scale(symbols: np.ndarray, search: int) -> int:
    if symbols.size == 0:
        return 0
    best = int(np.clip(np.round((np.log2(max(np.abs(symbols).mean(), 1e-3)) + 6) * 16), 0, 255))
    cost = {best: laplace_bits(symbols, SCALE_TABLE[best])}
    for direction in (-1, 1):  # the code length is unimodal in the scale: walk downhill, at most `search`
        for _ in range(search):
            i = best + direction
            if not 0 <= i < 256:
                break
            cost[i] = laplace_bits(symbols, SCALE_TABLE[i])
            if cost[i] >= cost[best]:
                break
            best = i
    return best


def fit_codes(q: list[np.ndarray], steps: list[float], buckets: int, search: int = _SEARCH) -> list[ChannelCode]:
    """Each level's and channel's code (symbol range, step, best scale per bucket) for grids `q`
    ((C_l, rows, cols) integers, finest level first; `steps` one per grid channel, in the same order).
    `search`: scale indices tried either side of the moment estimate (0: the estimate alone)."""
    codes, steps = [], iter(steps)
    for level, grid in enumerate(q):
        for channel in range(grid.shape[0]):
            symbols, step = grid[channel].reshape(-1), next(steps)
            maxabs = int(np.abs(symbols).max()) if symbols.size else 0
            if maxabs > MAX_SYMBOL:
                raise ValueError(f"symbol {maxabs} over the format's limit {MAX_SYMBOL}")
            if maxabs == 0:
                codes.append(ChannelCode(0))
                continue
            context = _contexts(q, level, channel, buckets)
            scales = tuple(_best_scale(symbols[context == b], search) for b in range(buckets))
            codes.append(ChannelCode(maxabs, step, scales))
    return codes


def _plan(q_shapes: list[tuple[int, int, int]], codes: list[ChannelCode]) -> list[tuple[int, int, ChannelCode]]:
    """(level, channel, code) in decoding order: coarsest level first, so every context is known."""
    flat, i = [], 0
    for level, shape in enumerate(q_shapes):
        for channel in range(shape[0]):
            flat.append((level, channel, codes[i]))
            i += 1
    return sorted(flat, key=lambda t: (-t[0], t[1]))


def encode(q: list[np.ndarray], codes: list[ChannelCode], buckets: int) -> np.ndarray:
    """The payload: every coded grid, as constriction's ANS words."""
    coder = constriction.stream.stack.AnsCoder()
    plan = [p for p in _plan([g.shape for g in q], codes) if p[2].maxabs]
    for level, channel, code in reversed(plan):  # a stack: encode last what is decoded first
        scales = np.asarray(code.scales)[_contexts(q, level, channel, buckets)]
        family = constriction.stream.model.QuantizedLaplace(-code.maxabs, code.maxabs)
        symbols = q[level][channel].reshape(-1).astype(np.int32)
        coder.encode_reverse(symbols, family, np.zeros(symbols.size), SCALE_TABLE[scales])
    return coder.get_compressed()


def decode(
    words: np.ndarray, codes: list[ChannelCode], shapes: list[tuple[int, int, int]], buckets: int, source: str
) -> list[np.ndarray]:
    """The integer grids back from the payload; a payload that does not fit the header is refused."""
    q = [np.zeros(shape, dtype=np.int64) for shape in shapes]
    try:
        coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(words, dtype=np.uint32))
        for level, channel, code in _plan(shapes, codes):
            if not code.maxabs:
                continue
            scales = np.asarray(code.scales)[_contexts(q, level, channel, buckets)]
            family = constriction.stream.model.QuantizedLaplace(-code.maxabs, code.maxabs)
            values = coder.decode(family, np.zeros(scales.size), SCALE_TABLE[scales])
            q[level][channel] = np.asarray(values, dtype=np.int64).reshape(shapes[level][1:])
        left = not coder.is_empty()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # constriction reports a bad stream as a Rust panic, not an Exception
        raise CodecFileError(source, f"the coded data cannot be decoded ({exc})") from None
    if left:
        raise CodecFileError(source, "the coded data is longer than its header describes")
    return q


def context_of(u: torch.Tensor, parent: torch.Tensor | None, buckets: int) -> torch.Tensor:
    """`buckets_of` for a channel (rows, cols) of values in steps and its parent channel, as a tensor."""
    if parent is None:
        return torch.zeros(u.numel(), dtype=torch.long)
    return torch.from_numpy(buckets_of(parent.detach().round().numpy(), tuple(u.shape), buckets))


def rate_bits(u: torch.Tensor, context: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Differentiable bits of one channel (rows, cols) of values in steps (noisy or rounded), coded with
    the scale of each context bucket (`log_scale` in log2 steps); the training proxy of `encode`'s length."""
    scale = torch.exp2(log_scale)[context]
    a = u.reshape(-1).abs()
    upper = torch.exp(-(a - 0.5).clamp(min=0) / scale) * torch.where(a > 0.5, 0.5, 1.0)
    inner = torch.where(a > 0.5, upper, 1 - 0.5 * torch.exp((a - 0.5).clamp(max=0) / scale))
    p = inner - 0.5 * torch.exp(-(a + 0.5) / scale)
    return -torch.log2(p.clamp(min=1e-9)).sum()


def finest_step(size_of: Callable[[float], int], budget: int, low: float, high: float, rounds: int = 13) -> float:
    """The smallest quantisation step whose file (`size_of(step)` bytes) fits `budget`: bisection on
    log2 step between `low` and `high`; refused when even `high` does not fit.

    >>> step = finest_step(lambda step: int(1000 / step), 100, 2**-4, 2**8)  # fits from 1000 / 101
    >>> 1000 / 101 < step < 1000 / 100
    True
    """
    smallest = size_of(high)
    if smallest > budget:
        raise ConfigError(f"a budget of {budget:,} bytes is below the smallest file for this image ({smallest:,})")
    for _ in range(rounds):
        mid = math.sqrt(low * high)
        low, high = (low, mid) if size_of(mid) <= budget else (mid, high)
    return high
