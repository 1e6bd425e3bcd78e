"""Ready-made data: Fashion-MNIST from its published IDX files, in memory or as a folder tree.

Fashion-MNIST (Zalando, MIT licence) is 60,000 training and 10,000 test images, 28x28 grey,
10 classes. The four gzip IDX files are read as published; nothing is downloaded here.

    >>> from pixlearn.classify.data.datasets import read_fashion_mnist
    >>> train = read_fashion_mnist("../shared/data/fashion-mnist", "train")      # doctest: +SKIP
    >>> train.images.shape, train.images.dtype                                    # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))

`fashion_mnist_tree` writes the images as a pixlearn folder tree (`train/LABEL/n.png`,
`test/LABEL/n.png`), optionally upscaled and grouped into fewer labels, so the folder
pipeline (and the first seed's example) can be run on real photos of clothes.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixlearn.core.errors import DataError

FASHION_CLASSES: tuple[str, ...] = (
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)
# "tops vs other", the two-class task the benchmarks measure against the Keras peer.
TOPS_VS_OTHER: dict[str, tuple[str, ...]] = {
    "tops": ("tshirt", "pullover", "coat", "shirt"),
    "other": ("trouser", "dress", "sandal", "sneaker", "bag", "boot"),
}
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_TYPES = {0x08: np.uint8}


@dataclass
class ArraySet:
    """Images (N, H, W) uint8 and integer labels (N,) with the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or plain) of unsigned bytes into an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable or truncated ({exc})") from exc
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header declares {shape} ({int(np.prod(shape))} values) but holds {body.size}")
    return body.reshape(shape)


def read_fashion_mnist(root: str | os.PathLike, split: str = "train") -> ArraySet:
    """The `train` (60,000) or `test` (10,000) split from the four published IDX files in `root`."""
    if split not in _FILES:
        raise DataError(f"split must be train or test, got {split!r}")
    images_file, labels_file = (Path(root) / name for name in _FILES[split])
    images, labels = read_idx(images_file), read_idx(labels_file)
    if len(images) != len(labels):
        raise DataError(f"{images_file}: {len(images)} images but {labels_file.name} has {len(labels)} labels")
    return ArraySet(images, labels.astype(np.int64), FASHION_CLASSES)


def _label_names(classes: Sequence[str], groups: Mapping[str, Sequence[str]] | None) -> list[str]:
    if not groups:
        return list(classes)
    owner = {name: label for label, names in groups.items() for name in names}
    missing = [c for c in classes if c not in owner]
    if missing:
        raise DataError(f"groups leave out class(es) {', '.join(missing)}")
    return [owner[c] for c in classes]


def write_tree(
    data: ArraySet,
    folder: str | os.PathLike,
    size: int | None = None,
    fmt: str = "png",
    groups: Mapping[str, Sequence[str]] | None = None,
    limit: int | None = None,
    workers: int = 4,
) -> int:
    """Write images as `folder/CLASS/index.FMT` (upscaled to `size` if given); returns the count.

    With `groups`, as `folder/LABEL/CLASS/index.FMT`: the original class stays a subfolder, so
    `--labels leaf` still recovers the 10 classes from a grouped tree.
    """
    if fmt not in ("png", "jpg"):
        raise DataError(f"fmt must be png or jpg, got {fmt!r}")
    folder = Path(folder)
    names = _label_names(data.classes, groups)
    n = len(data) if limit is None else min(limit, len(data))

    def subfolder(label: int) -> Path:
        cls = data.classes[label]
        return folder / names[label] / cls if groups else folder / cls

    def write(i: int) -> None:
        target = subfolder(data.labels[i]) / f"{i:05d}.{fmt}"
        image = Image.fromarray(data.images[i], mode="L")
        if size is not None and size != image.width:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        image.save(target, quality=90) if fmt == "jpg" else image.save(target, compress_level=1)

    for label in range(len(data.classes)):
        subfolder(label).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, range(n)))
    return n


def fashion_mnist_tree(
    root: str | os.PathLike,
    out: str | os.PathLike,
    size: int | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    fmt: str = "png",
) -> Path:
    """Write Fashion-MNIST from the IDX files in `root` as `out/train/...` and `out/test/...`.

    size: upscale to this side (e.g. 150 for the first seed's network); groups: merge classes into
    labels (e.g. TOPS_VS_OTHER); *_limit: keep only the first N images of a split.

    >>> fashion_mnist_tree("../shared/data/fashion-mnist", "fm150", size=150,
    ...                    groups=TOPS_VS_OTHER, train_limit=6000, test_limit=1000)  # doctest: +SKIP
    PosixPath('fm150')
    """
    out = Path(out)
    for split, limit in (("train", train_limit), ("test", test_limit)):
        write_tree(read_fashion_mnist(root, split), out / split, size, fmt, groups, limit)
    return out
