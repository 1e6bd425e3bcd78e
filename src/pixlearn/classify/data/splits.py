"""Which images validate each epoch and which give a run's final figures.

The test set is for the end: by default a seeded, stratified `val_split` (10%) of the training
folder validates every epoch (early stopping, the history), and `test/` is scored once, by the
final evaluation and the report. Three cases, named in the data summary as `validation.set`:

- `train-split`: train/ and test/ folders, val_split > 0: validation is held out of train/;
- `test`: train/ and test/ folders, `--val-split 0`: the test set validates every epoch (the first
  seed's way; the training set is all of train/, in the same order, so a seeded run is unchanged);
- `split`: no test/ folder (one folder, train/ alone or a CSV): the held-out split validates each
  epoch and gives the final figures too, which the summary and the report say;
- `given`: a label CSV's `split` column names the validation rows (and the test rows, if any).

    >>> from pixlearn.classify.data.folders import Sample, Splits
    >>> train = [Sample(f"{c}{i}.png", c) for c in "ab" for i in range(10)]
    >>> test = [Sample("t.png", "a"), Sample("u.png", "b")]
    >>> plan = plan_validation(Splits(train, test, ["a", "b"], [], "folders"), 0.1, seed=0)
    >>> len(plan.train), len(plan.val), len(plan.test), plan.validation, plan.final
    (18, 2, 2, 'train-split', 'test')
    >>> plan_validation(Splits(train, test, ["a", "b"], [], "folders"), 0.0, seed=0).validation
    'test'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixlearn.classify.data.folders import Sample, Splits, stratified_split
from pixlearn.core.errors import DataError
from pixlearn.core.storage.classify_records import DataSummary

VAL_FROM_TRAIN, VAL_IS_TEST, VAL_IS_HOLDOUT, VAL_GIVEN = "train-split", "test", "split", "given"


@dataclass(frozen=True)
class ValidationPlan:
    """The samples that train, validate (every epoch) and test (once, at the end), and where each came from."""

    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    validation: str  # train-split | test | split | given
    final: str  # test | validation: the set the final evaluation (metrics, report) scores
    fraction: float

    def sets(self) -> dict[str, list[Sample]]:
        """The sets to decode, by summary name: the validation set only when it is not the test set."""
        if self.validation == VAL_FROM_TRAIN or (self.validation == VAL_GIVEN and self.final == "test"):
            return {"train": self.train, "val": self.val, "test": self.test}
        if self.validation in (VAL_IS_HOLDOUT, VAL_GIVEN):
            return {"train": self.train, "val": self.val}
        return {"train": self.train, "test": self.test}

    def describe(self, val_every: int = 1) -> dict[str, Any]:
        """The data summary's `validation` entry: which set validated (after every `val_every`-th epoch
        and the last), which set the final figures are from."""
        share = f"{self.fraction:.0%}"
        many = bool(self.train) and isinstance(self.train[0].label, tuple)  # iterative stratification
        per = "per label (stratified by label sets)" if many else "per class"
        when = "every epoch" if val_every == 1 else f"every {val_every} epochs and after the last"
        text = {
            VAL_FROM_TRAIN: f"validation: {share} of the training folder {per} ({len(self.val)} images, seeded, "
            f"stratified); the test set ({len(self.test)} images) is scored once, by the final evaluation",
            VAL_IS_TEST: f"validation: the test set ({len(self.test)} images) {when} (--val-split 0); "
            "the final evaluation is on the same test set",
            VAL_IS_HOLDOUT: f"validation: {share} held out {per} ({len(self.val)} images, seeded, stratified); "
            "there is no test set, so the final evaluation is on this validation split",
            VAL_GIVEN: f"validation: the CSV's `val` rows ({len(self.val)} images) {when}; "
            + (
                f"its `test` rows ({len(self.test)} images) are scored once, by the final evaluation"
                if self.final == "test"
                else "there are no `test` rows, so the final evaluation is on them"
            ),
        }[self.validation]
        return {"set": self.validation, "fraction": self.fraction, "final": self.final, "text": text}


def plan_validation(splits: Splits, val_split: float, seed: int) -> ValidationPlan:
    """The validation plan for `splits` (from `folders.find_splits(data, rule, val_split, seed)`)."""
    if splits.val:
        final = "test" if splits.test else "validation"
        return ValidationPlan(splits.train, splits.val, splits.test or splits.val, VAL_GIVEN, final, 0.0)
    if splits.source != "folders":  # find_splits held val_split out already: it validates and is scored at the end
        return ValidationPlan(splits.train, splits.test, splits.test, VAL_IS_HOLDOUT, "validation", val_split)
    if val_split == 0:
        return ValidationPlan(splits.train, splits.test, splits.test, VAL_IS_TEST, "test", 0.0)
    train, val = stratified_split(splits.train, val_split, seed)
    if not val:
        raise DataError(f"--val-split {val_split}: no class has two training images to hold one out; use --val-split 0")
    return ValidationPlan(train, val, splits.test, VAL_FROM_TRAIN, "test", val_split)


def evaluated_on(summary: DataSummary) -> dict[str, str]:
    """metrics.json's `evaluated_on`: the set the final figures come from (test, or the validation split)."""
    return {"evaluated_on": summary.validation.final} if summary.validation is not None else {}
