"""Decoding labelled files into uint8 image sets, in parallel, and the data summary printed before training.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixlearn.classify.data.decoding import DecodeOptions, load_images
    >>> from pixlearn.classify.demo import make_faces_data
    >>> from pixlearn.classify.data.folders import LabelRule, find_splits
    >>> tmp = tempfile.TemporaryDirectory()
    >>> splits = find_splits(make_faces_data(Path(tmp.name) / "data"), LabelRule("first"))
    >>> train = load_images(splits.train, DecodeOptions("grayscale", (150, 150)), splits.classes)
    >>> train.images.shape, train.images.dtype
    (torch.Size([140, 1, 150, 150]), torch.uint8)

Decoded images stay uint8 (N, C, H, W) in memory: a quarter of float32, converted per batch.
"""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pixlearn.classify.data.folders import Sample, label_names
from pixlearn.classify.data.label_sets import multi_hot
from pixlearn.core.errors import ImageError
from pixlearn.core.imaging.images import Color, Fit, decode_pil, open_image
from pixlearn.core.progress import SILENT, Progress
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.core.text import log_text


@dataclass(frozen=True)
class DecodeOptions:
    color: Color = "grayscale"  # grayscale | rgb | auto (resolved once per data set)
    size: tuple[int, int] = (150, 150)  # (height, width) every image is resized to
    fit: Fit = "squash"  # squash | crop | pad

    @property
    def channels(self) -> int:
        return {"grayscale": 1, "rgb": 3}[self.color]


def decode_options(spec: ModelSpec) -> DecodeOptions:
    """How new images are decoded for a saved classifier: as its training images were."""
    assert spec.color is not None and spec.input_size is not None  # ModelSpec.check holds for classifiers
    return DecodeOptions(spec.color, spec.input_size, spec.fit)


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


class ImageSource(Protocol):
    """What training, validation, evaluation and the galleries read from a set of labelled images.

    Two implementations: `ImageSet` (every image decoded into memory) and
    `streaming.StreamingSet` (decoded as batches are needed, or read from a memory-mapped cache).
    """

    images: Any  # [index] -> uint8 tensor (n, C, H, W); .shape is (N, C, H, W)
    labels: torch.Tensor  # (N,) class indices, -1 where unknown
    paths: list[str]
    classes: list[str]
    original_sizes: list[tuple[int, int]]
    skipped: list[tuple[str, str]]  # (path, reason) of files left out
    notes: list[tuple[str, str]]  # (path, note) of files used with a caveat

    def __len__(self) -> int: ...

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSource:
        """The images at `index` (a streamed set stays undecoded)."""
        ...

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) for each index batch, in the order given."""
        ...

    def gallery_images(self) -> HWCImages:
        """The images as (N, H, W, C) uint8 arrays for figures: [index] -> array (n, H, W, C)."""
        ...


class HWCImages(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: Any) -> np.ndarray: ...


@dataclass
class ImageSet:
    """Decoded images (uint8, N x C x H x W), integer labels (-1 if unknown) and their files: an ImageSource."""

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

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in index_batches:
            yield self.images[index], self.labels[index]

    def gallery_images(self) -> np.ndarray:
        return self.images.permute(0, 2, 3, 1).numpy()  # a view: no copy of the set


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
# per-image Python (open, EXIF, convert) holds the GIL, so a second thread adds little. A pool costs a
# fork per worker, which pays from about a hundred files since the workers write into shared memory
# (bench/README.md, "Decoding in worker processes"). Safe: each worker decodes whole files with the
# same decoder into rows of the output that no other worker writes. The streaming scan and folder
# prediction decode 256 files at a time, so they take processes too.
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
    progress: Progress = SILENT,
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
            progress.advance(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error or Ctrl-C, pending files are dropped
    return (out if len(kept) == len(paths) else out[kept]), kept, sizes, skipped


def label_tensor(labels: Sequence[str | tuple[str, ...] | None], classes: Sequence[str]) -> torch.Tensor:
    """Integer class indices (N,), -1 for no or an unknown label; for label sets (many labels per image)
    a multi-hot float32 matrix (N, K)."""
    if labels and isinstance(labels[0], tuple):
        return torch.from_numpy(multi_hot([label or () for label in labels], classes))  # type: ignore[misc]
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index.get(str(label), -1) if label is not None else -1 for label in labels], dtype=torch.long)


def label_counts(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Images per class (int64, K): of integer labels (-1 counts nowhere) or of a multi-hot matrix."""
    if labels.ndim == 2:
        return labels.sum(0).round().to(torch.long)
    return torch.bincount(labels[labels >= 0].to(torch.long), minlength=classes)


def is_multi_label(labels: torch.Tensor) -> bool:
    return labels.ndim == 2


def load_images(
    samples: Sequence[Sample],
    options: DecodeOptions,
    classes: Sequence[str] | None = None,
    strict: bool = False,
    workers: int | None = None,
    progress: Progress = SILENT,
) -> ImageSet:
    """Decode labelled (or unlabeled, label None) samples into an ImageSet; bad files are skipped."""
    classes = list(classes) if classes is not None else sorted(label_names(samples))
    notes: list[tuple[str, str]] = []
    arr, kept, sizes, skipped = decode_files([s.path for s in samples], options, strict, workers, progress, notes)
    images = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return ImageSet(
        images,
        label_tensor([samples[i].label for i in kept], classes),
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
    per_class = {name: dict(zip(classes, label_counts(s.labels, len(classes)).tolist(), strict=True))
                 for name, s in sets.items()}  # fmt: skip
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
    """The data summary as a few lines of text: images per class and split, sizes, skipped files.

    Class and file names are shown by `text.log_text` (a newline in a name cannot start a line of
    its own); print each line through `text.terminal_text` (RichProgress.note does).
    """
    splits = list(summary["per_class"])
    shown = {c: log_text(c) for c in summary["classes"]}
    width = max(len(name) for name in shown.values()) + 2
    lines = ["images per class: " + "".join(f"{s:>8}" for s in splits)]
    for c in summary["classes"]:
        lines.append(
            f"  {shown[c]:<{width}}"
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
    if isinstance(summary.get("validation"), Mapping):  # which set validates, which gives the final figures
        lines.append(str(summary["validation"].get("text", "")))
    lines += [f"input: {note}" for note in summary.get("input", [])]  # how images reach the network
    skipped = summary["skipped"]
    lines.append(f"skipped files: {len(skipped)}")
    lines += [f"  {log_text(item['path'])}: {log_text(item['reason'])}" for item in skipped[:10]]
    if len(skipped) > 10:
        lines.append(f"  ... and {len(skipped) - 10} more (see skipped.csv)")
    return "\n".join(lines)
