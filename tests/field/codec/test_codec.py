"""The codec: round trip within the budget, the .pxl format's checks, and deterministic decoding."""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.cli import app
from pixlearn.core.errors import ConfigError
from pixlearn.field import CompressConfig, compress, decompress
from pixlearn.field.codec.compression import decode_bytes, encode_pixels
from pixlearn.field.codec.container import MAGIC, MAX_GAUSSIANS, CodecFileError, GaussiansHeader, unpack


def _photo(height: int = 40, width: int = 56, channels: int = 3) -> np.ndarray:
    """A smooth picture with edges and a little texture: something between flat and noise."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(1)
    planes = [
        120 + 80 * np.sin(x / 7.0 + c) * np.cos(y / 9.0) + 40 * (x > width // 2) + rng.normal(0, 4, (height, width))
        for c in range(channels)
    ]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coded() -> tuple[bytes, np.ndarray]:
    pixels = _photo()
    data, _ = encode_pixels(pixels, 600, CompressConfig(kb=0.6, steps=4))
    return data, pixels


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / ((a.astype(float) - b) ** 2).mean()))


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_stays_within_the_budget_and_resembles_the_image(tmp_path: Path, channels: int) -> None:
    pixels = _photo(channels=channels)
    source = tmp_path / "in.png"
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(source)
    for bpp in (1.0, 3.0):
        info = compress(source, tmp_path / "x.pxl", CompressConfig(bpp=bpp, steps=3))
        size = (tmp_path / "x.pxl").stat().st_size
        assert size == info.bytes <= bpp * 40 * 56 / 8
        out = decompress(tmp_path / "x.pxl", tmp_path / "out.png").pixels
        assert out.shape == pixels.shape and out.dtype == np.uint8
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")).reshape(out.shape), out)
        assert abs(_psnr(out, pixels) - info.psnr) < 1e-9
    assert info.psnr > 30  # 3 bpp on a smooth picture


@pytest.mark.parametrize(("height", "width"), [(1, 1), (10, 12), (9, 33)])
def test_tiny_and_odd_sizes_round_trip(height: int, width: int) -> None:
    pixels = _photo(height, width)
    data, info = encode_pixels(pixels, 600, CompressConfig(kb=0.6, steps=2))
    assert len(data) <= 600 and decode_bytes(data, "x.pxl").shape == pixels.shape
    assert info["psnr"] > 25


def test_more_bytes_give_a_better_picture() -> None:
    pixels = _photo()
    low, high = (encode_pixels(pixels, n, CompressConfig(kb=1, steps=0))[1]["psnr"] for n in (250, 900))
    assert high > low + 3


def test_budgets_are_checked(tmp_path: Path) -> None:
    pixels = _photo(16, 16)
    with pytest.raises(ConfigError, match="below the smallest file"):
        encode_pixels(pixels, 20, CompressConfig(kb=0.02, steps=0))
    with pytest.raises(ConfigError, match="exactly one"):
        CompressConfig(bpp=1, kb=2).budget(16, 16)
    with pytest.raises(ConfigError, match="exactly one"):
        CompressConfig().budget(16, 16)
    with pytest.raises(ConfigError, match="bpp"):
        CompressConfig(bpp=-1).budget(16, 16)


def a_random_payload_decodes_safely(prefix: bytes, words: np.ndarray, shape: tuple[int, ...]) -> None:
    """Random words after a real header: some picture of the header's size, or a CodecFileError naming the file."""
    rng = np.random.default_rng(0)
    garbage = prefix + struct.pack("<I", len(words)) + rng.integers(0, 2**32, len(words), dtype=np.uint32).tobytes()
    try:
        assert decode_bytes(_resealed(garbage), "x.pxl").shape == shape  # never more, never a crash
    except CodecFileError as exc:
        assert "x.pxl" in str(exc)


def decoded_on(data: bytes, threads: int) -> np.ndarray:
    """The file decoded in this process with torch set to `threads` threads (restored after)."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        return decode_bytes(data, "x.pxl")
    finally:
        torch.set_num_threads(before)


def test_decoding_is_the_same_on_one_and_two_threads() -> None:
    # 192x256: each channel is over torch's grain size (32,768 values), so two threads do split the work
    data, _ = encode_pixels(_photo(192, 256), 6000, CompressConfig(kb=6, steps=0))
    one, two = (decoded_on(data, threads) for threads in (1, 2))
    assert np.array_equal(one, two)


@pytest.mark.slow
def test_decoded_png_is_the_same_bit_for_bit_in_fresh_processes(tmp_path: Path) -> None:
    pixels = _photo(192, 256)
    (tmp_path / "x.pxl").write_bytes(encode_pixels(pixels, 6000, CompressConfig(kb=6, steps=5))[0])
    digests = set()
    for threads in (1, 2):
        code = (
            f"import torch; torch.set_num_threads({threads}); from pixlearn.field import decompress; "
            f"decompress({str(tmp_path / 'x.pxl')!r}, {str(tmp_path / f'{threads}.png')!r})"
        )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
        digests.add(hashlib.sha256((tmp_path / f"{threads}.png").read_bytes()).hexdigest())
    assert len(digests) == 1


def _resealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def test_truncated_files_are_refused(coded: tuple[bytes, np.ndarray]) -> None:
    data, _ = coded
    for n in (0, 3, 5, 9, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecFileError, match="x.pxl: "):
            decode_bytes(data[:n], "x.pxl")


def test_wrong_magic_future_version_and_bad_checksum_are_named(coded: tuple[bytes, np.ndarray]) -> None:
    data, _ = coded
    with pytest.raises(CodecFileError, match="wrong magic"):
        decode_bytes(b"\x89PNG" + data[4:], "x.pxl")
    future = bytearray(data)
    future[len(MAGIC)] = 2
    with pytest.raises(CodecFileError, match="format version 2, but this pixlearn reads version 1"):
        decode_bytes(bytes(future), "x.pxl")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(CodecFileError, match="checksum mismatch"):
        decode_bytes(bytes(flipped), "x.pxl")


def _header(model: bytes, layout: str, *fields: int) -> bytes:
    """A file's start up to its model's header fields (sealed by `_resealed` with a payload after it)."""
    return MAGIC + bytes([1, len(model)]) + model + struct.pack(layout, *fields)


def _latent_header(width: int, height: int, channels: int, levels: int) -> bytes:
    return _header(b"latent-grid", "<HHBBBB", width, height, channels, levels, 1, 6)


def _gaussians_header(width: int, height: int, channels: int, count: int) -> bytes:
    return _header(b"gaussians", "<HHBI", width, height, channels, count)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (_latent_header(16384, 16384, 3, 7), "over the limit"),
        (_latent_header(0, 10, 3, 2), "outside 1..16,384"),
        (_latent_header(64, 64, 5, 3), "5 channels"),
        (_latent_header(64, 64, 3, 40), "40 levels"),
        (_gaussians_header(64, 64, 3, MAX_GAUSSIANS + 1), "Gaussians"),
        (_gaussians_header(16, 16, 3, 257), "no more than the pixels"),
        (_gaussians_header(64, 64, 3, 0), "Gaussians"),
        (_gaussians_header(64, 64, 4, 10), "4 channels"),
        (_gaussians_header(16384, 16384, 3, 10), "over the limit"),
    ],
)
def test_hostile_sizes_in_a_well_sealed_header_are_refused_before_allocating(header: bytes, reason: str) -> None:
    with pytest.raises(CodecFileError, match=reason):
        unpack(_resealed(header + b"\0" * 64), "x.pxl")


def test_an_unknown_model_name_is_refused() -> None:
    body = MAGIC + bytes([1, 7]) + b"splines" + b"\0" * 64
    with pytest.raises(CodecFileError, match="unknown model 'splines'"):
        unpack(_resealed(body), "x.pxl")


@pytest.fixture(scope="module")
def spots() -> tuple[bytes, dict, np.ndarray]:
    pixels = _photo()
    data, info = encode_pixels(pixels, 700, CompressConfig(kb=0.7, model="gaussians", fit_steps=60, steps=5))
    return data, info, pixels


def test_gaussians_round_trip_stays_within_the_budget_and_resembles_the_image(
    spots: tuple[bytes, dict, np.ndarray],
) -> None:
    data, info, pixels = spots
    header, _ = unpack(data, "x.pxl")
    assert isinstance(header, GaussiansHeader) and header.count == info["gaussians"] > 10
    assert len(data) == info["bytes"] <= 700
    out = decode_bytes(data, "x.pxl")
    assert out.shape == pixels.shape and abs(_psnr(out, pixels) - info["psnr"]) < 1e-9
    assert info["psnr"] > 20  # 2.5 bpp of Gaussians on a smooth picture


def test_truncated_and_damaged_gaussians_files_are_refused(spots: tuple[bytes, dict, np.ndarray]) -> None:
    data, _, _ = spots
    for n in (5, 16, 30, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecFileError, match="x.pxl: "):
            decode_bytes(data[:n], "x.pxl")
    header, words = unpack(data, "x.pxl")
    body = data[:-4]
    prefix = body[: len(body) - 4 * len(words) - 4]
    a_random_payload_decodes_safely(prefix, words, (40, 56, 3))


@pytest.mark.parametrize("guarded", [True, False])
def test_gaussians_decoding_is_the_same_on_one_and_two_threads(guarded: bool, monkeypatch) -> None:
    # 192x256, as the latent grids' test: the render's pairs are far over torch's grain size. Unguarded: the
    # decoder's own one-thread block taken away, so the render itself runs on the threads set here

    data, _ = encode_pixels(_photo(192, 256), 3000, CompressConfig(kb=3, model="gaussians", fit_steps=20, steps=0))
    if not guarded:
        from pixlearn.field.codec import gaussians as codec_gaussians

        monkeypatch.setattr(codec_gaussians, "thread_count", lambda n: contextlib.nullcontext())
    one, two = (decoded_on(data, threads) for threads in (1, 2))
    assert np.array_equal(one, two)


def test_a_gaussians_file_that_would_render_for_minutes_is_refused(monkeypatch) -> None:

    data, _ = encode_pixels(_photo(64, 64), 1500, CompressConfig(kb=1.5, model="gaussians", fit_steps=10, steps=0))
    assert decode_bytes(data, "x.pxl").shape == (64, 64, 3)  # the encoder's own file: ~30 pairs a pixel
    from pixlearn.field.codec import gaussians as codec_gaussians

    monkeypatch.setattr(codec_gaussians, "MAX_PAIRS_PER_PIXEL", 5)
    with pytest.raises(CodecFileError, match="evaluations a pixel"):
        decode_bytes(data, "x.pxl")


def test_gaussians_files_are_limited_to_their_pixel_budget() -> None:
    with pytest.raises(CodecFileError, match="pixel limit of a gaussians file"):
        unpack(_resealed(_gaussians_header(4096, 2048, 3, 10) + b"\0" * 64), "x.pxl")
    with pytest.raises(ConfigError, match="--lr and --lam"):
        encode_pixels(_photo(16, 16), 100, CompressConfig(kb=0.1, model="gaussians", lr=0.01))


def test_payloads_that_do_not_fit_the_header_are_refused(coded: tuple[bytes, np.ndarray]) -> None:
    data, _ = coded
    body = data[:-4]
    _, words = unpack(data, "x.pxl")
    prefix = body[: len(body) - 4 * len(words) - 4]
    longer = prefix + struct.pack("<I", len(words) + 1) + words.tobytes() + b"\1\0\0\0"
    with pytest.raises(CodecFileError, match="longer than its header|cannot be decoded"):
        decode_bytes(_resealed(longer), "x.pxl")
    wrong_count = prefix + struct.pack("<I", len(words) + 5) + words.tobytes()
    with pytest.raises(CodecFileError, match="does not match the file's size"):
        decode_bytes(_resealed(wrong_count), "x.pxl")
    a_random_payload_decodes_safely(prefix, words, (40, 56, 3))


def test_decompress_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(CodecFileError, match="missing.pxl"):
        decompress(tmp_path / "missing.pxl")
    with pytest.raises(CodecFileError, match="wrong magic"):
        (tmp_path / "a.pxl").write_bytes(b"hello world")
        decompress(tmp_path / "a.pxl")


def test_command_line_round_trip(tmp_path: Path) -> None:
    Image.fromarray(_photo()).save(tmp_path / "in.png")
    runner = CliRunner()
    result = runner.invoke(
        app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "x.pxl"), "--kb", "0.5", "--tune-steps", "2"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.pxl").stat().st_size <= 500
    result = runner.invoke(app, ["decompress", str(tmp_path / "x.pxl"), "-o", str(tmp_path / "out.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (56, 40)
    options = ["--model", "gaussians", "--fit-steps", "20", "--tune-steps", "0"]
    result = runner.invoke(
        app, ["compress", str(tmp_path / "in.png"), "-o", str(tmp_path / "g.pxl"), "--kb", "0.5", *options]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.pxl").stat().st_size <= 500 and unpack((tmp_path / "g.pxl").read_bytes(), "g")[
        0
    ].model == "gaussians"
    result = runner.invoke(app, ["decompress", str(tmp_path / "g.pxl"), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and Image.open(tmp_path / "g.png").size == (56, 40)
    assert "--model" in runner.invoke(app, ["compress", "--help"]).output
    (tmp_path / "bad.pxl").write_bytes(b"PXL\x1a\x07rest")
    result = runner.invoke(app, ["decompress", str(tmp_path / "bad.pxl"), "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 2 and "error:" in result.output and "format version 7" in result.output
