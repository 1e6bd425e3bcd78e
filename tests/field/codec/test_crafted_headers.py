"""Crafted .pxl files whose header makes decoding slow: a few bytes claiming millions of pixels (coded
in next to no bits) or thousands of Gaussians piled on one spot. The work a file may ask for is bounded
by its size (container.MAX_PIXELS_PER_BYTE, gaussians.MAX_PAIRS_PER_BYTE), so such a file is refused
before anything is allocated, a file of under 1 KB decodes in a moment, and `compress` never writes a
file its own decoder would refuse.
"""

from __future__ import annotations

import math
import struct
import time
import zlib

import numpy as np
import pytest

from pixlearn.core.errors import ConfigError
from pixlearn.field.codec import gaussians as codec_gaussians
from pixlearn.field.codec.compression import CompressConfig, decode_bytes, encode_pixels
from pixlearn.field.codec.container import MAGIC, CodecFileError, max_pixels, min_file_bytes
from pixlearn.models.latent_grids import level_channels
from tests.hostile import tried

# A guard against the slow decodes these files gave (24-59 s), not a speed figure: refusing one is
# immediate, and a file of under 1 KB that is decoded takes a fraction of this even on a loaded machine.
DECODE_GUARD_S = 2.0

ZERO, CODED = (0, 0.0, ()), (32768, 1.0, (0,))  # a channel of zeros (nothing coded); one coded at the finest scale


def sealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def codes(rows: list[tuple[int, float, tuple[int, ...]]]) -> bytes:
    out = b""
    for maxabs, step, scales in rows:
        out += struct.pack("<H", maxabs) + (struct.pack("<e", step) + bytes(scales) if maxabs else b"")
    return out


def latent_file(width: int, height: int, channels: int, code: tuple, payload: bytes = b"") -> bytes:
    levels = min(12, 1 + round(math.log2(max(min(width, height), 8) / 8)))
    chroma_from = min(1, levels - 1)
    rows = [code] * sum(level_channels(channels, levels, chroma_from))
    head = struct.pack("<HHBBBB", width, height, channels, levels, chroma_from, 1)
    body = MAGIC + bytes([1, 11]) + b"latent-grid" + head + codes(rows)
    return sealed(body + struct.pack("<I", len(payload) // 4) + payload)


def gaussians_file(width: int, height: int, count: int, code: tuple, payload: bytes = b"") -> bytes:
    head = struct.pack("<HHBI", width, height, 3, count)
    body = MAGIC + bytes([1, 9]) + b"gaussians" + head + codes([code] * 8) + struct.pack("<3e", 0.5, 0.5, 0.5)
    return sealed(body + struct.pack("<I", len(payload) // 4) + payload)


# A payload of zero words that ends in a non-zero one (as an ANS stream must): decoded at the finest
# scale it gives millions of symbols, every Gaussian at the same spot.
ENDED = b"\0\0\0\0" * 3 + b"\1\0\0\0"

CRAFTED = {
    "latent-grid 4096x4096, nothing coded": latent_file(4096, 4096, 3, ZERO),
    "latent-grid 4096x4096, every grid coded": latent_file(4096, 4096, 3, CODED, ENDED),
    "latent-grid 16384x1024, every grid coded": latent_file(16384, 1024, 3, CODED, ENDED),
    "latent-grid 2048x2048 grey, every grid coded": latent_file(2048, 2048, 1, CODED, ENDED),
    "gaussians 2048x2048, 32768 piled up": gaussians_file(2048, 2048, 32768, ZERO),
    "gaussians 2048x2048, 32768 coded": gaussians_file(2048, 2048, 32768, CODED, ENDED),
    "gaussians 2048x2048, one": gaussians_file(2048, 2048, 1, ZERO),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_few_bytes_claiming_a_large_image_are_refused_at_once(name: str) -> None:
    data = CRAFTED[name]
    assert len(data) < 600
    started = time.perf_counter()
    with pytest.raises(CodecFileError, match=f"x.pxl: .* pixels from a file of {len(data)} bytes: more than"):
        decode_bytes(data, "x.pxl")
    assert time.perf_counter() - started < DECODE_GUARD_S
    tried("crafted .pxl headers")


def padded(make, size: int) -> bytes:
    """The file `make(payload)` with zero words added until it is at least `size` bytes (ending as ANS must)."""
    words = max(1, -(-(size - len(make(b""))) // 4) + 1)
    return make(b"\0\0\0\0" * (words - 1) + b"\1\0\0\0")


def at_the_bound(size: int) -> dict[str, bytes]:
    """Files of about `size` bytes that claim as many pixels as that size allows, coded to cost the most."""
    side = math.isqrt(max_pixels(size))
    width, height = side, max_pixels(size) // side
    return {
        f"latent-grid {width}x{height} colour": padded(lambda p: latent_file(width, height, 3, CODED, p), size),
        f"latent-grid {width}x{height} grey": padded(lambda p: latent_file(width, height, 1, CODED, p), size),
        f"gaussians {width}x{height} piled up": padded(
            lambda p: gaussians_file(width, height, min(32768, width * height), CODED, p), size
        ),
    }


@pytest.mark.parametrize("size", [100, 400, 1000])
def test_a_file_under_1_kb_is_decoded_or_refused_in_a_moment(size: int) -> None:
    for name, data in at_the_bound(size).items():
        started = time.perf_counter()
        try:
            decode_bytes(data, "x.pxl")
        except CodecFileError as exc:
            assert str(exc).startswith("x.pxl: "), exc
        assert time.perf_counter() - started < DECODE_GUARD_S, name
    tried("crafted .pxl headers", 3)


def test_compress_refuses_a_budget_under_the_smallest_file_the_image_may_have() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (512, 1024, 3), dtype=np.uint8)
    smallest = min_file_bytes(1024, 512)
    assert smallest == (512 * 1024 - 2**18) // 128  # beyond the free pixels, 128 a byte
    with pytest.raises(ConfigError, match=f"under the {smallest:,} a 1024x512 image needs"):
        encode_pixels(pixels, smallest - 1, CompressConfig(kb=2, steps=0))
    pixels = pixels[:64, :96]
    with pytest.raises(ConfigError, match="--model gaussians needs a budget of at least 0.25 bits a pixel"):
        encode_pixels(pixels, 150, CompressConfig(kb=0.15, model="gaussians", fit_steps=5, steps=0))


def test_compress_never_writes_a_file_its_decoder_refuses() -> None:
    # a flat image codes into a few dozen bytes, whatever the budget: stored up to the free pixels (512x512),
    # refused beyond them, since its file would be under what its pixels need
    flat = np.full((512, 512, 1), 128, dtype=np.uint8)
    data, _ = encode_pixels(flat, 8192, CompressConfig(kb=8.192, steps=0))
    assert len(data) < 200 and np.array_equal(decode_bytes(data, "x.pxl"), flat)
    with pytest.raises(ConfigError, match="nearly flat"):
        encode_pixels(np.full((1024, 1024, 1), 128, dtype=np.uint8), 65536, CompressConfig(kb=65.536, steps=0))
    # an ordinary picture at the smallest budget allowed decodes, and gaussians at their smallest rate too
    y, x = np.mgrid[0:512, 0:1024]
    wide = np.clip(np.stack([x + y, 120 + 60 * np.sin(x / 5.0), 200 - y / 3], -1), 0, 255).astype(np.uint8)
    data, _ = encode_pixels(wide, min_file_bytes(1024, 512) + 40, CompressConfig(kb=4, steps=0))
    assert decode_bytes(data, "x.pxl").shape == wide.shape
    picture = wide[:64, :96]
    budget = math.ceil(codec_gaussians.MIN_BPP * 64 * 96 / 8)
    data, _ = encode_pixels(picture, budget, CompressConfig(kb=1, model="gaussians", fit_steps=20, steps=2))
    assert decode_bytes(data, "x.pxl").shape == picture.shape
