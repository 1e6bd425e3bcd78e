"""Likely label errors with many labels per image (`check --multi-label`): each (image, label) pair whose
given yes-or-no is probably wrong, `missing` (the label is absent but likely present) or `wrong` (given but
likely absent).

As for one label per image (`label_issues`), every image is scored by a head that never saw it: here
logistic regression with a sigmoid per label on the standardised features, trained on the other folds.
The folds come from iterative stratification (`label_sets.iterative_split`, the rarest label placed
first), split off one at a time, so every label with an image per fold lies in every fold in about its
share: a random k-fold can leave a rare label's images all in one fold, scored by a head that never saw
the label. Each label's out-of-fold logits are divided by their own temperature
(`calibration.fit_temperature`, the sigmoid head's one per output), the labels being separate yes-or-no
questions.

cleanlab's multi-label confident learning then finds the pairs. Its
`multilabel_classification.filter.find_label_issues` returns images with *any* doubtful label, ranked by
a score pooled over the labels, and cannot say which label is doubtful; `find_multilabel_issues_per_class`
runs binary confident learning on each label's one-vs-rest column and returns, per label, the images
whose yes-or-no it doubts: exactly the pairs a person corrects, so it is the one used, with the
single-label check's rule (`FILTER_BY`: per label, as many pairs as confident learning estimates are
wrong, the least self-confident). The pairs of every label are then ranked together by the probability
of their given yes-or-no, the least believable first; by default only those under `MAX_GIVEN_PAIR` are kept.

    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random((120, 2)) < 0.5).astype(np.float32)
    >>> features = y * 6 + rng.normal(size=(120, 2)).astype(np.float32)
    >>> y[7, 0] = 1 - y[7, 0]                          # image 7's first label flipped
    >>> [(i.index, i.label, i.kind) for i in find_issues(features, y, folds=4, seed=0)]
    [(7, 0, 'wrong')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pixlearn.classify.audit.label_issues import FILTER_BY, HEAD_DECAY, standardise
from pixlearn.classify.data.label_sets import iterative_split
from pixlearn.classify.evaluation.calibration import fit_temperature
from pixlearn.classify.inference.heads import multi_label_loss, probabilities
from pixlearn.core.progress import SILENT, Progress

# The head is logistic regression per label with the single-label heads' L2 (HEAD_DECAY), fitted to its
# optimum by L-BFGS: a convex problem, so the result does not hang on a learning rate or a number of steps.
# Trained as the single-label heads are (Adam, a few hundred steps at most on a few hundred images), a head on
# 190 images of 1,024 pixels saw a dark bar, which a logistic regression tells apart on every image, on 92-96%
# of the out-of-fold images, and a head on two features hardly left its random start; fitted to the optimum,
# every bar was seen.
LBFGS_STEPS = 200
LBFGS_HISTORY = 10  # scipy's L-BFGS-B default; torch's 100 costs more per step than the step itself here
# Pairs whose given yes-or-no the calibrated heads find under 20% likely (check's label_below default with many
# labels per image). On six trees of 251 images with 24 pairs flipped, 12 of each kind (test_label_set_issues.py's
# `planted_tree`, seeds 3-8, pixel features), every pair found had its given answer under 10% likely: precision
# 1.0 and recall 0.81 (0.67-0.96 per tree) from 0.1 to no limit at all, where the single-label limit of 0.04 cut
# the recall to 0.64 (a label flipped on 3-5% of its images leaves the calibrated probability of a flip about
# as high). Without a limit, on 40 images whose tags the pixels hardly tell apart (docs/guides/check.md's), the
# heads stayed between 0.29 and 0.71 and confident learning listed 59 of the 120 pairs; at 0.2, none.
MAX_GIVEN_PAIR = 0.2
COLUMNS = ["path", "label", "kind", "probability", "rank", "split"]  # label_issues.csv with --multi-label
KINDS = ("missing", "wrong")


@dataclass(frozen=True)
class LabelSetIssue:
    index: int  # into the images the features came from
    label: int  # class index
    kind: str  # missing: not given but likely present; wrong: given but likely absent
    probability: float  # the calibrated out-of-fold probability that the image has the label
    rank: int  # 1 = the most likely error


def label_set_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each image's fold (0 .. folds-1) of multi-hot labels `y` (N, K): iterative stratification, one fold
    split off the images left at a time.

    >>> y = np.array([[1, 0]] * 6 + [[0, 1]] * 6)
    >>> which = label_set_folds(y, 3, 0)
    >>> [sorted(set(y[which == k].argmax(1).tolist())) for k in range(3)]
    [[0, 1], [0, 1], [0, 1]]
    """
    left = np.arange(len(y))
    out = np.full(len(y), folds - 1, dtype=np.int64)
    for k in range(folds - 1):
        sets = [tuple(str(c) for c in np.flatnonzero(row)) for row in y[left]]
        kept, held = iterative_split(sets, 1 / (folds - k), seed + k)
        out[left[held]] = k
        left = left[kept]
    return out


def sigmoid_head_logits(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Logits on `test_x` of a linear head with a sigmoid per label fitted on (train_x, multi-hot train_y)."""
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    weight = torch.zeros(x.shape[1], y.shape[1], requires_grad=True)
    prevalence = y.mean(0).clamp(0.5 / len(y), 1 - 0.5 / len(y))
    bias = torch.log(prevalence / (1 - prevalence)).requires_grad_()
    decay = HEAD_DECAY / y.shape[1]  # the loss is a mean over the labels too: HEAD_DECAY per label
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=LBFGS_STEPS, history_size=LBFGS_HISTORY, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = multi_label_loss(x @ weight + bias, y) + decay / 2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return (torch.from_numpy(test_x) @ weight + bias).numpy()


def out_of_fold(
    features: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, progress: Progress = SILENT
) -> np.ndarray:
    """(N, K) probabilities, each image's from the head trained on the folds it is not in, each label's
    calibrated by its own temperature."""
    z = standardise(features)
    which = label_set_folds(y, folds, seed)
    logits = np.zeros(y.shape, dtype=np.float32)
    for k in range(folds):
        held = which == k
        if held.any():
            logits[held] = sigmoid_head_logits(z[~held], y[~held], z[held])
        progress.advance(1)
    scores = torch.from_numpy(logits)
    temperature = fit_temperature(scores, torch.from_numpy(y), "sigmoid")
    return probabilities(scores, "sigmoid", temperature).numpy()


def rank_pairs(
    probs: np.ndarray, y: np.ndarray, min_suggested: float = 0.0, max_given: float = 1.0
) -> list[LabelSetIssue]:
    """cleanlab's doubtful (image, label) pairs among (probs, y), most likely first; only those whose given
    yes-or-no has less than `max_given` probability and its opposite at least `min_suggested`."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class

    given = y > 0.5
    counts = given.sum(0)
    # binary confident learning needs images with and without the label
    columns = np.flatnonzero((counts >= 2) & (len(y) - counts >= 2))
    if not len(columns):
        return []
    labels = [np.flatnonzero(row).tolist() for row in given[:, columns]]
    mask = find_multilabel_issues_per_class(labels, probs[:, columns], filter_by=FILTER_BY, n_jobs=1)
    found = []
    for n, j in zip(*np.nonzero(mask), strict=True):
        k = int(columns[j])
        p = float(probs[n, k])
        believed = p if given[n, k] else 1 - p  # the probability of the given yes-or-no
        if believed < max_given and 1 - believed >= min_suggested:
            found.append((believed, int(n), k, "wrong" if given[n, k] else "missing", p))
    found.sort()
    return [LabelSetIssue(n, k, kind, p, r + 1) for r, (_, n, k, kind, p) in enumerate(found)]


def find_issues(
    features: np.ndarray,
    y: np.ndarray,
    folds: int = 5,
    seed: int = 0,
    progress: Progress = SILENT,
    min_suggested: float = 0.0,
    max_given: float = MAX_GIVEN_PAIR,
) -> list[LabelSetIssue]:
    """The likely wrong (image, label) pairs of multi-hot labels `y` (N, K), ranked: those whose given
    yes-or-no has less than `max_given` calibrated out-of-fold probability, and its opposite at least
    `min_suggested`."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] == 0 or len(y) < 2 * folds:
        return []
    probs = out_of_fold(np.asarray(features, dtype=np.float32), y, folds, seed, progress)
    return rank_pairs(probs, y, min_suggested, max_given)


def issue_rows(
    found: Sequence[LabelSetIssue], paths: Sequence[str], classes: Sequence[str], splits: Sequence[str]
) -> list[dict[str, Any]]:
    """label_issues.csv's rows (`COLUMNS`) of the issues found among the images `paths`."""
    return [
        {
            "path": paths[x.index],
            "label": classes[x.label],
            "kind": x.kind,
            "probability": round(x.probability, 6),
            "rank": x.rank,
            "split": splits[x.index],
        }
        for x in found
    ]


def kind_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """check.json's label issues per kind."""
    return {kind: sum(r["kind"] == kind for r in rows) for kind in KINDS}
