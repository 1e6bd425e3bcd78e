"""Which label a probability becomes: a run's fitted two-class threshold, and abstaining below a
confidence (both fitted or chosen in `evaluation.thresholds`, applied here wherever a label is
predicted).

    >>> probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.2, 0.8]])
    >>> decide(probs, ("city", "nature"), {"class": "nature", "value": 0.3, "rule": "recall nature=0.95"}).tolist()
    [1, 1, 1]
    >>> decide(probs, ("city", "nature"), None).tolist()
    [0, 0, 1]
    >>> abstained(probs, 0.6).tolist()
    [False, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixlearn.core.errors import ConfigError


def decide(probs: np.ndarray, classes: tuple[str, ...] | list[str], threshold: dict | None) -> np.ndarray:
    """Predicted class indices: the threshold's class where its probability reaches the threshold
    (else the other class), or the most probable class without a threshold."""
    if len(probs) == 0:
        return np.zeros(0, dtype=int)
    if threshold is None:
        return probs.argmax(1)
    k = list(classes).index(threshold["class"])
    return np.where(probs[:, k] >= threshold["value"], k, 1 - k)


def check_abstain(below: float | None) -> None:
    """Refuse an `--abstain-below` that is not a probability."""
    if below is not None and not (isinstance(below, int | float) and 0 <= below <= 1):
        raise ConfigError(f"abstain_below (--abstain-below): must be a probability in [0, 1], got {below!r}")


def abstained(probs: np.ndarray, below: float | None) -> np.ndarray:
    """True where the top probability is under `below` (all False without it)."""
    if below is None or len(probs) == 0:
        return np.zeros(len(probs), dtype=bool)
    return probs.max(1) < below


LABEL_SET_THRESHOLD = 0.5  # a label's threshold where none was fitted


def present(probs: np.ndarray, thresholds: Sequence[float] | None) -> np.ndarray:
    """Many labels per image: (N, K) bool, each label present where its probability reaches its threshold
    (the spec's `label_thresholds`; 1/2 each without)."""
    probs = np.asarray(probs)
    limits = np.full(probs.shape[1], LABEL_SET_THRESHOLD) if thresholds is None else np.asarray(thresholds)
    return probs >= limits
