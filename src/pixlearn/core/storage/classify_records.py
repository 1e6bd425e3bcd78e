"""The records of a classification run's files and of a data check: metrics.json, data_summary.json,
evaluation.json, history.csv's rows, check.json, the decode cache's index, and the record of the run
that wrote a prediction CSV.

Each is a `records.Record`: written by the step that computes it (training, evaluation, the check,
the streaming decoder), read by the report, the command line and resuming. An optional key's default
is the one here; a key a record does not know is kept (`extra`).

    >>> metrics = TrainingMetrics.from_dict({"epochs_run": 1, "test_accuracy": 0.5, "test_images": 8})
    >>> metrics.test_accuracy, metrics.evaluated_on, metrics.best_epoch
    (0.5, 'test', None)
    >>> TrainingMetrics.from_dict({"test_accuracy": "high"})
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.RunError: metrics.json: test_accuracy must be a number or null, got 'high'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixlearn.core.storage.records import CsvRow, Record, keyed, optional

# ---------------------------------------------------------------------------------- an epoch's figures


@dataclass(frozen=True, kw_only=True)
class EpochFigures(Record):
    """An epoch's figures, declared once: each row of history.csv (`EpochRow`) and the last epoch's in
    metrics.json (`TrainingMetrics`) hold them under these keys."""

    epoch: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_balanced_accuracy: float | None = None
    val_macro_f1: float | None = None
    val_subset_accuracy: float | None = None  # many labels per image: every label of an image right
    val_map: float | None = None  # many labels per image: mean average precision over labels
    lr: float | None = None
    seconds: float | None = None  # of the epoch
    phase: str | None = None  # transfer learning: head or full


# ---------------------------------------------------------------------------------- metrics.json


@dataclass(frozen=True, kw_only=True)
class FoundRate(Record):
    """A learning rate `--lr auto` found and trained at (`classify.training.lr_find`): one per phase."""

    phase: str = ""  # history.csv's: "" for a run of one phase, head or full when fine-tuning
    lr: float
    rule: str  # how the rate was read off the sweep's curve (valley)
    sweep: str  # the sweep's CSV in the run directory; its figure: figures/, the same name, .png


@dataclass(frozen=True, kw_only=True)
class _EpochsRun(Record):
    """metrics.json's first key. A base of its own: a dataclass's inherited fields come first, and the
    file (and the report, which lists its keys in order) keeps `epochs_run` before the epoch figures."""

    epochs_run: int | None = None


@dataclass(frozen=True, kw_only=True)
class TrainingMetrics(EpochFigures, _EpochsRun):
    """metrics.json of a training run, written last (its presence marks the run complete): the number of
    epochs run and the last one's figures (`EpochFigures`), what was fitted on the validation split at the
    end, and the final evaluation's."""

    FILE = "metrics.json"
    FORMAT = "pixlearn-training-metrics"

    start_weights: dict[str, str] | None = None  # {"file", "sha256"} of the weights training started from
    lr_found: tuple[FoundRate, ...] | None = None  # --lr auto: the rate of each phase (config.json keeps "auto")
    # early stopping: the epoch whose weights were saved, its monitored value, whether they were restored
    best_epoch: int | None = None
    best_val_loss: float | None = None
    best_val_accuracy: float | None = None
    best_val_balanced_accuracy: float | None = None
    best_val_macro_f1: float | None = None
    best_val_map: float | None = None
    restored_best: bool | None = None
    evaluated_on: str = "test"  # or "validation" (no test set); runs before the key were scored on test/
    # what was fitted on the validation split (--calibrate, the threshold), and its effect there
    decisions_fitted_on: str | None = None
    threshold: dict[str, Any] | None = None
    temperature: tuple[float, ...] | None = None
    val_nll_before: float | None = None
    val_nll_after: float | None = None
    val_ece_before: float | None = None
    val_ece_after: float | None = None
    calibration_warning: str | None = None
    label_thresholds: dict[str, float] | None = None  # many labels per image: each label's, by label
    # the final evaluation (evaluated_on)
    test_accuracy: float | None = None
    test_images: int | None = None
    test_balanced_accuracy: float | None = None
    test_macro_f1: float | None = None
    test_nll_before: float | None = None
    test_nll_after: float | None = None
    test_ece_before: float | None = None
    test_ece_after: float | None = None
    test_map_macro: float | None = None  # many labels per image (the others: classify.evaluation.multilabel)
    test_map_micro: float | None = None
    test_subset_accuracy: float | None = None
    test_hamming_loss: float | None = None
    run_seconds: float | None = None  # the command's wall time up to this file; runs before it have none

    def validation_effect(self) -> TemperatureEffect | None:
        """NLL and ECE of the validation split before and after the temperature fitted on it (None: uncalibrated)."""
        figures = (self.val_nll_before, self.val_nll_after, self.val_ece_before, self.val_ece_after)
        if any(v is None for v in figures):
            return None
        names = ("nll_before", "nll_after", "ece_before", "ece_after")
        return TemperatureEffect.from_dict(dict(zip(names, figures, strict=True)), self.FILE)


@dataclass(frozen=True, kw_only=True)
class EpochRow(EpochFigures, CsvRow):
    """One row of a training run's history.csv: an epoch's figures (`EpochFigures`; a blank where it has none)."""

    FILE = "history.csv"

    epoch: int = field()  # required: every row has its epoch (a bare `epoch: int` would keep the base's None)
    phase: str = ""  # a blank cell reads back as "": a row made in memory says the same


# ---------------------------------------------------------------------------------- data_summary.json


@dataclass(frozen=True, kw_only=True)
class SkippedFile(Record):
    """A file that could not be used, and why."""

    split: str | None = None  # the data summary's: the split it was found in ("-": no label)
    path: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class FileNote(Record):
    """A file that was used, with something worth knowing (an animation's first frame only)."""

    split: str | None = None
    path: str
    note: str


@dataclass(frozen=True, kw_only=True)
class SideRange(Record):
    min: int
    median: float
    max: int


@dataclass(frozen=True, kw_only=True)
class CommonSize(Record):
    size: str  # WIDTHxHEIGHT
    images: int


@dataclass(frozen=True, kw_only=True)
class SplitSizes(Record):
    """The original sizes of one split's images (only `count`, 0, where it has none)."""

    count: int
    width: SideRange | None = None
    height: SideRange | None = None
    most_common: tuple[CommonSize, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ValidationSummary(Record):
    """Which set validated each epoch and which gave the final figures (`classify.data.splits`)."""

    validated_by: str = keyed("set")  # train-split, test, split or given (a label CSV's split column)
    fraction: float
    final: str  # test or validation
    text: str = ""  # the sentence the data summary shows


@dataclass(frozen=True, kw_only=True)
class DataSummary(Record):
    """data_summary.json: the images of a training run per class and split, their sizes, the files
    skipped, and how they were decoded."""

    FILE = "data_summary.json"
    FORMAT = "pixlearn-data-summary"

    classes: tuple[str, ...]
    images: dict[str, int] = field(default_factory=dict)  # per split
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    sizes: dict[str, SplitSizes] = field(default_factory=dict)
    skipped: tuple[SkippedFile, ...] = ()
    notes: tuple[FileNote, ...] = ()
    source: str | None = None  # folders or a CSV
    validation: ValidationSummary | None = None  # runs before it: test/ validated every epoch
    color: str | None = None
    size: tuple[int, ...] | None = None  # [height, width] images were resized to
    fit: str | None = None
    input: tuple[str, ...] = ()  # how images reach a pretrained network


# ---------------------------------------------------------------------------------- evaluation.json


@dataclass(frozen=True, kw_only=True)
class ClassScores(Record):
    name: str = keyed("class")
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True, kw_only=True)
class TemperatureEffect(Record):
    """NLL and ECE of the same images before and after temperature scaling."""

    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float


@dataclass(frozen=True, kw_only=True)
class Abstention(Record):
    abstain_below: float
    abstained: int
    coverage: float
    accuracy_on_kept: float | None = optional(none="null")  # null: every image abstained


@dataclass(frozen=True, kw_only=True)
class ReliabilityBin(Record):
    """One confidence bin of the reliability table; a bin without images has no mean confidence or
    accuracy: NaN, written as null."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


@dataclass(frozen=True, kw_only=True)
class Calibration(Record):
    ece: float
    nll: float
    bins: tuple[ReliabilityBin, ...] = ()  # the reliability table
    note: str = ""  # what the confidence is (the sigmoid head's: each class output on its own)


@dataclass(frozen=True, kw_only=True)
class PrecisionRecall(Record):
    name: str = keyed("class")
    average_precision: float
    recall: tuple[float, ...] = ()
    precision: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EvaluationRecord(Record):
    """evaluation.json: a model's scores on a labelled set (RUN/ for the final one, RUN/evaluations/NAME/
    for `pixlearn evaluate`); written by `classify.evaluation.interpretation`. Files written before the
    balanced scores and calibration existed have None and empty parts there."""

    FILE = "evaluation.json"
    FORMAT = "pixlearn-evaluation"
    MAX_BYTES = 256 << 20  # 1,000 classes: three matrices of a million cells

    images: int
    accuracy: float
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None
    nll: float | None = None
    classes: tuple[str, ...]
    head: str | None = None
    decision: str = "the most probable class"  # the rule that made the labels
    threshold: dict[str, Any] | None = optional(none="null")
    temperature: tuple[float, ...] | None = optional(none="null")
    temperature_effect: TemperatureEffect | None = optional(none="{}")  # {}: uncalibrated
    abstention: Abstention | None = optional(none="{}")  # {}: no image abstains
    calibration: Calibration | None = None
    precision_recall: tuple[PrecisionRecall, ...] = ()
    confusion_matrix: tuple[tuple[int, ...], ...]  # true in rows, predicted in columns
    confusion_proportions: tuple[tuple[float, ...], ...]
    conditional_error_rates: tuple[tuple[float, ...], ...]  # -1 where a class has no image
    per_class: tuple[ClassScores, ...]
    most_confused: tuple[tuple[str, str, int], ...] = ()  # (true, predicted, images)
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True, kw_only=True)
class LabelScores(Record):
    """One label of a multi-label evaluation: its ranking, its decisions at its threshold, its calibration."""

    label: str
    support: int  # images that carry it
    predicted: int  # images given it
    average_precision: float  # NaN where no image carries it
    precision: float
    recall: float
    f1: float
    ece: float
    recall_curve: tuple[float, ...] = ()
    precision_curve: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MultiLabelEvaluationRecord(Record):
    """evaluation.json of a multi-label model (`classify.evaluation.multilabel_files`): the scores of many
    labels per image, each label decided by its threshold; per_label sorted by average precision."""

    FILE = "evaluation.json"
    FORMAT = "pixlearn-multilabel-evaluation"
    MAX_BYTES = 256 << 20

    images: int
    map_macro: float
    map_micro: float
    subset_accuracy: float
    hamming_loss: float
    cardinality_given: float
    cardinality_predicted: float
    macro_f1: float
    classes: tuple[str, ...]
    thresholds: tuple[float, ...] | None = optional(none="null")
    temperature: tuple[float, ...] | None = optional(none="null")
    per_label: tuple[LabelScores, ...] = ()
    co_occurrence: tuple[tuple[int, ...], ...] = ()  # given in rows, predicted in columns
    skipped: tuple[SkippedFile, ...] = ()


# ---------------------------------------------------------------------------------- check.json


@dataclass(frozen=True, kw_only=True)
class ClassBalance(Record):
    per_split: dict[str, dict[str, int]]
    total: dict[str, int]
    ratio: float  # the largest class's images over the smallest's
    rare: tuple[str, ...] = ()  # under a fifth of the median


@dataclass(frozen=True, kw_only=True)
class DuplicateCounts(Record):
    """Pairs of duplicate images per kind, and how many of them lie across splits (leaks)."""

    exact: int = 0
    near_hash: int = optional(key="near-hash", default=0)
    near_embedding: int = optional(key="near-embedding", default=0)
    leaks: int = 0


@dataclass(frozen=True, kw_only=True)
class CheckSummary(Record):
    """check.json: what `pixlearn check` looked at and how much it found (its CSVs list the findings),
    written last by `classify.audit.inspection`; its presence makes a directory a check directory."""

    FILE = "check.json"
    FORMAT = "pixlearn-check"

    data: str
    config: dict[str, Any]
    features: str
    color: str
    size: tuple[int, ...]
    classes: tuple[str, ...]
    images: dict[str, int]  # per split
    balance: ClassBalance
    duplicates: DuplicateCounts = field(default_factory=DuplicateCounts)
    label_issues: int = 0  # images, or (image, label) pairs with many labels per image
    label_issue_kinds: dict[str, int] = field(default_factory=dict)  # pairs missing, wrong; {}: one label per image
    image_issues: dict[str, int] = field(default_factory=dict)  # images per kind of issue
    skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per phase, and total


# ---------------------------------------------------------------------------------- the decode cache


@dataclass(frozen=True, kw_only=True)
class CacheIndex(Record):
    """CACHE/KEY.json beside CACHE/KEY.npy (`classify.data.streaming`): which files the array holds,
    written after it; an index of another format is rebuilt, not read."""

    format: str = ""
    files: int = 0
    kept: tuple[int, ...] = ()  # the decoded files' indices, in the array's order
    sizes: tuple[tuple[int, int], ...] = ()  # their original (width, height)
    skipped: tuple[tuple[str, str], ...] = ()  # (path, reason)
    notes: tuple[tuple[str, str], ...] = ()  # (path, note)
    color: str = ""
    size: tuple[int, ...] = ()
    fit: str = ""


# ---------------------------------------------------------------------------------- a prediction CSV's source


@dataclass(frozen=True, kw_only=True)
class PredictionSource(Record):
    """The run that wrote a prediction CSV, in a small file beside it (`classify.inference.prediction`):
    `predict --resume` appends only to a CSV that the same weights wrote, not to one of another run
    that happens to have the same classes."""

    FORMAT = "pixlearn-predictions"

    run: str
    weights_sha256: str  # of the run's model.safetensors
    classes: tuple[str, ...] = ()
