"""The one learning-rate schedule of both jobs: linear warm-up, then constant or a half cosine.

A pure function of the step, so a resumed run needs no scheduler state.

    >>> from pixlearn.core.schedules import warmup_cosine
    >>> [round(warmup_cosine(s, 10, 1.0, warmup=2), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    >>> round(warmup_cosine(1.0, 1, 0.1, floor=0.01), 6)     # a fraction of a time budget, down to 1%
    0.001
"""

from __future__ import annotations

import math


def warmup_cosine(
    step: float, total: float, peak: float, *, warmup: int = 0, floor: float = 0.0, decay: bool = True
) -> float:
    """The learning rate at `step` of `total`.

    The first `warmup` steps rise linearly to `peak` (peak * (step + 1) / warmup); after them the rate
    stays at `peak` (decay=False) or follows a half cosine from `peak` down to `floor * peak` at `total`,
    and stays there. `step` may be a fraction: step = fraction, total = 1 gives the schedule over a
    fraction of a time budget.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    if not decay:
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))
