"""`pixlearn compress` / `decompress`: an image as a quantised, entropy-coded `latent-grid` field.

Encoding: the latent pyramid starts from the image's own Laplacian pyramid (exact). One step size per
level and channel, each a global step over the root of that grid's gain on the image (so a rounding
error costs the same wherever it falls), is found by bisection: the finest whose file fits the budget,
for each of a few dead zones (rate-distortion optimised rounding, cheaply); the best PSNR wins. Then
quantisation-aware fine-tuning (straight-through rounding) lowers squared error + lambda * bits, the
bits from the coder's own context model, lambda steered so the estimate meets the budget; the tuned
file is trimmed (a widening dead zone, then coarser steps) until it fits and is kept only when it
beats the untuned one. The budget counts every byte of the file. Decoding is float64 arithmetic whose
results do not depend on the thread count, rounded to 8 bits: a file always gives the same pixels.

`CompressConfig(model="gaussians")` (`--model gaussians`) codes 2D Gaussians instead: codec_gaussians.py.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> picture = (np.add.outer(np.arange(32), np.arange(48)) * 2 + rng.integers(0, 9, (32, 48)))[..., None]
    >>> data, info = encode_pixels(picture.astype(np.uint8), 400, CompressConfig(kb=0.4, steps=5))
    >>> len(data) <= 400, info["psnr"] > 30
    (True, True)
    >>> np.array_equal(decode_bytes(data, "x.pxl"), decode_bytes(data, "x.pxl"))
    True
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pixlearn.core.devices import choose_threads, thread_count
from pixlearn.core.errors import ConfigError
from pixlearn.core.optim import Adam
from pixlearn.core.options import Color, check_options, color_option, option, threads_option
from pixlearn.core.progress import SILENT, Progress, make_progress
from pixlearn.core.schedules import warmup_cosine
from pixlearn.core.storage.files import check_output, open_data_file
from pixlearn.field.codec.container import (
    FREE_PIXELS,
    GAUSSIANS,
    LATENT_GRID,
    MAX_FILE_BYTES,
    MAX_PIXELS_PER_BYTE,
    CodecFileError,
    CodecHeader,
    GaussiansHeader,
    file_figures,
    min_file_bytes,
    pack,
    refused_when_read,
    unpack,
)
from pixlearn.field.codec.entropy import context_of, decode, encode, finest_step, fit_codes, rate_bits
from pixlearn.field.codec.gaussians import decode_gaussians, encode_gaussians
from pixlearn.field.image import ImageResult
from pixlearn.field.metrics import decoded_psnr
from pixlearn.models.latent_grids import LatentGrids
from pixlearn.models.registry import create_model

RATE, ENCODER = "Rate (one of)", "Encoder"
BUCKETS = 6  # context buckets per grid: parent activity 0, 1, 2-3, 4-7, 8-15, 16+
COARSEST = 8  # levels stop when the coarsest grid is about this many cells a side
MAX_BPP = 32.0  # a .pxl file codes grey or RGB: above its 24 raw bits a pixel, a larger budget buys nothing


@dataclass
class CompressConfig:
    """The options of `compress`."""

    model: Literal["latent-grid", "gaussians"] = option(
        LATENT_GRID,
        "The field coded: latent-grid (the default, and the better codec: a Laplacian pyramid of latents, "
        "closed-form start) or gaussians (2D Gaussians fitted to the image; 2.7-4.6 dB below it on astronaut "
        "at 0.5 and 1.0 bpp, bench/README.md).",
        panel=ENCODER,
    )
    bpp: float | None = option(
        None,
        "Largest size in bits per pixel, from the file's bytes on disk (header included).",
        panel=RATE,
        above=0,
        maximum=MAX_BPP,
    )
    kb: float | None = option(
        None,
        "Largest size in kilobytes (1,000 bytes) instead of --bpp.",
        panel=RATE,
        above=0,
        maximum=MAX_FILE_BYTES / 1000,
    )
    # --tune-steps: every verb's --steps is the fit's optimiser steps; these tune an already coded field
    steps: int = option(
        60,
        "Quantisation-aware fine-tuning steps (0: none, the analytic pyramid or fitted Gaussians as they are).",
        panel=ENCODER,
        minimum=0,
        flag="--tune-steps",
    )
    fit_steps: int = option(
        1000, "Fitting steps of the gaussians model (latent-grid starts in closed form).", panel=ENCODER, minimum=1
    )
    lr: float = option(
        0.004,
        "Adam learning rate of the fine-tuning, in quantisation steps (latent-grid only).",
        panel=ENCODER,
        above=0,
    )
    lam: float = option(
        0.5,
        "Starting rate weight of the fine-tuning (then steered to the budget), times 2 ln 2 step^2 / 12 "
        "(latent-grid only).",
        panel=ENCODER,
        above=0,
    )
    color: Color = color_option(alpha=False)  # a .pxl file holds grey or RGB
    threads: int = threads_option()

    def check(self) -> CompressConfig:
        """The config itself once every option is valid, else ConfigError."""
        check_options(self)
        if (self.bpp is None) == (self.kb is None):
            raise ConfigError("give exactly one of bpp (--bpp) and kb (--kb)")
        return self

    def budget(self, width: int, height: int) -> int:
        """The largest file in bytes."""
        self.check()
        return math.floor(self.bpp * width * height / 8) if self.bpp is not None else math.floor(self.kb * 1000)


def _levels(width: int, height: int) -> int:
    return max(1, 1 + round(math.log2(max(min(width, height), COARSEST) / COARSEST)))


def _model(width: int, height: int, channels: int, levels: int, chroma_from: int | None = None) -> LatentGrids:
    chroma_from = min(1, levels - 1) if chroma_from is None else chroma_from  # one level: chroma at full size
    kwargs = {"width": width, "height": height, "levels": levels, "chroma_from": chroma_from}
    return create_model(LATENT_GRID, "field", out_features=channels, **kwargs)


def _gains(model: LatentGrids) -> list[list[float]]:
    """Energy on the image of one unit in the middle of each grid: a rounding error there costs this much."""
    gains = []
    with torch.no_grad():
        for level, grid in enumerate(model.latents):
            row = []
            for channel in range(grid.shape[1]):
                grids = [torch.zeros_like(g) for g in model.latents]
                grids[level][0, channel, grid.shape[2] // 2, grid.shape[3] // 2] = 1.0
                row.append(float(((model.image(grids) - 0.5) ** 2).sum()))
            gains.append(row)
    return gains


class _Coder:
    """Quantises the model's latents at a global step and sizes the resulting file."""

    def __init__(self, model: LatentGrids, deadzone: float = 0.0):
        self.model, self.gains, self.deadzone = model, _gains(model), deadzone

    def steps(self, delta: float) -> list[np.ndarray]:
        # float16, as stored: the encoder quantises with exactly the steps the decoder reads
        return [
            np.array([max(delta / math.sqrt(g), 2**-24) for g in row], dtype=np.float16).astype(np.float64)
            for row in self.gains
        ]

    def quantise(self, delta: float) -> list[np.ndarray]:
        """Integers of every grid: rounding with a dead zone of `self.deadzone` steps either side of
        the half, which drops costly small values (rate-distortion optimised quantisation, cheaply)."""
        out = []
        for grid, steps in zip(self.model.latents, self.steps(delta), strict=True):
            x = np.abs(grid.detach()[0].double().numpy()) / steps[:, None, None]
            magnitude = np.floor(np.maximum(x + 0.5 - self.deadzone, 0))
            out.append(np.clip(np.sign(grid.detach()[0].numpy()) * magnitude, -32767, 32767).astype(np.int64))
        return out

    def file(self, delta: float, search: int = 64) -> bytes:
        q, steps = self.quantise(delta), self.steps(delta)
        codes = fit_codes(q, _flat(steps), BUCKETS, search)
        m = self.model
        header = CodecHeader(LATENT_GRID, m.width, m.height, m.channels, m.levels, m.chroma_from, BUCKETS, tuple(codes))
        return pack(header, encode(q, codes, BUCKETS))

    def search(self, budget: int, low: float = 2**-14, high: float = 2.0**12) -> float:
        """The smallest global step whose file fits `budget` bytes."""
        return finest_step(lambda delta: len(self.file(delta)), budget, low, high)


def _flat(steps: list[np.ndarray]) -> list[float]:
    return [float(s) for row in steps for s in row]


def _finetune(model: LatentGrids, target: torch.Tensor, coder: _Coder, delta: float, bits_wanted: float,
              config: CompressConfig, progress: Progress = SILENT) -> None:  # fmt: skip
    """Quantisation-aware rate-distortion tuning of the latents at step `delta`, in units of their steps:
    straight-through rounding (the rounded values are what is coded), the rate from the coder's own
    Laplace contexts, and lambda steered every 5 steps so the estimated bits meet `bits_wanted`. Each
    group's rate follows the one schedule (`core.schedules`): a half cosine down to 5% of --lr."""
    steps = coder.steps(delta)
    scale = [torch.tensor(s, dtype=torch.float32)[None, :, None, None] for s in steps]
    u = [torch.nn.Parameter(g.detach() / s) for g, s in zip(model.latents, scale, strict=True)]
    codes = fit_codes(coder.quantise(delta), _flat(steps), BUCKETS)  # the proxy starts with the coder's scales
    start = [[i / 16 - 6 for i in c.scales] if c.maxabs else [-6.0] * BUCKETS for c in codes]
    log_scales = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
    opt = Adam([{"params": u}, {"params": [log_scales], "lr": 0.02}], lr=config.lr)  # core.optim
    peaks, low = [g["lr"] for g in opt.param_groups], config.lr * 0.05  # both groups end at 5% of --lr
    lam = config.lam * 2 * math.log(2) * delta**2 / 12  # the high-rate slope of distortion per bit
    progress.task("fine-tune", config.steps)
    for step in range(config.steps):
        for group, peak in zip(opt.param_groups, peaks, strict=True):
            group["lr"] = warmup_cosine(step, max(config.steps, 1), peak, floor=low / peak)
        qs = [x + (x.round() - x).detach() for x in u]
        sse = ((model.image([q * s for q, s in zip(qs, scale, strict=True)]) - target) ** 2).sum()
        if step % 10 == 0:  # contexts move slowly; recounting them every step would double its cost
            contexts = _contexts(u)
        bits = sum(rate_bits(q[0, c], contexts[row], log_scales[row]) for row, (q, c) in enumerate(_channels(qs)))
        if step % 5 == 0:
            lam *= min(2.0, max(0.5, (bits.item() / bits_wanted) ** 4))
        opt.zero_grad()
        (sse + lam * bits).backward()
        opt.step()
        progress.advance(1)
    with torch.no_grad():
        for g, x, s in zip(model.latents, u, scale, strict=True):
            g.copy_(x * s)  # unrounded: a dead zone can still trim the rate without undoing the tuning


DEADZONES = (0.0, 0.15, 0.3)  # tried in turn; the best PSNR wins (0.15-0.3 usually, by 0.2-0.5 dB)


def _best_fit(coder: _Coder, budget: int, pixels: np.ndarray) -> tuple[bytes, float, float]:
    """(file, PSNR) of the best dead zone, each at its finest step that fits `budget`, and the step
    found without a dead zone (where fine-tuning starts)."""
    best, plain_step = None, 0.0
    for deadzone in DEADZONES:
        coder.deadzone = deadzone
        step = coder.search(budget)
        plain_step = step if deadzone == 0.0 else plain_step
        data = coder.file(step)
        psnr = decoded_psnr(_read_back(data), pixels)  # the file as a reader decodes it
        if best is None or psnr > best[1]:
            best = (data, psnr)
    return best[0], best[1], plain_step


def _read_back(data: bytes) -> np.ndarray:
    """The encoder's own file decoded as a reader decodes it; one a reader refuses is the budget's fault
    (a nearly flat image coded into fewer bytes than its pixels need: `container.refused_when_read`)."""
    try:
        return decode_bytes(data, "<encoded>")
    except CodecFileError as exc:
        raise refused_when_read(exc) from None


def _channels(grids: list[torch.Tensor]) -> list[tuple[torch.Tensor, int]]:
    return [(g, c) for g in grids for c in range(g.shape[1])]


def _contexts(u: list[torch.Tensor]) -> list[torch.Tensor]:
    return [
        context_of(u[level][0, c], u[level + 1][0, c] if level + 1 < len(u) else None, BUCKETS)
        for level in range(len(u))
        for c in range(u[level].shape[1])
    ]


def _trimmed(coder: _Coder, delta: float, budget: int) -> bytes | None:
    """The tuned latents' file at `delta`, down in quality until it fits: first a widening dead zone
    (drops the values tuning left nearest the rounding edge), then coarser steps."""
    for deadzone in np.arange(0, 0.5, 0.025):
        coder.deadzone = float(deadzone)
        data = coder.file(delta)
        if len(data) <= budget:
            return data
    try:  # then the finest coarser step that fits, by the same bisection as the untuned file's
        return coder.file(coder.search(budget, low=delta))
    except ConfigError:  # not even the coarsest step fits the tuned latents: the untuned file stays
        return None


def encode_pixels(
    pixels: np.ndarray, budget: int, config: CompressConfig, progress: Progress = SILENT
) -> tuple[bytes, dict[str, Any]]:
    """A .pxl file of at most `budget` bytes for a (H, W, C) uint8 image, and figures about it (`progress`
    follows the fitting and fine-tuning steps)."""
    smallest = min_file_bytes(pixels.shape[1], pixels.shape[0])
    if budget < smallest:
        raise ConfigError(
            f"a budget of {budget:,} bytes is under the {smallest:,} a {pixels.shape[1]}x{pixels.shape[0]} image "
            f"needs: beyond its first {FREE_PIXELS:,} pixels, a .pxl file holds at most {MAX_PIXELS_PER_BYTE} pixels a "
            f"byte ({8 / MAX_PIXELS_PER_BYTE:g} bits a pixel), so that decoding any file is bounded by its size"
        )
    if config.model == GAUSSIANS:
        defaults = CompressConfig()
        if (config.lr, config.lam) != (defaults.lr, defaults.lam):
            raise ConfigError("--lr and --lam tune the latent-grid model's fine-tuning; --model gaussians has its own")
        return encode_gaussians(pixels, budget, config.fit_steps, config.steps, progress)
    start = time.perf_counter()
    height, width, channels = pixels.shape
    target = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float() / 255
    model = _model(width, height, channels, _levels(width, height))
    model.analyse(target)
    coder = _Coder(model)
    data, psnr, start_delta = _best_fit(coder, budget, pixels)
    analytic_psnr = psnr
    if config.steps:
        coder.deadzone = 0.0  # tuning learns its own dead zone, from the step found without one
        overhead = len(data) - 4 * len(unpack(data, "<encoded>")[1])
        _finetune(model, target, coder, start_delta, (budget - overhead - 8) * 8, config, progress)
        tuned = _trimmed(coder, start_delta, budget)
        try:
            tuned_psnr = decoded_psnr(_read_back(tuned), pixels) if tuned is not None else -math.inf
        except ConfigError:  # a tuned file too small for its pixels to be read: the untuned file stays
            tuned_psnr = -math.inf
        if tuned_psnr > psnr:  # tuning that did not pay is dropped
            data, psnr = tuned, tuned_psnr
    info = {
        **file_figures(data, width, height),
        "psnr": psnr,
        "analytic_psnr": analytic_psnr,
        "seconds": time.perf_counter() - start,
    }
    return data, info


def decode_bytes(data: bytes, source: str) -> np.ndarray:
    """The (H, W, C) uint8 image of a .pxl file's bytes; refused with CodecFileError when bad."""
    header, words = unpack(data, source)
    if isinstance(header, GaussiansHeader):
        return decode_gaussians(header, words, source, len(data))
    model = _model(header.width, header.height, header.channels, header.levels, header.chroma_from).double()
    shapes = [tuple(g.shape[1:]) for g in model.latents]
    q = decode(words, list(header.codes), shapes, header.buckets, source)
    codes, grids = iter(header.codes), []
    for grid in q:
        steps = torch.tensor([next(codes).step for _ in range(grid.shape[0])], dtype=torch.float64)
        grids.append(torch.from_numpy(grid).double()[None] * steps[None, :, None, None])
    with torch.no_grad():
        picture = model.image(grids)
    out = torch.clamp(torch.round(picture * 255), 0, 255).to(torch.uint8)
    return out.permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class CompressResult:
    """What `compress` wrote: the .pxl file and its figures (bytes and bits per pixel counted from the
    file on disk, PSNR of its decoded pixels, and the PSNR before fine-tuning)."""

    source: str
    out: Path
    width: int
    height: int
    bytes: int
    bpp: float
    psnr: float
    seconds: float
    analytic_psnr: float | None = None  # latent-grid only: before fine-tuning


@dataclass(frozen=True)
class DecompressResult(ImageResult):
    """What `decompress` gave: the (H, W, C) uint8 pixels, and the PNG written (None: none)."""


def compress(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: CompressConfig = CompressConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
) -> CompressResult:
    """Encode an image file (or URL) into a .pxl file of at most the budget (`config.bpp` or `config.kb`).

    `out`: the .pxl file; None writes it beside a local source, named like it with `.pxl`. `progress`:
    None shows it when stderr is a terminal, True always, False never (`core.progress`)."""
    from pixlearn.core.imaging.images import decode_image
    from pixlearn.core.storage.rundir import write_bytes

    target = Path(out) if out is not None else _beside(source, ".pxl")
    check_output(target)  # a device, FIFO or folder named as the output: refused before the long encoding
    config.check()  # before the image is decoded: --bpp inf is refused at once
    pixels = decode_image(source, config.color)
    budget = config.budget(pixels.shape[1], pixels.shape[0])
    with thread_count(choose_threads(config.threads, adapt_to_load=True)), make_progress(progress) as bar:
        data, info = encode_pixels(pixels, budget, config, bar)
    write_bytes(target, data)
    figures = {k: info[k] for k in ("bytes", "bpp", "psnr", "analytic_psnr", "seconds") if k in info}
    return CompressResult(str(source), target, pixels.shape[1], pixels.shape[0], **figures)


def _beside(source: str | os.PathLike, suffix: str) -> Path:
    """The default output of a codec verb: the source's own path with another suffix."""
    text = os.fspath(source)
    if "://" in text:
        raise ConfigError(f"{text}: give out (--out) for an image read from a URL")
    return Path(text).with_suffix(suffix)


def decompress(
    source: str | os.PathLike, out: str | os.PathLike | None = None, progress: bool | None = None
) -> DecompressResult:
    """Decode a .pxl file to a (H, W, C) uint8 image, written as PNG to `out` when given (None: nothing
    written). `progress`: None shows it when stderr is a terminal, True always, False never (`core.progress`)."""
    from pixlearn.core.imaging.images import to_pil
    from pixlearn.core.storage.rundir import write_bytes

    with open_data_file(source, "rb", error=CodecFileError) as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CodecFileError(str(source), f"larger than the limit of {MAX_FILE_BYTES:,} bytes")
    with make_progress(progress) as bar:
        bar.task("decode", 1)
        pixels = decode_bytes(data, str(source))
        bar.advance()
    if out is not None:
        import io

        buffer = io.BytesIO()
        to_pil(pixels).save(buffer, format="PNG")
        write_bytes(Path(out), buffer.getvalue())
    return DecompressResult(pixels, Path(out) if out is not None else None)
