"""Duplicates: the same image twice (exact), and copies resized, re-encoded, cropped or brightened (near).

- exact: the same decoded pixels (not the same bytes: a PNG saved again, or a file renamed, is
  still found). Images whose decoded, resized arrays have the same digest are candidates; each
  candidate group is then decoded again at full resolution and split by the digest of those pixels,
  so two images that only look alike once shrunk are never called exact.
- near-hash: DCT perceptual hashes (`imagehash.phash`, 64 bits) at most `max_bits` bits apart.
- near-embedding: cosine similarity of pretrained embeddings at least `min_cosine`.

Pairs between splits (a test image with a copy in the training set: a leak that inflates every
test figure) come first, then by similarity, most similar first. A group of m identical images
gives m - 1 pairs (its first image with each other), not m(m-1)/2.

    >>> import torch
    >>> images = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    >>> images[2] = 255
    >>> candidate_groups(images)
    [[0, 1]]
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pixlearn.core.errors import ImageError
from pixlearn.core.images import Color, normalize_mode, open_image

KINDS = ("exact", "near-hash", "near-embedding")
HASH_BITS = 64
NEIGHBOURS = 10  # nearest images kept per image (embeddings, hashes): a cluster of copies gives pairs, not N^2
THUMB_SIDE = 16  # side of the grey thumbnails a near pair is verified on
BLOCK_CELLS = 2**23  # pairwise comparisons at a time (rows x N): 64 MB of uint64 hashes, 32 MB of cosines


@dataclass(frozen=True)
class Pair:
    a: int  # indices into the checked images; a is the test image of a leak
    b: int
    kind: str  # exact | near-hash | near-embedding
    similarity: float  # 0 to 1: 1 for exact, 1 - bits / 64 for hashes, the cosine for embeddings
    same_split: bool


def digest(array: np.ndarray | torch.Tensor) -> bytes:
    data = np.ascontiguousarray(np.asarray(array))
    return hashlib.blake2b(repr((data.shape, str(data.dtype))).encode() + data.tobytes(), digest_size=16).digest()


def candidate_groups(images: torch.Tensor) -> list[list[int]]:
    """Groups (of two or more) of images whose decoded arrays are identical."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i in range(len(images)):
        groups[digest(images[i].numpy())].append(i)
    return [g for g in groups.values() if len(g) > 1]


def full_pixels_digest(path: str, color: Color) -> bytes:
    """The digest of a file's decoded pixels at full resolution (the decoder `train` uses, its colour mode)."""
    image = normalize_mode(open_image(path), color)
    return digest(np.asarray(image))


def exact_groups(
    paths: Sequence[str], images: torch.Tensor, color: Color, problems: list[tuple[str, str]]
) -> list[list[int]]:
    """Groups of images with the same decoded pixels at full size; a file that fails the second
    decoding is appended to `problems` as (path, reason) and left out."""
    out = []
    for group in candidate_groups(images):
        by_pixels: dict[bytes, list[int]] = defaultdict(list)
        for i in group:
            try:
                by_pixels[full_pixels_digest(paths[i], color)].append(i)
            except ImageError as exc:
                problems.append((exc.source, exc.reason))
        out += [g for g in by_pixels.values() if len(g) > 1]
    return out


def perceptual_hashes(images: torch.Tensor, on_image: Callable[[int], None] | None = None) -> np.ndarray:
    """(N,) uint64 DCT perceptual hashes of the decoded images (grey)."""
    import imagehash

    out = np.zeros(len(images), dtype=np.uint64)
    for i in range(len(images)):
        arr = images[i].numpy()
        grey = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0)).convert("L")
        bits = imagehash.phash(grey).hash.flatten()
        out[i] = np.packbits(bits).view(">u8")[0]
        if on_image is not None:
            on_image(1)
    return out


def hash_neighbours(hashes: np.ndarray, max_bits: int, k: int = NEIGHBOURS) -> list[tuple[int, int, int]]:
    """(i, j, bits) for i < j with hashes at most `max_bits` apart, at most `k` closest per image."""
    found: set[tuple[int, int, int]] = set()
    n = len(hashes)
    block = _block(n)
    for start in range(0, n, block):
        rows = hashes[start : start + block]
        bits = np.bitwise_count(rows[:, None] ^ hashes[None, :]).astype(np.int16)
        bits[np.arange(len(rows)), np.arange(start, start + len(rows))] = HASH_BITS + 1  # not itself
        for r, row in enumerate(bits):
            close = np.flatnonzero(row <= max_bits)
            if len(close) > k:
                close = close[np.argsort(row[close], kind="stable")[:k]]
            i = start + r
            found.update((min(i, int(j)), max(i, int(j)), int(row[j])) for j in close)
    return sorted(found)


def _block(n: int) -> int:
    return max(1, min(n, BLOCK_CELLS // max(n, 1)))


def embedding_neighbours(embeddings: torch.Tensor, k: int = NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices, cosines), each (N, k'), of every image's k nearest other images (k' = min(k, N - 1))."""
    unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
    n = len(unit)
    k = min(k, n - 1)
    indices, cosines = [], []
    block = _block(n)
    for start in range(0, n, block):
        sims = unit[start : start + block] @ unit.T
        sims[torch.arange(len(sims)), torch.arange(start, start + len(sims))] = -2.0  # not itself
        top = sims.topk(k, dim=1)
        indices.append(top.indices)
        cosines.append(top.values)
    if not indices:
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(indices), torch.cat(cosines).clamp(-1.0, 1.0)


def thumbnails(images: torch.Tensor, side: int = THUMB_SIDE) -> torch.Tensor:
    """(N, side x side) grey thumbnails, centred, of unit length: the product of two is their Pearson correlation."""
    from pixlearn.classify.embeddings import pixel_features  # the one shrinking loop (embeddings imports torch models)

    grey = pixel_features(images, side).view(len(images), -1, side * side).mean(1)  # pooling and channel mean commute
    return torch.nn.functional.normalize(grey - grey.mean(1, keepdim=True), dim=1)


def find_pairs(
    exact: list[list[int]],
    hashed: list[tuple[int, int, int]],
    neighbours: tuple[torch.Tensor, torch.Tensor] | None,
    limits: tuple[float, float],
    thumbs: torch.Tensor,
    splits: Sequence[str],
) -> list[Pair]:
    """Every duplicate pair, one row per pair of images (exact, else near-hash, else near-embedding), leaks first.

    limits: (the embeddings' least cosine, the thumbnails' least correlation). A near pair must also
    pass the thumbnails (`thumbnails`): on Fashion-MNIST, hashes a few bits apart alone matched many
    different garments of one cut; a resized or re-encoded copy keeps a correlation over 0.995 at 16x16."""
    min_cosine, min_pixels = limits
    group_of = {i: g for g, members in enumerate(exact) for i in members}
    pairs: dict[tuple[int, int], tuple[str, float]] = {}
    for members in exact:
        first = min(members, key=lambda i: (splits[i] == "train", i))  # a test image heads a group with a leak
        for i in members:
            if i != first:
                pairs[(first, i)] = ("exact", 1.0)

    def add(i: int, j: int, kind: str, similarity: float) -> None:
        if i in group_of and group_of.get(j) == group_of[i]:
            return  # the same pixels: listed as exact already
        key = (min(i, j), max(i, j))
        if key in pairs or (key[1], key[0]) in pairs:
            return  # found already (both ways round, or by hash and embedding): scored once
        if float(thumbs[i] @ thumbs[j]) >= min_pixels:
            pairs[key] = (kind, similarity)

    for i, j, bits in hashed:
        add(i, j, "near-hash", 1.0 - bits / HASH_BITS)
    if neighbours is not None:
        index, cosine = neighbours
        for i, j in (cosine >= min_cosine).nonzero().tolist():
            add(i, int(index[i, j]), "near-embedding", float(cosine[i, j]))
    rows = [_oriented(a, b, kind, sim, splits) for (a, b), (kind, sim) in pairs.items()]
    return sorted(rows, key=lambda p: (p.same_split, -p.similarity, KINDS.index(p.kind), p.a, p.b))


def _oriented(a: int, b: int, kind: str, similarity: float, splits: Sequence[str]) -> Pair:
    if splits[a] == "train" and splits[b] != "train":
        a, b = b, a  # a leak reads: this test image, its copy in train
    return Pair(a, b, kind, round(float(similarity), 6), splits[a] == splits[b])
