"""Many labels per image (`--multi-label`): a label cell read as a set, the sets as a multi-hot matrix,
and a validation split stratified by label sets.

A label CSV for many labels has the columns `path,labels`; the labels of one image are joined by a
separator (`|` by default, `--label-sep`), and an empty cell is an image with none of the classes.

The split is iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the Stratification of
Multi-label Data", ECML PKDD 2011): the rarest label still unplaced goes first, each of its images to
the part that still wants most of that label (ties: the part that wants most images, then a seeded
coin). A random split of a label seen on three images leaves it out of validation about three times in
four at a 10% share; here every label with two or more images is wanted at least once in each part,
so it is in both. The one maintained package of it installs a top-level `tests` package beside its own,
which would shadow the test package of any project that has one; these forty lines do not.

    >>> split_labels("cat|dog||", "|")
    ('cat', 'dog')
    >>> multi_hot([("cat",), (), ("cat", "dog")], ["cat", "dog"]).tolist()
    [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    >>> sets = [("rare",), ("rare",)] + [("common",)] * 18
    >>> keep, held = iterative_split(sets, 0.1, seed=0)
    >>> sorted({label for i in held for label in sets[i]})   # the rare label is held out once too
    ['common', 'rare']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_SEPARATOR = "|"


def split_labels(cell: str, separator: str) -> tuple[str, ...]:
    """The labels of one CSV cell: split on `separator`, spaces around each dropped, blanks and repeats
    dropped, in their first order."""
    labels = (part.strip() for part in cell.split(separator))
    return tuple(dict.fromkeys(label for label in labels if label))


def multi_hot(label_sets: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """(N, K) float32: 1 where image n has class k. Labels not in `classes` are ignored (a test image
    may carry a label training never saw; it cannot be predicted, so it is not scored)."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(label_sets), len(classes)), dtype=np.float32)
    for n, labels in enumerate(label_sets):
        for label in labels:
            if label in index:
                out[n, index[label]] = 1.0
    return out


def iterative_split(label_sets: Sequence[Sequence[str]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (kept, held) with about `fraction` of the images held, each label's images shared out in
    the same proportion, and every label with two or more images in both parts."""
    classes = sorted({label for labels in label_sets for label in labels})
    y = multi_hot(label_sets, classes).astype(bool)
    rng = np.random.default_rng(seed)
    counts = y.sum(0).astype(np.float64)
    held_wanted = np.where(counts >= 2, np.maximum(counts * fraction, 1.0), counts * fraction)
    wanted = np.stack([counts - held_wanted, held_wanted])  # (part, label): kept, held
    total = np.array([len(label_sets) * (1 - fraction), len(label_sets) * fraction])
    part = np.full(len(label_sets), -1)
    while True:
        open_counts = y[part < 0].sum(0)
        if not open_counts.any():
            break
        rarest = np.flatnonzero(open_counts == open_counts[open_counts > 0].min())
        label = int(rng.choice(rarest))
        for n in rng.permutation(np.flatnonzero((part < 0) & y[:, label])):
            part[n] = _neediest(wanted[:, label], total, rng)
            wanted[part[n]] -= y[n]
            total[part[n]] -= 1
    for n in rng.permutation(np.flatnonzero(part < 0)):  # images with no label: by the parts' sizes alone
        part[n] = _neediest(total, total, rng)
        total[part[n]] -= 1
    return np.flatnonzero(part == 0).tolist(), np.flatnonzero(part == 1).tolist()


def _neediest(wanted: np.ndarray, total: np.ndarray, rng: np.random.Generator) -> int:
    """The part that wants most; ties go to the one that wants most images, then to a seeded coin."""
    best = np.flatnonzero(wanted == wanted.max())
    if len(best) > 1:
        best = best[total[best] == total[best].max()]
    return int(rng.choice(best))
