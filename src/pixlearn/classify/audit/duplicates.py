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
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from pixlearn.core.errors import ImageError
from pixlearn.core.imaging.images import Color, normalize_mode, open_image
from pixlearn.core.progress import SILENT, Progress

KINDS = ("exact", "near-hash", "near-embedding")
HASH_BITS = 64
NEIGHBOURS = 10  # nearest images kept per image (embeddings, hashes): a cluster of copies gives pairs, not N^2
THUMB_SIDE = 16  # side of the grey thumbnails a near pair is verified on
CROP_LIMIT = 0.1  # a cropped copy: at most a tenth of a side cut from each edge (of either image)
# its search (`align_crops`): (edge move as a fraction of a side, thumbnail side), first on COARSE_SIDE grey
# images (8x8 thumbnails are a quarter of the work and see a 4% move), then on the decoded images
COARSE_STEPS = ((0.04, 8), (0.02, 8), (0.01, THUMB_SIDE))
FINE_STEPS = ((0.005, THUMB_SIDE), (0.0025, THUMB_SIDE))
CROP_ROUNDS = 4  # moves per step at most
COARSE_SIDE = 32
CROP_COSINE = 0.9  # crop candidates: nearest embeddings at 0.9 x --near-cosine (0.855) or more
MIN_DETAIL = 0.99  # least correlation of an aligned crop's detail (`crop_matches`)
CROP_CHUNK = 4096  # crop alignments at a time (their area weights: P x 16 x side floats each)
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


def perceptual_hashes(images: torch.Tensor, progress: Progress = SILENT) -> np.ndarray:
    """(N,) uint64 DCT perceptual hashes of the decoded images (grey)."""
    import imagehash

    out = np.zeros(len(images), dtype=np.uint64)
    for i in range(len(images)):
        arr = images[i].numpy()
        grey = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0)).convert("L")
        bits = imagehash.phash(grey).hash.flatten()
        out[i] = np.packbits(bits).view(">u8")[0]
        progress.advance(1)
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


def grey_thumbnails(images: torch.Tensor, side: int) -> torch.Tensor:
    """(N, side, side) grey images in [0, 1], shrunk by area averaging."""
    from pixlearn.classify.audit.embeddings import pixel_features

    return pixel_features(images, side).view(len(images), -1, side, side).mean(1)  # pooling and channel mean commute


def thumbnails(images: torch.Tensor, side: int = THUMB_SIDE) -> torch.Tensor:
    """(N, side x side) grey thumbnails, centred, of unit length: the product of two is their Pearson correlation."""
    return _unit(grey_thumbnails(images, side).flatten(1))


def _unit(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows - rows.mean(1, keepdim=True), dim=1)


def find_pairs(
    exact: list[list[int]],
    hashed: list[tuple[int, int, int]],
    neighbours: tuple[torch.Tensor, torch.Tensor] | None,
    limits: tuple[float, float],
    images: torch.Tensor,
    splits: Sequence[str],
) -> list[Pair]:
    """Every duplicate pair, one row per pair of images (exact, else near-hash, else near-embedding), leaks first.

    limits: (the embeddings' least cosine, the thumbnails' least correlation). A near pair must also
    pass the thumbnails (`thumbnails`): on Fashion-MNIST, hashes a few bits apart alone matched many
    different garments of one cut; a resized or re-encoded copy keeps a correlation over 0.995 at 16x16.
    A cropped copy does not (a 1% crop of a photo: 0.988), so a pair the embeddings found that fails is
    aligned first (`crop_matches`)."""
    min_cosine, min_pixels = limits
    pairs = _exact_pairs(exact, splits)
    near, embedded = _near_candidates(exact, hashed, neighbours, min_cosine)
    for key, cosine in crop_candidates(neighbours, min_cosine).items():
        if not _same_group(exact, *key):  # the same pixels: listed as exact already
            near.setdefault(key, ("near-embedding", cosine))
            embedded.add(key)
    keys = list(near)
    thumbs = thumbnails(images)
    pair = torch.tensor(keys, dtype=torch.long).view(-1, 2)
    plain = ((thumbs[pair[:, 0]] * thumbs[pair[:, 1]]).sum(1) >= min_pixels).tolist()  # every pair at once
    passed = {k for k, ok in zip(keys, plain, strict=True) if ok}
    cropped = sorted(embedded - passed)  # what the embeddings found and the plain gate refused: a crop?
    passed |= {key for key, ok in zip(cropped, crop_matches(images, cropped, min_pixels), strict=True) if ok}
    pairs.update((k, near[k]) for k in near if k in passed)
    rows = [_oriented(a, b, kind, sim, splits) for (a, b), (kind, sim) in pairs.items()]
    return sorted(rows, key=lambda p: (p.same_split, -p.similarity, KINDS.index(p.kind), p.a, p.b))


def _exact_pairs(exact: list[list[int]], splits: Sequence[str]) -> dict[tuple[int, int], tuple[str, float]]:
    pairs = {}
    for members in exact:
        first = min(members, key=lambda i: (splits[i] == "train", i))  # a test image heads a group with a leak
        pairs.update(((first, i), ("exact", 1.0)) for i in members if i != first)
    return pairs


def _near_candidates(
    exact: list[list[int]],
    hashed: list[tuple[int, int, int]],
    neighbours: tuple[torch.Tensor, torch.Tensor] | None,
    min_cosine: float,
) -> tuple[dict[tuple[int, int], tuple[str, float]], set[tuple[int, int]]]:
    """(i, j) -> (kind, similarity) with i < j, each pair once (by hash first), none inside an exact group;
    and the pairs the embeddings found."""
    near: dict[tuple[int, int], tuple[str, float]] = {}
    embedded: set[tuple[int, int]] = set()
    found = [(i, j, "near-hash", 1.0 - bits / HASH_BITS) for i, j, bits in hashed]
    if neighbours is not None:
        index, cosine = neighbours
        found += [(i, int(index[i, k]), "near-embedding", float(cosine[i, k]))
                  for i, k in (cosine >= min_cosine).nonzero().tolist()]  # fmt: skip
    for i, j, kind, similarity in found:
        if _same_group(exact, i, j):
            continue  # the same pixels: listed as exact already
        key = (min(i, j), max(i, j))
        near.setdefault(key, (kind, similarity))
        if kind == "near-embedding":
            embedded.add(key)
    return near, embedded


# ---------------------------------------------------------------------------------- cropped copies


def _same_group(exact: list[list[int]], i: int, j: int) -> bool:
    """Whether images i and j are in one group of exact copies."""
    return any(i in members and j in members for members in exact)


def crop_candidates(
    neighbours: tuple[torch.Tensor, torch.Tensor] | None, min_cosine: float
) -> dict[tuple[int, int], float]:
    """Pairs of images each other's nearest embedding, at a cosine of at least CROP_COSINE x `min_cosine`: a
    cropped copy moves the embedding (2-10% crops of photos: cosine 0.85-0.99, 20 of 27 under 0.95) and
    the hash (up to 32 bits) too far, but its original stays its nearest image (26 of 27)."""
    if neighbours is None or neighbours[0].shape[1] == 0:
        return {}
    nearest, cosine = neighbours[0][:, 0], neighbours[1][:, 0]
    mutual = (nearest[nearest] == torch.arange(len(nearest))) & (cosine >= CROP_COSINE * min_cosine)
    pairs = ((i, int(nearest[i])) for i in mutual.nonzero().flatten().tolist())
    return {(min(i, j), max(i, j)): float(cosine[i]) for i, j in pairs}


def crop_matches(images: torch.Tensor, pairs: Sequence[tuple[int, int]], min_pixels: float) -> list[bool]:
    """Whether each pair is one image cropped (up to CROP_LIMIT of a side from each edge, of either image,
    resized back or not): the best crop alignment of the two (`align_crops`) gives 16x16 thumbnails
    correlated at least `min_pixels`, and their detail (`detail_correlation`) at least MIN_DETAIL.

    Four free edges also fit the outline of two garments of one cut (Fashion-MNIST's hash pairs: 14
    unplanted leaks over 0.995 once aligned, 6 without), but not their detail: the look-alikes' reached
    0.985, while 31 crops (2-10%, centred or not, resized back or not, JPEG 75-95) of tiles of scikit-image's
    sample photos gave 0.99-0.999 but for 4 soft or flat ones (0.94-0.98); 25 of the 31 were found,
    no other pair, and the Fashion-MNIST bench found the same pairs as without the crop search."""
    if not pairs:
        return []
    used, index = torch.unique(torch.tensor(pairs), return_inverse=True)
    coarse = area_tables(grey_thumbnails(images[used], COARSE_SIDE))
    edges, _ = align_crops(coarse, index, torch.zeros(len(pairs), 4), COARSE_STEPS)
    full = area_tables(grey_thumbnails(images[used], images.shape[-1]))
    edges, correlation = align_crops(full, index, edges, FINE_STEPS)
    detail = detail_correlation(full, index, edges)
    return ((correlation >= min_pixels) & (detail >= MIN_DETAIL)).tolist()


MOVES = torch.cat([torch.eye(4), -torch.eye(4)])  # one edge in or out


def align_crops(
    tables: torch.Tensor, index: torch.Tensor, edges: torch.Tensor, steps: Sequence[tuple[float, int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(edges, correlation): the crop (`crop_boxes`) that best correlates each pair's thumbnails, by coordinate
    search from `edges`: each (step, thumbnail side) in turn, every edge moved by the step while that helps.
    tables: the images' `area_tables`; index: (P, 2) the pair's two rows of them."""
    best = torch.zeros(len(edges))
    for step, side in steps:
        best = aligned_correlation(tables, index, edges, side)
        active = torch.arange(len(edges))  # the pairs a move still helped
        for _ in range(CROP_ROUNDS):
            trial = (edges[active, None] + step * MOVES).clamp(-CROP_LIMIT, CROP_LIMIT)  # (A, 8, 4)
            pair = index[active].repeat_interleave(len(MOVES), 0)
            top, move = aligned_correlation(tables, pair, trial.flatten(0, 1), side).view(-1, len(MOVES)).max(1)
            better = top > best[active] + 1e-6
            active, chosen = active[better], trial[better, move[better]]
            if not len(active):
                break
            edges[active], best[active] = chosen, top[better]
    return edges, best


def crop_boxes(edges: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 4) edges (left, top, right, bottom as fractions of a side; over 0: cut from image a, under 0: from
    image b) to the two boxes (x0, y0, x1, y1, from 0 to 1) that show the same scene."""
    box = lambda cut: torch.stack([cut[:, 0], cut[:, 1], 1 - cut[:, 2], 1 - cut[:, 3]], 1)  # noqa: E731
    return box(edges.clamp(min=0)), box((-edges).clamp(min=0))


def aligned_correlation(
    tables: torch.Tensor, index: torch.Tensor, edges: torch.Tensor, side: int = THUMB_SIDE
) -> torch.Tensor:
    """(P,) Pearson correlations of the two boxes' side x side thumbnails."""
    out = []
    for start in range(0, len(edges), CROP_CHUNK):
        part = slice(start, start + CROP_CHUNK)
        box_a, box_b = crop_boxes(edges[part])
        ta = box_thumbnails(tables, index[part, 0], box_a, side)
        tb = box_thumbnails(tables, index[part, 1], box_b, side)
        out.append((_unit(ta.flatten(1)) * _unit(tb.flatten(1))).sum(1))
    return torch.cat(out) if out else torch.zeros(0)


def detail_correlation(tables: torch.Tensor, index: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(P,) Pearson correlations of the aligned boxes' detail: their 32x32 thumbnails less each 2x2 block's mean
    (what a 16x16 thumbnail does not see)."""
    boxes = crop_boxes(edges)
    detail = []
    for k in (0, 1):
        fine = box_thumbnails(tables, index[:, k], boxes[k], 2 * THUMB_SIDE)
        coarse = torch.nn.functional.avg_pool2d(fine[:, None], 2)[:, 0]
        detail.append(_unit((fine - coarse.repeat_interleave(2, 1).repeat_interleave(2, 2)).flatten(1)))
    return (detail[0] * detail[1]).sum(1)


def area_tables(grey: torch.Tensor) -> torch.Tensor:
    """(N, H + 1, W + 1) float64 summed-area tables of (N, H, W) grey images (a zero row and column first)."""
    return torch.nn.functional.pad(grey.double().cumsum(1).cumsum(2), (1, 0, 1, 0))


def box_thumbnails(tables: torch.Tensor, which: torch.Tensor, boxes: torch.Tensor, side: int) -> torch.Tensor:
    """(P, side, side): each box (x0, y0, x1, y1 from 0 to 1) of image `which` (its `area_tables` row), shrunk
    by exact area averaging. The image is read as constant over each pixel, so its summed-area table is
    exactly bilinear between pixel corners: each cell is four bilinear reads, whatever the image's size."""
    height, width = tables.shape[1] - 1, tables.shape[2] - 1
    steps = torch.arange(side + 1, dtype=torch.float64) / side
    ys = (boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * steps) * height  # (P, side + 1) cell corners
    xs = (boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * steps) * width
    top, left = ys.floor().clamp(0, height - 1), xs.floor().clamp(0, width - 1)
    down, right = (ys - top)[:, :, None], (xs - left)[:, None, :]
    at = (which * tables[0].numel())[:, None, None] + (top.long() * (width + 1))[:, :, None] + left.long()[:, None, :]
    flat = tables.view(-1)
    upper = flat[at] * (1 - right) + flat[at + 1] * right
    lower = flat[at + width + 1] * (1 - right) + flat[at + width + 2] * right
    corners = upper * (1 - down) + lower * down  # (P, side + 1, side + 1): sums from the origin
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    area = (ys[:, 1:] - ys[:, :-1])[:, :, None] * (xs[:, 1:] - xs[:, :-1])[:, None, :]
    return (sums / area).float()


def _oriented(a: int, b: int, kind: str, similarity: float, splits: Sequence[str]) -> Pair:
    if splits[a] == "train" and splits[b] != "train":
        a, b = b, a  # a leak reads: this test image, its copy in train
    return Pair(a, b, kind, round(float(similarity), 6), splits[a] == splits[b])
