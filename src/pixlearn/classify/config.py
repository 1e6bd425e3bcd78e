"""Every option of a training run, in one typed dataclass: type, default, help and range per field.

The command line builds `pixlearn train`'s options from these fields (`core.options`), and
`TrainConfig.resolved()` checks them all before any file is read; the resolved copy (the model's
default size filled in, `labels` set by `groups`) is what config.json stores.

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
from typing import Literal

from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.options import check_options, option
from pixlearn.core.runs import read_json
from pixlearn.core.spec import MAX_INPUT_SIDE
from pixlearn.models.registry import create_model, get_entry

DATA, MODEL, OPTIM, SCHED, AUG, RUN = "Data", "Model", "Optimiser", "Schedule", "Augmentation", "Run"
FALLBACK_SIZE = 64  # input side for a registered classifier that names no default size
MAX_SEED = 2**32 - 1  # numpy refuses negative seeds; the per-epoch seeds (seed x 1,000,003 + epoch) stay in 64 bits


@dataclass
class TrainConfig:
    """Every option of a training run; saved, resolved, as config.json beside the outputs."""

    # data
    size: int | None = option(
        None, "Side in pixels images are resized to.", panel=DATA, minimum=8, maximum=MAX_INPUT_SIDE,
        default_text="the model's: seed-cnn 150, airnet-small 28, others 64",
    )  # fmt: skip
    color: Literal["grayscale", "rgb", "auto"] = option(
        "auto", "Colour mode; auto is grayscale when the first images are grey.", panel=DATA
    )
    fit: Literal["squash", "crop", "pad"] = option("squash", "How images of another shape are fitted.", panel=DATA)
    labels: Literal["first", "leaf", "groups"] = option(
        "first",
        "Label from the first folder under the split (first), the folder holding the file (leaf), or --group rules.",
        panel=DATA,
    )
    groups: dict[str, list[str]] = option(
        default_factory=dict, help="Label -> folder names (the repeated --group LABEL=FOLDER,...).", cli=False
    )
    val_split: float = option(
        0.2, "Held-out fraction per class when there is no test/ folder.", panel=DATA, above=0, below=1
    )
    strict: bool = option(False, "Stop at the first undecodable file instead of skipping it.", panel=DATA)
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
    max_pixels: int | None = option(
        None, "Refuse images with more pixels than this (decompression-bomb guard).", panel=DATA, minimum=1,
        default_text="Pillow's, about 89 M",
    )  # fmt: skip
    # model
    model: str = option("resnet-small", "A registered classifier (see `pixlearn models`).", panel=MODEL)
    head: Literal["softmax", "sigmoid"] = option(
        "softmax", "softmax (cross-entropy) or sigmoid (the seed's sigmoid + binary cross-entropy).", panel=MODEL
    )
    # optimiser
    optimizer: Literal["adam", "adamw", "sgd"] = option("adam", "Optimiser (sgd: Nesterov, momentum 0.9).", panel=OPTIM)
    lr: float = option(1e-3, "Peak learning rate.", panel=OPTIM, above=0)
    weight_decay: float = option(0.0, "L2 (adam, sgd) or decoupled (adamw) weight decay.", panel=OPTIM, minimum=0)
    label_smoothing: float = option(
        0.0, "Label smoothing, softmax and sigmoid heads alike.", panel=OPTIM, minimum=0, below=1
    )
    # schedule
    epochs: int = option(10, "Passes over the training set.", panel=SCHED, minimum=1)
    batch_size: int = option(32, "Images per optimiser step (per process under torchrun).", panel=SCHED, minimum=1)
    schedule: Literal["constant", "cosine", "onecycle"] = option(
        "constant", "Learning-rate schedule: cosine decays to 0, onecycle warms up then decays.", panel=SCHED
    )
    warmup_epochs: float = option(0.0, "Linear warm-up, in epochs (any schedule).", panel=SCHED, minimum=0)
    early_stopping: int = option(
        0, "Stop after this many epochs without a better val_loss (0 = off).", panel=SCHED, minimum=0
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
    tta: bool = option(
        False,
        "Test-time augmentation: score each image and its mirror, averaged, in validation, evaluation "
        "and prediction (saved with the model).",
        panel=AUG,
    )
    # run
    seed: int = option(
        0, "Seed for the split, initial weights, batch order and augmentation.", panel=RUN, minimum=0,
        maximum=MAX_SEED,
    )  # fmt: skip
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N.", panel=RUN)
    workers: int = option(
        0,
        "Decoding workers: processes for 128 files or more, else threads; with --stream, decoding processes "
        "per training process (0 = one per core; threads one more; up to 4 streaming processes).",
        panel=RUN,
        minimum=0,
    )
    threads: int = option(
        0, "CPU threads for the network (0 = one per core; 1 pays while other jobs hold the cores).", panel=RUN,
        minimum=0,
    )  # fmt: skip
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto is bf16 autocast where the CPU computes bf16 natively, else fp32.", panel=RUN
    )
    channels_last: bool = option(True, "Channels-last tensors (faster CPU convolutions).", panel=RUN)

    def resolved(self) -> TrainConfig:
        """A checked copy with the model's default size filled in and `labels` set by `groups`."""
        check_options(self)
        entry = get_entry(self.model, "classify")
        config = dataclasses.replace(self, groups={k: list(v) for k, v in self.groups.items()})
        config.size = self.size or entry.default_size or FALLBACK_SIZE
        if config.groups:
            config.labels = "groups"
        elif config.labels == "groups":
            raise ConfigError("labels (--labels) groups needs at least one group rule (--group LABEL=FOLDER)")
        _check_device(config.device)
        entry.check_input_size(config.size)
        # Building the network once at the chosen size raises InputTooSmallError (seed-cnn's stride
        # chain) before minutes of decoding, not after. Channels and classes do not change the check.
        create_model(config.model, in_channels=1, num_classes=2, input_size=(config.size, config.size))
        return config


def read_config(path: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved as a run's config.json (checked; unknown keys are refused)."""
    saved = read_json(path)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known) if isinstance(saved, dict) else ["(not a JSON object)"]
    if unknown:
        raise RunError(f"{path}: unknown option(s) {', '.join(unknown)}")
    config = TrainConfig(**saved)
    try:
        check_options(config)
    except ConfigError as exc:
        raise RunError(f"{path}: {exc}") from exc
    return config


def _check_device(name: str) -> None:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"device (--device): {name!r} is not auto, cpu, cuda or cuda:N")
