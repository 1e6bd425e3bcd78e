"""Folder trees of images -> labelled, decoded image sets.

The seed's layout is `train/city/buildings/x.jpg`: a split folder, then label folders. Labels
come from the path in one of three ways (or from a CSV of `path,label`):

- `first`: the first folder under the split (`train/nature/forest/x.jpg` -> `nature`), as the seed;
- `leaf`: the folder holding the file (`forest`);
- groups: explicit rules, `{"city": ["buildings", "street"], "nature": ["forest", ...]}`.

    >>> from pixlearn.data import DecodeOptions, LabelRule, find_splits, load_images
    >>> splits = find_splits("data", LabelRule("first"), val_split=0.2, seed=0)   # doctest: +SKIP
    >>> train = load_images(splits["train"], DecodeOptions("grayscale", (150, 150)))  # doctest: +SKIP

Decoded images stay uint8 (N, C, H, W) in memory: a quarter of float32, converted per batch.
"""

from __future__ import annotations

import csv
import math
import mmap
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .images import Color, Fit, ImageError, decode_pil, is_image_file, open_image

SPLIT_NAMES = {"train": ("train", "training"), "test": ("test", "testing", "val", "valid", "validation")}
LABEL_MODES = ("first", "leaf", "groups", "csv")


class DataError(ValueError):
    """A data set that cannot be trained on; raised before any training starts."""


# ---------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelRule:
    """How a path under a split folder becomes a label."""

    mode: str = "first"  # first | leaf | groups
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label -> folder names

    def label(self, relative: Path) -> str | None:
        """The label of a file at `relative` (to its split folder); None for files at the top."""
        folders = relative.parts[:-1]
        if not folders:
            return None
        if self.mode == "first":
            return folders[0]
        if self.mode == "leaf":
            return folders[-1]
        if self.mode == "groups":
            hits = {lab for lab, names in self.groups.items() if any(f in names for f in folders)}
            if len(hits) > 1:
                raise DataError(f"{relative}: matches more than one --group rule ({', '.join(sorted(hits))})")
            return hits.pop() if hits else None
        raise DataError(f"unknown label mode {self.mode!r}; choose first, leaf or groups")


def parse_groups(rules: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Parse `--group city=buildings,street` rules into {"city": ("buildings", "street")}.

    >>> parse_groups(["city=buildings,street", "nature=forest"])
    {'city': ('buildings', 'street'), 'nature': ('forest',)}
    """
    groups: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for rule in rules:
        label, sep, folders = rule.partition("=")
        names = tuple(f.strip() for f in folders.split(",") if f.strip())
        if not sep or not label.strip() or not names:
            raise DataError(f"--group {rule!r}: expected LABEL=FOLDER[,FOLDER...]")
        label = label.strip()
        if label in groups:
            raise DataError(f"--group {rule!r}: label {label!r} is given twice")
        for name in names:
            if name in owner:
                raise DataError(f"--group: folder {name!r} is in both {owner[name]!r} and {label!r}")
            owner[name] = label
        groups[label] = names
    return groups


# ---------------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str | None


def find_image_files(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, sorted, hidden entries skipped; symlinked folders are not followed
    (a symlink loop cannot hang the scan)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: path does not exist")
    if root.is_file():
        return [root]
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in files if not f.startswith(".") and is_image_file(f))
    return sorted(found)


def scan_folder(root: str | os.PathLike, rule: LabelRule) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Label every image under `root`; files the rule gives no label are returned as skipped."""
    root = Path(root)
    samples, unlabeled = [], []
    for path in find_image_files(root):
        label = rule.label(path.relative_to(root))
        if label is None:
            why = "no --group rule matches its folders" if rule.mode == "groups" else "not inside a label folder"
            unlabeled.append((str(path), why))
        else:
            samples.append(Sample(path, label))
    if rule.mode == "groups":
        used = Counter(s.label for s in samples)
        unused = [label for label in rule.groups if used[label] == 0]
        if unused:
            rules = "; ".join(f"{label}={','.join(rule.groups[label])}" for label in unused)
            raise DataError(f"{root}: --group rule(s) {rules} match no image")
    if rule.mode == "first":
        _check_no_empty_class_folders(root, samples)
    return samples, unlabeled


def _check_no_empty_class_folders(root: Path, samples: Sequence[Sample]) -> None:
    # An empty class folder is almost always a copy that went wrong; training without the
    # class would silently give a model that can never predict it.
    used = {s.label for s in samples}
    if not used:
        return  # no image anywhere: check_classes says so, which is the clearer message
    folders = [d for d in sorted(root.iterdir()) if not d.name.startswith(".") and d.is_dir() and not d.is_symlink()]
    empty = [d.name for d in folders if d.name not in used]
    if empty:
        raise DataError(f"{root}: class folder(s) with no images: {', '.join(empty)}")


def read_label_csv(path: str | os.PathLike) -> list[Sample]:
    """A CSV with `path,label` columns; relative paths are relative to the CSV's folder."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{path}: a label CSV needs the columns path,label (found {reader.fieldnames})")
        samples = []
        for line, row in enumerate(reader, start=2):
            if not row["path"] or not row["label"]:
                raise DataError(f"{path}:{line}: empty path or label")
            file = Path(row["path"])
            samples.append(Sample(file if file.is_absolute() else path.parent / file, row["label"].strip()))
    return samples


def _split_dir(root: Path, split: str) -> Path | None:
    for name in SPLIT_NAMES[split]:
        if (root / name).is_dir():
            return root / name
    return None


def stratified_split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out `fraction` of each class (at least one image of any class with two or more)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(str(s.label), []).append(s)
    train, held = [], []
    for label in sorted(by_label):
        group = by_label[label]
        order = rng.permutation(len(group))
        n_held = int(round(len(group) * fraction))
        n_held = min(max(n_held, 1 if len(group) > 1 else 0), len(group) - 1)
        held += [group[i] for i in order[:n_held]]
        train += [group[i] for i in order[n_held:]]
    return train, held


@dataclass
class Splits:
    """Labelled samples of each split, the class list (from training) and files left out."""

    train: list[Sample]
    test: list[Sample]
    classes: list[str]
    unlabeled: list[tuple[str, str]]
    source: str  # "folders" (train/ and test/) or "split" (seeded stratified hold-out)

    def __getitem__(self, name: str) -> list[Sample]:
        return {"train": self.train, "test": self.test}[name]


def find_splits(data: str | os.PathLike, rule: LabelRule, val_split: float = 0.2, seed: int = 0) -> Splits:
    """train/ and test/ (or val/) folders under `data`, or one folder (or label CSV) split by class."""
    data = Path(data)
    if not data.exists():
        raise DataError(f"{data}: path does not exist")
    unlabeled: list[tuple[str, str]] = []
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"{data}: expected a folder of images or a CSV of path,label")
        train, test = stratified_split(read_label_csv(data), val_split, seed)
        source = "split"
    elif (train_dir := _split_dir(data, "train")) is not None:
        train, unlabeled = scan_folder(train_dir, rule)
        test_dir = _split_dir(data, "test")
        if test_dir is not None:
            test, more = scan_folder(test_dir, rule)
            unlabeled += more
            source = "folders"
        else:
            train, test = stratified_split(train, val_split, seed)
            source = "split"
    else:
        samples, unlabeled = scan_folder(data, rule)
        train, test = stratified_split(samples, val_split, seed) if samples else ([], [])
        source = "split"
    classes = sorted({str(s.label) for s in train})
    check_classes(data, train, test, classes)
    return Splits(train, test, classes, unlabeled, source)


def check_classes(data: Path, train: Sequence[Sample], test: Sequence[Sample], classes: Sequence[str]) -> None:
    if not train:
        raise DataError(f"{data}: no labelled images found (expected train/LABEL/... or LABEL/... folders)")
    if len(classes) < 2:
        raise DataError(f"{data}: only one class ({classes[0]!r}); a classifier needs at least two")
    unseen = sorted({str(s.label) for s in test} - set(classes))
    if unseen:
        raise DataError(f"{data}: test class(es) never seen in training: {', '.join(unseen)}")


# ---------------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class DecodeOptions:
    color: Color = "grayscale"  # grayscale | rgb | auto (resolved once per data set)
    size: tuple[int, int] = (150, 150)  # (height, width) every image is resized to
    fit: Fit = "squash"  # squash | crop | pad

    @property
    def channels(self) -> int:
        return {"grayscale": 1, "rgb": 3}[self.color]


def resolve_color(paths: Sequence[Path], color: Color, probe: int = 32) -> Color:
    """`auto` becomes grayscale when the first images are all grey, else rgb."""
    if color != "auto":
        return color
    for path in paths[:probe]:
        try:
            mode = open_image(path).mode
        except ImageError:
            continue
        if mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return "rgb"
    return "grayscale"


@dataclass
class ImageSet:
    """Decoded images (uint8, N x C x H x W), integer labels (-1 if unknown) and their files."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    classes: list[str]
    original_sizes: list[tuple[int, int]]
    skipped: list[tuple[str, str]]
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, note) of files used with a caveat

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            self.images[index],
            self.labels[index],
            [self.paths[i] for i in index.tolist()],
            self.classes,
            [self.original_sizes[i] for i in index.tolist()],
            [],
        )


def _decode_into(
    item: tuple[int, Path], options: DecodeOptions, out: np.ndarray | None = None
) -> tuple[tuple[int, int], int] | ImageError:
    """Decode file `item` = (i, path) into out[i] (in a worker process: the shared array it was
    started with); returns the original size and frame count, or the ImageError naming the file."""
    index, path = item
    target = _worker_out if out is None else out
    try:
        image, original, frames = decode_pil(path, options.color, options.size, options.fit)
        target[index] = np.asarray(image).reshape(target.shape[1:])
        return original, frames
    except ImageError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is reported with the file, not raised
        return ImageError(path, f"{type(exc).__name__}: {exc}")


# Sets of at least this many files decode in worker processes rather than threads: Pillow's
# per-image Python (open, EXIF, convert) holds the GIL, so 2 threads reached 1.4-1.7x of one core on
# camera-sized JPEGs. Processes cost a fork each (about 30 ms for a pool of two), which pays from
# about a hundred files now that they write into shared memory: 128 / 256 / 512 150x150 JPEGs at
# 2,917 / 3,874 / 5,278 img/s against 1,351 / 3,126 / 2,315 with threads; camera-sized JPEGs
# 1,801 / 1,918 / 2,525 against 490 / 738 / 997 (one-off probe, medians of 3). The streaming scan
# and folder prediction decode 256 files at a time, so they take processes too.
PROCESS_MIN_FILES = 128
# Files per task sent to a worker process: an eighth of each worker's share, 32 to 256. Larger tasks
# cost fewer round trips through the pool's pipes (150x150 JPEGs, 5,000 files: 8,500-9,700 img/s in
# tasks of 128-512 files against 7,600 in tasks of 32); eight per worker keep the last ones short.
MIN_DECODE_CHUNK, MAX_DECODE_CHUNK = 32, 256


def _chunk_size(count: int, workers: int) -> int:
    return max(MIN_DECODE_CHUNK, min(MAX_DECODE_CHUNK, count // (8 * max(workers, 1))))


_worker_out: np.ndarray | None = None  # in a decoding process: the shared array it writes into


def _use_processes(count: int) -> bool:
    """Processes for large folders in the main process where fork exists; threads otherwise
    (a DataLoader worker, being daemonic, cannot start processes)."""
    return (
        count >= PROCESS_MIN_FILES
        and (os.cpu_count() or 1) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def _output_array(shape: tuple[int, ...], shared: bool) -> np.ndarray:
    """The (N, H, W, C) uint8 array decoding fills; `shared`: in an anonymous shared mapping, so
    forked workers write their images straight into it instead of pickling each one back through
    a pipe for the main process to copy (on one core of two, that copying slowed the workers)."""
    if not shared:
        return np.empty(shape, dtype=np.uint8)
    count = math.prod(shape)
    return np.frombuffer(mmap.mmap(-1, max(count, 1)), dtype=np.uint8, count=count).reshape(shape)


def _decode_pool(processes: bool, workers: int | None, out: np.ndarray) -> Executor:
    cores = os.cpu_count() or 1
    if processes:
        return ProcessPoolExecutor(
            max_workers=workers or cores,
            mp_context=multiprocessing.get_context("fork"),  # fork: the workers inherit `out`, unpickled
            initializer=_start_worker,
            initargs=(out,),
        )
    return ThreadPoolExecutor(max_workers=workers or min(8, cores + 1))


def _start_worker(out: np.ndarray) -> None:
    global _worker_out
    _worker_out = out
    # Ctrl-C reaches the whole process group: the main process handles it (resume hint), the
    # decoding workers stop quietly when it shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode_files(
    paths: Sequence[Path],
    options: DecodeOptions,
    strict: bool = False,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    notes: list[tuple[str, str]] | None = None,
) -> tuple[np.ndarray, list[int], list[tuple[int, int]], list[tuple[str, str]]]:
    """Decode files in parallel into one (N, H, W, C) uint8 array.

    Returns (array, indices of the decoded paths, their original sizes, skipped (path, reason)).
    `notes`, when given, receives (path, note) for files used with a caveat (multi-frame files
    are read at their first frame). `workers`: processes (PROCESS_MIN_FILES files or more) or
    threads; default one per core (threads: one per core plus one, as Pillow releases the GIL
    while it decodes).
    """
    h, w = options.size
    processes = _use_processes(len(paths))
    out = _output_array((len(paths), h, w, options.channels), shared=processes)
    kept: list[int] = []
    sizes: list[tuple[int, int]] = []
    skipped: list[tuple[str, str]] = []
    pool = _decode_pool(processes, workers, out)
    try:
        task = partial(_decode_into, options=options, out=None if processes else out)
        chunk = _chunk_size(len(paths), workers or os.cpu_count() or 1)
        for i, result in enumerate(pool.map(task, enumerate(paths), chunksize=chunk)):
            if isinstance(result, ImageError):
                if strict:
                    raise result
                skipped.append((result.source, result.reason))
            else:
                kept.append(i)
                sizes.append(result[0])
                if result[1] > 1 and notes is not None:
                    notes.append((str(paths[i]), f"{result[1]} frames (animated or multi-page); read the first"))
            if on_progress is not None:
                on_progress(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error or Ctrl-C, pending files are dropped
    return (out if len(kept) == len(paths) else out[kept]), kept, sizes, skipped


def load_images(
    samples: Sequence[Sample],
    options: DecodeOptions,
    classes: Sequence[str] | None = None,
    strict: bool = False,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImageSet:
    """Decode labelled (or unlabeled, label None) samples into an ImageSet; bad files are skipped."""
    classes = list(classes) if classes is not None else sorted({str(s.label) for s in samples if s.label})
    index = {c: i for i, c in enumerate(classes)}
    notes: list[tuple[str, str]] = []
    arr, kept, sizes, skipped = decode_files([s.path for s in samples], options, strict, workers, on_progress, notes)
    labels = [index.get(str(samples[i].label), -1) if samples[i].label is not None else -1 for i in kept]
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return ImageSet(
        images,
        torch.tensor(labels, dtype=torch.long),
        [str(samples[i].path) for i in kept],
        classes,
        sizes,
        skipped,
        notes,
    )


# ---------------------------------------------------------------------------------- summary


def _size_distribution(sizes: Iterable[tuple[int, int]]) -> dict[str, Any]:
    sizes = list(sizes)
    if not sizes:
        return {"count": 0}
    widths = np.array([s[0] for s in sizes])
    heights = np.array([s[1] for s in sizes])
    common = Counter(f"{w}x{h}" for w, h in sizes).most_common(5)
    return {
        "count": len(sizes),
        "width": {"min": int(widths.min()), "median": float(np.median(widths)), "max": int(widths.max())},
        "height": {"min": int(heights.min()), "median": float(np.median(heights)), "max": int(heights.max())},
        "most_common": [{"size": s, "images": n} for s, n in common],
    }


def summarize_sets(sets: Mapping[str, ImageSet], unlabeled: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Images per class and split, size distribution of the originals, and every skipped file."""
    classes = next(iter(sets.values())).classes
    per_class = {name: {c: int((s.labels == i).sum()) for i, c in enumerate(classes)} for name, s in sets.items()}
    skipped = [{"split": name, "path": p, "reason": r} for name, s in sets.items() for p, r in s.skipped]
    skipped += [{"split": "-", "path": p, "reason": r} for p, r in unlabeled]
    notes = [{"split": name, "path": p, "note": n} for name, s in sets.items() for p, n in getattr(s, "notes", [])]
    return {
        "classes": classes,
        "images": {name: len(s) for name, s in sets.items()},
        "per_class": per_class,
        "sizes": {name: _size_distribution(s.original_sizes) for name, s in sets.items()},
        "skipped": skipped,
        "notes": notes,
    }


def describe_data(summary: Mapping[str, Any]) -> str:
    """The data summary as a few lines of text: images per class and split, sizes, skipped files."""
    splits = list(summary["per_class"])
    width = max(len(c) for c in summary["classes"]) + 2
    lines = ["images per class: " + "".join(f"{s:>8}" for s in splits)]
    for c in summary["classes"]:
        lines.append(
            f"  {c:<{width}}"
            + " " * max(0, 16 - width - 2)
            + "".join(f"{summary['per_class'][s][c]:>8}" for s in splits)
        )
    for s in splits:
        sizes = summary["sizes"][s]
        if sizes.get("count"):
            common = ", ".join(f"{m['size']} ({m['images']})" for m in sizes["most_common"][:3])
            lines.append(
                f"{s} sizes: width {sizes['width']['min']}-{sizes['width']['max']}, "
                f"height {sizes['height']['min']}-{sizes['height']['max']}; most common {common}"
            )
    skipped = summary["skipped"]
    lines.append(f"skipped files: {len(skipped)}")
    lines += [f"  {item['path']}: {item['reason']}" for item in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  ... and {len(skipped) - 10} more (see skipped.csv)")
    return "\n".join(lines)
