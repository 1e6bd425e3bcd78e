"""The `.pxl` file: a versioned container for one image coded by `pixlearn compress`.

Layout (little-endian; every byte counts towards the rate):

    magic      4s   b"PXL\\x1a"
    version    B    FORMAT_VERSION
    model      B + ascii   the registered model's name: `latent-grid` or `gaussians`
    latent-grid:
        width  H, height H, channels B (1 grey, 3 colour)
        levels B, chroma_from B, buckets B
        per level (finest first), per channel it holds: a channel code (below, `buckets` scales)
    gaussians:
        width  H, height H, channels B, count I (Gaussians)
        per coded row (5 + channels, `codec_gaussians.rows`): a channel code (one scale)
        background e*channels   the background colour (float16)
    a channel code:
        maxabs H    largest |symbol|; 0: the channel is all zeros and not coded
        step   e    quantisation step (float16), when maxabs > 0
        scales B*buckets   Laplace scale of each context bucket (an index into SCALE_TABLE)
    words      I    length of the entropy-coded payload in 32-bit words, then the words
    crc32      I    zlib CRC-32 of every byte before it

Both models share version 1: the latent-grid layout is the one version 1 always had, and the model's
name, which that layout already carried, says which follows (a reader without `gaussians` refuses the
file by that name).

Reading checks the magic, the version, the checksum, and every size against the limits below
before anything is allocated, so a damaged or hostile file is refused with its name and the reason;
the pixels a file declares are bounded by its size too (`max_pixels`), so a decoder's work
is bounded by the bytes it was given, and a file of a few hundred bytes decodes in a moment.

    >>> header = CodecHeader("latent-grid", 8, 4, 1, 2, 1, 2, (ChannelCode(0), ChannelCode(3, 0.5, (100, 120))))
    >>> data = pack(header, np.array([7, 9], dtype=np.uint32))
    >>> unpack(data, "x.pxl")[0] == header, len(data)
    (True, 49)
    >>> spots = GaussiansHeader(GAUSSIANS, 8, 4, 1, 2, (ChannelCode(1, 0.25, (9,)),) * 6, (0.5,))
    >>> unpack(pack(spots, np.array([3], dtype=np.uint32)), "x.pxl")[0] == spots
    True
    >>> unpack(data[:-1], "x.pxl")
    Traceback (most recent call last):
    ...
    pixlearn.field.codec.container.CodecFileError: x.pxl: damaged or truncated file (checksum mismatch)
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from pixlearn.core.errors import ConfigError, ImageError
from pixlearn.models.latent_grids import MAX_LEVELS, level_channels

MAGIC = b"PXL\x1a"
FORMAT_VERSION = 1
LATENT_GRID, GAUSSIANS = "latent-grid", "gaussians"  # the models a file may name
MAX_SIDE = 16_384
MAX_PIXELS = 2**24  # 16.8 megapixels: decoding holds a few float64 copies of the image (~1.6 GB at the limit)
MAX_FILE_BYTES = 2**28
MAX_SYMBOL = 2**15
MAX_BUCKETS = 16
# 32,768 Gaussians (a 512x512 photo at 1 bpp starts from about 6,500): codec_gaussians.max_sigma_for keeps a
# Gaussian's 3-sigma box within 13x18 cells of the model's tiling, so a hostile file's largest Gaussians
# fill at most ~7.7 M cell-table entries (~0.5 GB of int64 temporaries while it is built)
MAX_GAUSSIANS = 2**15
# a gaussians file's image: its render evaluates ~30 (pixel, Gaussian) pairs a pixel, at most
# codec_gaussians.MAX_PAIRS_PER_PIXEL, on one thread in float64, so the pixel count bounds a decode's
# time, a crafted file's included (bench/README.md, "The gaussians codec's decoder")
MAX_GAUSSIAN_PIXELS = 2**22
# A file's pixels: FREE_PIXELS for any file, and MAX_PIXELS_PER_BYTE more per byte of the file. A
# decoder's work grows with the pixels (every grid cell is decoded and the whole image synthesised, or
# every pixel rendered), while a few header bytes can claim millions of them, coded in next to no bits:
# bounded by the file's size, a crafted file costs no more than an honest one of its size (a 100-byte
# file at most 274,944 pixels, decoded in a moment). The free pixels let a flat image up to 512x512,
# which codes into a few dozen bytes, be stored. `compress` refuses budgets under the bound (beyond the
# free pixels, 8 / 128 = 0.0625 bits a pixel), so every file it writes decodes.
FREE_PIXELS = 2**18
MAX_PIXELS_PER_BYTE = 128
# Laplace scales in quantisation steps, 2^-6 ... 2^10: the index is stored, the float is the same table
# on both sides, so encoder and decoder build the same integer probability tables.
SCALE_TABLE = np.exp2(np.arange(256, dtype=np.float64) / 16.0 - 6.0)


class CodecFileError(ImageError):
    """A `.pxl` file that cannot be decoded; the message names the file and the reason."""


@dataclass(frozen=True)
class ChannelCode:
    """How one channel of one level is coded."""

    maxabs: int  # largest |symbol|; 0 = all zeros, nothing coded
    step: float = 0.0  # quantisation step, a float16 value
    scales: tuple[int, ...] = ()  # SCALE_TABLE index per context bucket


@dataclass(frozen=True)
class CodecHeader:
    model: str
    width: int
    height: int
    channels: int
    levels: int
    chroma_from: int
    buckets: int
    codes: tuple[ChannelCode, ...]  # level 0 first, each level's channels in order


@dataclass(frozen=True)
class GaussiansHeader:
    model: str  # GAUSSIANS
    width: int
    height: int
    channels: int
    count: int  # Gaussians
    codes: tuple[ChannelCode, ...]  # one per coded row, each with one scale
    background: tuple[float, ...]  # float16 values, one per channel


def pack(header: CodecHeader | GaussiansHeader, words: np.ndarray) -> bytes:
    """The file's bytes: header, payload and checksum."""
    name = header.model.encode("ascii")
    out = [MAGIC, struct.pack("<BB", FORMAT_VERSION, len(name)), name]
    if isinstance(header, GaussiansHeader):
        out.append(struct.pack("<HHBI", header.width, header.height, header.channels, header.count))
    else:
        out.append(struct.pack("<HHBBBB", header.width, header.height, header.channels, header.levels,
                               header.chroma_from, header.buckets))  # fmt: skip
    for code in header.codes:
        out.append(struct.pack("<H", code.maxabs))
        if code.maxabs:
            out.append(struct.pack("<e", code.step) + bytes(code.scales))
    if isinstance(header, GaussiansHeader):
        out.append(struct.pack(f"<{header.channels}e", *header.background))
    out.append(struct.pack("<I", len(words)) + np.asarray(words, dtype="<u4").tobytes())
    body = b"".join(out)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise CodecFileError(self.source, "truncated file (the header ends early)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise CodecFileError(self.source, "truncated file (the header ends early)")
        self.pos += size
        return self.data[self.pos - size : self.pos]


def unpack(data: bytes, source: str) -> tuple[CodecHeader | GaussiansHeader, np.ndarray]:
    """Check and parse a file's bytes: its header and the payload's 32-bit words."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise CodecFileError(source, "not a pixlearn .pxl file (wrong magic bytes)")
    if data[len(MAGIC)] != FORMAT_VERSION:
        raise CodecFileError(
            source, f"format version {data[len(MAGIC)]}, but this pixlearn reads version {FORMAT_VERSION}"
        )
    if len(data) < 10 or zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise CodecFileError(source, "damaged or truncated file (checksum mismatch)")
    reader = _Reader(data[:-4], source)
    reader.pos = len(MAGIC) + 1  # magic and version, checked above
    header = _read_header(reader, source)
    problem = work_problem(header.width, header.height, len(data))
    if problem:
        raise CodecFileError(source, problem)
    (count,) = reader.take("<I")
    if count * 4 != len(reader.data) - reader.pos:
        raise CodecFileError(source, f"payload of {count:,} words does not match the file's size")
    return header, np.frombuffer(reader.raw(count * 4), dtype="<u4").astype(np.uint32)


def _read_header(reader: _Reader, source: str) -> CodecHeader | GaussiansHeader:
    (length,) = reader.take("<B")
    model = reader.raw(length).decode("ascii", errors="replace")
    if model == GAUSSIANS:
        return _read_gaussians_header(reader, source)
    if model != LATENT_GRID:
        raise CodecFileError(
            source, f"unknown model {model!r} (this pixlearn decodes {LATENT_GRID!r} and {GAUSSIANS!r})"
        )
    width, height, channels, levels, chroma_from, buckets = reader.take("<HHBBBB")
    problem = size_problem(width, height, channels, levels, chroma_from, buckets)
    if problem:
        raise CodecFileError(source, problem)
    codes = _read_codes(reader, source, sum(level_channels(channels, levels, chroma_from)), buckets)
    return CodecHeader(model, width, height, channels, levels, chroma_from, buckets, codes)


def _read_gaussians_header(reader: _Reader, source: str) -> GaussiansHeader:
    width, height, channels, count = reader.take("<HHBI")
    problem = size_problem(width, height, channels, 1, 0, 1)
    if problem is None and width * height > MAX_GAUSSIAN_PIXELS:
        problem = f"{width}x{height} is over the {MAX_GAUSSIAN_PIXELS:,}-pixel limit of a gaussians file"
    if problem is None and not 1 <= count <= min(MAX_GAUSSIANS, width * height):
        problem = f"{count:,} Gaussians (1 to {MAX_GAUSSIANS:,}, and no more than the pixels, are allowed)"
    if problem:
        raise CodecFileError(source, problem)
    codes = _read_codes(reader, source, 5 + channels, 1)
    background = reader.take(f"<{channels}e")
    if not all(np.isfinite(background)):
        raise CodecFileError(source, f"background colour {background} is not finite")
    return GaussiansHeader(GAUSSIANS, width, height, channels, count, codes, tuple(float(b) for b in background))


def _read_codes(reader: _Reader, source: str, count: int, buckets: int) -> tuple[ChannelCode, ...]:
    codes = []
    for _ in range(count):
        (maxabs,) = reader.take("<H")
        if maxabs == 0:
            codes.append(ChannelCode(0))
            continue
        if maxabs > MAX_SYMBOL:
            raise CodecFileError(source, f"symbol range {maxabs:,} is over the limit of {MAX_SYMBOL:,}")
        (step,) = reader.take("<e")
        if not (np.isfinite(step) and step > 0):
            raise CodecFileError(source, f"quantisation step {step} is not a positive number")
        codes.append(ChannelCode(maxabs, float(step), tuple(reader.raw(buckets))))
    return tuple(codes)


def size_problem(width: int, height: int, channels: int, levels: int, chroma_from: int, buckets: int) -> str | None:
    """Why a header's sizes are outside the sane limits, or None."""
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        return f"image size {width}x{height} is outside 1..{MAX_SIDE:,} pixels a side"
    if width * height > MAX_PIXELS:
        return f"image of {width * height:,} pixels is over the limit of {MAX_PIXELS:,}"
    if channels not in (1, 3):
        return f"{channels} channels (1 grey or 3 colour are allowed)"
    if not 1 <= levels <= MAX_LEVELS or 2 ** (levels - 1) > 2 * max(width, height):
        return f"{levels} levels for a {width}x{height} image"
    if chroma_from >= levels or not 1 <= buckets <= MAX_BUCKETS:
        return f"chroma_from {chroma_from} and {buckets} context buckets are out of range"
    return None


def refused_when_read(exc: CodecFileError) -> ConfigError:
    """An encoder's own file that a reader refuses (the image needs more bytes than the budget gives for
    a decoder's work to stay bounded), as the person's error: the budget is too small."""
    return ConfigError(
        f"its .pxl file would be refused when read ({exc.reason}): the budget (--bpp, --kb) is too small for "
        "this image, or the image is so nearly flat that it codes into fewer bytes than its size needs"
    )


def max_pixels(size: int) -> int:
    """The most pixels a file of `size` bytes may declare (FREE_PIXELS, MAX_PIXELS_PER_BYTE)."""
    return FREE_PIXELS + MAX_PIXELS_PER_BYTE * size


def min_file_bytes(width: int, height: int) -> int:
    """The smallest file a `width` x `height` image may have (`max_pixels`)."""
    return max(0, -(-(width * height - FREE_PIXELS) // MAX_PIXELS_PER_BYTE))


def work_problem(width: int, height: int, size: int) -> str | None:
    """Why a file of `size` bytes may not declare a `width` x `height` image, or None.

    >>> work_problem(4096, 4096, 89)[:66]
    '4096x4096 pixels from a file of 89 bytes: more than the 273,536 it'
    >>> work_problem(512, 512, 32) is None
    True
    """
    if width * height > max_pixels(size):
        return (
            f"{width}x{height} pixels from a file of {size:,} bytes: more than the {max_pixels(size):,} it may "
            f"declare ({FREE_PIXELS:,} and {MAX_PIXELS_PER_BYTE} a byte: a decoder's work is bounded by its size)"
        )
    return None


def file_figures(data: bytes, width: int, height: int) -> dict[str, float]:
    """A file's size as `compress` reports it: bytes on disk and bits per pixel counted from them."""
    return {"bytes": len(data), "bpp": len(data) * 8 / (width * height)}
