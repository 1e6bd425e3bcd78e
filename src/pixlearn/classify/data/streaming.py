"""Folders larger than memory: images decoded as batches are needed, with an optional disk cache.

In memory (the default) a data set is decoded once into one uint8 tensor. With `stream=True`
a `StreamingSet` holds only the file list and labels: each epoch's batches, in the same
DistributedSampler order, are decoded by DataLoader worker processes a few batches ahead, so
memory stays flat however many files there are. Everything else (validation, evaluation,
galleries) reads `StreamingSet.images`, which decodes whatever slice it is asked for.

Every file is decoded once up front (in parallel) to skip bad files exactly as in memory and
to record the original sizes. With a cache folder that pass is kept: the decoded images go to
a uint8 .npy file (N x C x H x W) that later epochs and later runs memory-map instead of
decoding. Its name is a hash of the file list (paths, sizes, modification times) and the
decoding options, so a changed folder or another size never reads a stale cache.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from pixlearn.classify.data.decoding import DecodeOptions
    >>> from pixlearn.classify.demo import make_faces_data
    >>> from pixlearn.classify.data.folders import find_splits, LabelRule
    >>> from pixlearn.classify.data.streaming import open_stream
    >>> tmp = tempfile.TemporaryDirectory()
    >>> splits = find_splits(make_faces_data(Path(tmp.name) / "data"), LabelRule("first"))
    >>> train = open_stream(splits.train, DecodeOptions("grayscale", (150, 150)),
    ...                     splits.classes, cache=Path(tmp.name) / "cache")
    >>> train.images[0:8].shape
    torch.Size([8, 1, 150, 150])
    >>> sorted(p.suffix for p in (Path(tmp.name) / "cache").iterdir())   # the images and their key
    ['.json', '.npy']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pixlearn.classify.data.decoding import DecodeOptions, ImageSet, _decode_into, decode_files, label_tensor
from pixlearn.classify.data.folders import Sample
from pixlearn.core import distributed
from pixlearn.core.errors import DataError, ImageError
from pixlearn.core.progress import SILENT, Progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import CacheIndex
from pixlearn.core.storage.files import check_regular_file

CACHE_FORMAT = "pixlearn-cache/1"
# Files decoded per step of the up-front pass (and the cache build): what bounds its memory. As
# many as fill SCAN_BYTES of decoded images, 256 to 2,048 files: each step starts a pool of
# decoding processes, whose start-up weighed on small steps and is spread over larger ones
# (bench/README.md, "Decoding in worker processes").
SCAN_BYTES = 48 * 2**20
SCAN_FILES = (256, 2048)


def scan_chunk(options: DecodeOptions) -> int:
    h, w = options.size
    return max(SCAN_FILES[0], min(SCAN_FILES[1], SCAN_BYTES // (h * w * options.channels)))


# ---------------------------------------------------------------------------------- lazy images


class LazyImages:
    """uint8 images (N, C, H, W) read on access: indexing (int, slice, index list or tensor)
    returns a tensor decoded from the files, or copied from the memory-mapped cache."""

    def __init__(self, paths: Sequence[str], options: DecodeOptions, store: np.ndarray | None = None):
        self.paths = list(paths)
        self.options = options
        self.store = store  # (N, C, H, W) uint8 memory map, row i = paths[i]; None = decode

    @property
    def shape(self) -> torch.Size:
        h, w = self.options.size
        return torch.Size((len(self.paths), self.options.channels, h, w))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        if rows.ndim == 0:  # one image (a Python, numpy or 0-d tensor integer): no batch dimension
            return self[[int(rows)]][0]
        if self.store is not None:
            return torch.from_numpy(np.ascontiguousarray(self.store[rows]))
        return self.decode([self.paths[i] for i in rows.tolist()])

    def decode(self, paths: Sequence[str]) -> torch.Tensor:
        arr, kept, _, skipped = decode_files([Path(p) for p in paths], self.options)
        if skipped:
            # The up-front pass decoded this file; failing now means it changed since.
            raise ImageError(skipped[0][0], f"{skipped[0][1]} (it decoded when training started)")
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def take(self, index: Sequence[int] | torch.Tensor) -> LazyImages:
        """The images at `index`, still undecoded."""
        rows = np.asarray(index, dtype=np.int64)
        store = None if self.store is None else _RowView(self.store, rows)
        return LazyImages([self.paths[i] for i in rows.tolist()], self.options, store)  # type: ignore[arg-type]


class GalleryView:
    """LazyImages as (N, H, W, C) arrays for figures; indexing decodes (or reads the cache)."""

    def __init__(self, images: LazyImages):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.images[index].permute(0, 2, 3, 1).numpy()


class _RowView:
    """Rows of a memory-mapped array picked by an index, without reading them."""

    def __init__(self, store: np.ndarray, rows: np.ndarray):
        self.store, self.rows = store, rows

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return self.store[self.rows[index]]


# ---------------------------------------------------------------------------------- the set


@dataclass
class StreamingSet(ImageSet):
    """An ImageSet whose images are lazy: the file list and labels, decoded as batches are needed."""

    images: LazyImages  # type: ignore[assignment]  # read on access instead of a tensor in memory
    workers: int = 0  # decoding processes for training batches; 0 = decode in this process

    def subset(self, index: Sequence[int] | torch.Tensor) -> StreamingSet:
        rows = torch.as_tensor(index, dtype=torch.long)
        return StreamingSet(
            self.images.take(rows),
            self.labels[rows],
            [self.paths[i] for i in rows.tolist()],
            self.classes,
            [self.original_sizes[i] for i in rows.tolist()],
            [],
            [],
            self.workers,
        )

    def gallery_images(self) -> GalleryView:
        return GalleryView(self.images)

    def batches(self, index_batches: Iterable[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) for each index batch, in the order given.

        Cached images are copied from the memory map here; otherwise worker processes decode
        batches ahead of the loop (a DataLoader with the batches as its batch sampler).
        """
        order = [b.tolist() for b in index_batches]
        if self.images.store is not None or self.workers == 0:
            for index in order:
                yield self.images[index], self.labels[index]
            return
        loader = DataLoader(
            _BatchDecoder(self.images, self.labels),
            batch_sampler=order,
            num_workers=self.workers,
            collate_fn=_as_is,
            prefetch_factor=2,  # batches in flight per worker: what bounds memory
            # Its own generator: seeding the workers must not draw from the global RNG, which
            # dropout uses, or streaming would train differently from memory.
            generator=torch.Generator(),
        )
        yield from loader


class _BatchDecoder(Dataset):
    """A whole batch per call (`__getitems__`), so each worker decodes one batch at a time."""

    def __init__(self, images: LazyImages, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def __getitems__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        options = self.images.options
        out = np.empty((len(index), *options.size, options.channels), dtype=np.uint8)
        for row, i in enumerate(index):
            result = _decode_into((row, Path(self.images.paths[i])), options, out)
            if isinstance(result, ImageError):
                raise ImageError(result.source, f"{result.reason} (it decoded when training started)")
        images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
        return images, self.labels[index]


def _as_is(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def default_workers(workers: int) -> int:
    """Decoding processes per training process: as asked, else up to 4, one per core."""
    return workers or max(1, min(4, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------- the first pass


@dataclass
class Scan:
    """What the up-front pass learnt: which files decode, their original sizes, and why others don't."""

    kept: list[int]
    sizes: list[tuple[int, int]]
    skipped: list[tuple[str, str]]
    notes: list[tuple[str, str]] = field(default_factory=list)


def cache_key(paths: Sequence[Path], options: DecodeOptions) -> str:
    """Hash of the file list (path, size, modification time) and the decoding options."""
    described = [CACHE_FORMAT, options.color, list(options.size), options.fit]
    digest = hashlib.sha256(json.dumps(described, allow_nan=False).encode())
    for p in paths:
        st = os.stat(p)
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cache_files(cache: str | os.PathLike, key: str) -> tuple[Path, Path]:
    return Path(cache) / f"{key}.npy", Path(cache) / f"{key}.json"


def scan(
    paths: Sequence[Path],
    options: DecodeOptions,
    strict: bool = False,
    workers: int | None = None,
    progress: Progress = SILENT,
    write_to: Path | None = None,
) -> Scan:
    """Decode every file once, chunk by chunk; with `write_to`, append the images to that .npy.

    Only one chunk is in memory at a time: the images go to the file with plain writes (not a
    memory map), so they land in the page cache rather than in this process's memory.
    """
    kept: list[int] = []
    sizes: list[tuple[int, int]] = []
    skipped: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    h, w = options.size
    out = None
    if write_to is not None:
        out = open(write_to, "wb")  # noqa: SIM115 - closed below, after the final size is set
        shape = (len(paths), options.channels, h, w)
        np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
        data_start = out.tell()
    try:
        step = scan_chunk(options)
        for start in range(0, len(paths), step):
            chunk = list(paths[start : start + step])
            arr, ok, chunk_sizes, bad = decode_files(chunk, options, strict, workers, progress, notes=notes)
            kept += [start + i for i in ok]
            sizes += chunk_sizes
            skipped += bad
            if out is not None:
                out.write(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)).data)  # no bytes copy
        if out is not None:
            # Rows are the decoded files in order; rows of skipped files stay at the end, unused.
            out.truncate(data_start + len(paths) * options.channels * h * w)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    return Scan(kept, sizes, skipped, notes)


def build_cache(
    paths: Sequence[Path],
    options: DecodeOptions,
    cache: str | os.PathLike,
    key: str,
    strict: bool = False,
    workers: int | None = None,
    progress: Progress = SILENT,
) -> Scan:
    """The cache `key` (cache_key of paths and options): read if complete, else written (atomically:
    .npy, then .json last)."""
    try:
        Path(cache).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"--cache {cache}: cannot use it as the cache folder ({exc.strerror or exc})") from exc
    array_file, meta_file = cache_files(cache, key)
    if meta_file.exists() and array_file.exists():
        index = CacheIndex.read(meta_file)
        if index.format == CACHE_FORMAT and len(index.kept) <= len(paths):
            return Scan(list(index.kept), list(index.sizes), list(index.skipped), list(index.notes))
    with rundir.atomic_path(array_file) as tmp:
        result = scan(paths, options, strict, workers, progress, write_to=tmp)
    CacheIndex(
        format=CACHE_FORMAT,
        files=len(paths),
        kept=tuple(result.kept),
        sizes=tuple(result.sizes),
        skipped=tuple(result.skipped),
        notes=tuple(result.notes),
        color=options.color,
        size=tuple(options.size),
        fit=options.fit,
    ).write(meta_file)
    return result


def open_cache(cache: str | os.PathLike, key: str) -> np.ndarray:
    """Memory-map the cache `key`; copy-on-write so torch accepts it without a warning."""
    array_file, _ = cache_files(cache, key)
    if not array_file.exists():
        raise rundir.RunError(
            f"{array_file}: the cache rank 0 wrote is not visible here; --cache must be a folder every process sees"
        )
    check_regular_file(array_file)  # numpy maps the file itself: a FIFO must not reach it
    return np.load(array_file, mmap_mode="c")


def open_stream(
    samples: Sequence[Sample],
    options: DecodeOptions,
    classes: Sequence[str],
    strict: bool = False,
    workers: int = 0,
    cache: str | os.PathLike | None = None,
    progress: Progress = SILENT,
) -> StreamingSet:
    """A StreamingSet of labelled samples: bad files skipped as in memory, images read lazily.

    Under torchrun rank 0 makes the first pass (and the cache); the others receive its result.
    """
    paths = [s.path for s in samples]
    threads = workers or None
    if cache is not None:
        # Computed once: it stats every file, which is a third of reading a cached epoch.
        key = cache_key(paths, options)
        result = distributed.on_main(
            lambda: build_cache(paths, options, cache, key, strict, threads, progress), DataError
        )
    else:
        result = distributed.on_main(lambda: scan(paths, options, strict, threads, progress), DataError)
    store = None
    if cache is not None and result.kept:
        store = open_cache(cache, key)[: len(result.kept)]
    labels = label_tensor([samples[i].label for i in result.kept], classes)
    kept_paths = [str(paths[i]) for i in result.kept]
    return StreamingSet(
        LazyImages(kept_paths, options, store),
        labels,
        kept_paths,
        list(classes),
        result.sizes,
        result.skipped,
        result.notes,
        default_workers(workers),
    )
