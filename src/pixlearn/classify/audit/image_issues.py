"""Odd images: tiny, extreme aspect ratio, nearly constant, very dark or bright, blurry, outliers; class balance.

Measured on the decoded images (the size and colour `check` decodes to) and the original sizes:

| issue | value | flagged when |
| --- | --- | --- |
| `tiny` | shorter side of the original, pixels | under `min_side` and under half the folder's median |
| `aspect` | longer side / shorter side | over `max_aspect` |
| `constant` | standard deviation of the pixels, 0 to 1 | under 0.02 (about 5 grey levels) |
| `dark` / `bright` | mean pixel, 0 to 1 | under 0.05 / over 0.95 |
| `blurry` | variance of the Laplacian (pixels 0 to 1) | under 1/20 of the folder's median, image not constant |
| `outlier` | 1 - mean cosine to the 5 nearest embeddings | beyond the far-out fence, Q3 + 3 x IQR |

Thresholds relative to the folder keep a folder of 28x28 thumbnails, or of soft photos, from being
flagged whole; the absolute ones catch a blank or black frame whatever its neighbours.

    >>> import torch
    >>> images = torch.full((4, 1, 16, 16), 128, dtype=torch.uint8)
    >>> images[:3, :, ::2] = 255                      # stripes: three sharp images, one flat grey
    >>> [i.issue for i in find_image_issues(images, [(16, 16)] * 3 + [(400, 20)])]
    ['aspect', 'constant']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

CONSTANT_STD = 0.02
DARK, BRIGHT = 0.05, 0.95
BLUR_SHARE = 1 / 20
OUTLIER_NEIGHBOURS = 5
FENCE = 3.0  # Tukey's far-out fence: Q3 + 3 IQR
ISSUES = ("outlier", "tiny", "aspect", "constant", "dark", "bright", "blurry")


@dataclass(frozen=True)
class ImageIssue:
    index: int
    issue: str
    value: float


def pixel_stats(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: mean and standard deviation of the pixels, and the variance of the grey Laplacian (0 to 1)."""
    means, stds, sharp = [], [], []
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    for start in range(0, len(images), 512):
        x = images[start : start + 512].float() / 255.0
        means.append(x.mean((1, 2, 3)))
        stds.append(x.std((1, 2, 3)) if x[0].numel() > 1 else torch.zeros(len(x)))
        grey = x.mean(1, keepdim=True)
        lap = torch.nn.functional.conv2d(grey, kernel) if min(grey.shape[2:]) >= 3 else torch.zeros_like(grey)
        sharp.append(lap.var((1, 2, 3)) if lap[0].numel() > 1 else torch.zeros(len(x)))
    cat = lambda parts: torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros(0)  # noqa: E731
    return {"mean": cat(means), "std": cat(stds), "sharpness": cat(sharp)}


def outlier_scores(neighbour_cosines: torch.Tensor) -> np.ndarray:
    """1 - the mean cosine similarity to an image's nearest neighbours (0: in a crowd; up to 2)."""
    k = min(OUTLIER_NEIGHBOURS, neighbour_cosines.shape[1]) if neighbour_cosines.ndim == 2 else 0
    if k == 0:
        return np.zeros(len(neighbour_cosines))
    return (1.0 - neighbour_cosines[:, :k].mean(1)).numpy().astype(np.float64)


def far_out(values: np.ndarray) -> float:
    """Tukey's far-out fence, Q3 + 3 IQR, of `values` (inf for fewer than 8)."""
    if len(values) < 8:
        return float("inf")
    q1, q3 = np.percentile(values, [25, 75])
    return float(q3 + FENCE * (q3 - q1))


def find_image_issues(
    images: torch.Tensor,
    original_sizes: Sequence[tuple[int, int]],
    outliers: np.ndarray | None = None,
    min_side: int = 32,
    max_aspect: float = 3.0,
) -> list[ImageIssue]:
    """Every odd image, by issue (the order of ISSUES), the most extreme first within an issue."""
    stats = pixel_stats(images)
    sides = np.array([min(s) for s in original_sizes], dtype=np.float64).reshape(-1)
    aspect = np.array([max(s) / max(min(s), 1) for s in original_sizes], dtype=np.float64).reshape(-1)
    constant = stats["std"] < CONSTANT_STD
    sharp = stats["sharpness"][~constant]
    blur_limit = float(np.median(sharp)) * BLUR_SHARE if len(sharp) else 0.0
    tiny_limit = min(min_side, float(np.median(sides)) / 2) if len(sides) else 0
    rules: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {  # issue -> (flagged, value, ascending)
        "tiny": (sides < tiny_limit, sides, True),
        "aspect": (aspect > max_aspect, aspect, False),
        "constant": (constant, stats["std"], True),
        "dark": (stats["mean"] < DARK, stats["mean"], True),
        "bright": (stats["mean"] > BRIGHT, stats["mean"], False),
        "blurry": (~constant & (stats["sharpness"] < blur_limit), stats["sharpness"], True),
    }
    if outliers is not None and len(outliers) == len(images):
        rules["outlier"] = (outliers > far_out(outliers), outliers, False)
    found = []
    for issue in ISSUES:
        if issue not in rules:
            continue
        flagged, value, ascending = rules[issue]
        order = np.flatnonzero(flagged)
        order = order[np.argsort(value[order] if ascending else -value[order], kind="stable")]
        found += [ImageIssue(int(i), issue, round(float(value[i]), 6)) for i in order]
    return found


def class_balance(labels_by_split: Mapping[str, Sequence[str]], classes: Sequence[str]) -> dict[str, Any]:
    """Images per class and split, and the ratio of the largest class to the smallest (all splits together).

    >>> class_balance({"train": ["a", "a", "a", "b"]}, ["a", "b"])["ratio"]
    3.0
    """
    per_split = {s: {c: Counter(labels)[c] for c in classes} for s, labels in labels_by_split.items()}
    total = {c: sum(per_split[s][c] for s in per_split) for c in classes}
    counts = [n for n in total.values() if n > 0]
    ratio = max(counts) / min(counts) if counts else 1.0
    median = float(np.median(list(total.values()))) if total else 0.0
    rare = [c for c, n in total.items() if n < median / 5]
    return {"per_split": per_split, "total": total, "ratio": round(ratio, 3), "rare": rare}
