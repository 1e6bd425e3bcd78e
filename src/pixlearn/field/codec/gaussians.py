"""The codec's `gaussians` path: an image as quantised, entropy-coded 2D Gaussians (models/gaussians.py).

Encoding: a first count of Gaussians from the byte budget (BITS_GUESS bits for each coded number),
fitted to the image with the model's own fit loop and preset, colours started from the image. The
count is then adjusted: the file at a reference quality (quantisation adding REFERENCE_SHARE of the
fit's squared error) measures the bits one Gaussian really costs, and when the budget holds fewer,
the least important Gaussians are dropped and the rest fitted a little more. Each parameter group
(positions, Cholesky factors, colours) has its own step, a global step over the root of the group's
gain on the image (`_gains`: a rounding error costs the same in every group, as the latent grids'
steps), and the finest global step whose file fits the budget is found by bisection. A few steps of
quantisation-aware tuning (straight-through rounding) follow; the tuned file is kept only when it
beats the untuned one. Coding: the Gaussians sorted by quantised row then column, so the rows code as
small gaps; each of the 5 + C numbers of a Gaussian is one coded row of N integers, with one Laplace
scale (codec_entropy, one context bucket).

Decoding renders on one thread in float64 (`thread_count(1)`): the model's render sums each pixel's
Gaussians with `index_add_`, whose order of summation torch does not promise across thread counts; on
one thread it is a fixed order. (Measured with the one-thread block taken away: 1 and 2 threads gave the
same bits, float32 and float64; the block is kept as the guarantee, tests/test_codec.py runs both.) The
cost: one thread in float64 renders several times slower than two in float32
(bench/README.md, "The gaussians codec's decoder"). A crafted file that would evaluate more than
MAX_PAIRS_PER_PIXEL pairs a pixel is refused before rendering.

    >>> import numpy as np
    >>> y, x = np.mgrid[0:24, 0:32]
    >>> picture = (np.stack([x * 7, y * 9, 200 - x * 5], -1) + 20 * (x > 15)[..., None]).astype(np.uint8)
    >>> data, info = encode_gaussians(picture, 300, fit_steps=40, tune_steps=5)
    >>> len(data) <= 300, info["psnr"] > 20
    (True, True)
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from pixlearn.core.devices import thread_count
from pixlearn.core.errors import ConfigError
from pixlearn.core.optim import Adam
from pixlearn.core.progress import SILENT, Progress
from pixlearn.field.codec.container import (
    GAUSSIANS,
    MAX_GAUSSIAN_PIXELS,
    MAX_GAUSSIANS,
    ChannelCode,
    CodecFileError,
    GaussiansHeader,
    file_figures,
    pack,
    refused_when_read,
    unpack,
)
from pixlearn.field.codec.entropy import decode, encode, finest_step, fit_codes
from pixlearn.field.config import FitConfig
from pixlearn.field.coords import grid
from pixlearn.field.fit import fit_loop
from pixlearn.field.image import FieldImage
from pixlearn.field.metrics import decoded_psnr
from pixlearn.models.gaussians import Gaussians2d
from pixlearn.models.registry import create_model

GROUPS = ("position", "cholesky", "colour")  # the quantised parameter groups, each with its own step
SIGMA_SPACINGS = 2.0  # largest sigma in mean spacings: bounds a Gaussian's footprint to a few cells
BITS_GUESS = 5.0  # first estimate of the bits of one coded number: generous, since dropping is cheap
REFERENCE_SHARE = 0.25  # quantisation adding a quarter of the fit's squared error (about 1 dB)
PROBE = 0.01  # perturbation of the parameters (their own units) that measures each group's gain
TUNE_LR = 2e-3  # Adam rate of the quantisation-aware tuning, a fifth of the fit's
LOGIT_LIMIT = 20.0  # decoded Cholesky parameters are clipped here: sigmoid stays positive in float64
BATCH = 2**13  # pixels per tuning step, the fit preset's batch


def max_sigma_for(count: int) -> float:
    """The largest sigma of `count` Gaussians (coordinates in [-1, 1]), at most the model's default.

    >>> max_sigma_for(100), round(max_sigma_for(10_000), 3)
    (0.15, 0.04)
    """
    return min(0.15, SIGMA_SPACINGS * 2 / math.sqrt(count))


def gaussians_for(channels: int, count: int) -> Gaussians2d:
    """The codec's model of `count` Gaussians; its sizes follow from the count alone, so the decoder
    builds the same one from the header."""
    return create_model(GAUSSIANS, "field", out_features=channels, count=count, max_sigma=max_sigma_for(count))


def overhead(channels: int) -> int:
    """Bytes of a file that are not entropy-coded payload (every row coded)."""
    codes = (ChannelCode(1, 1.0, (0,)),) * (5 + channels)
    return len(pack(GaussiansHeader(GAUSSIANS, 1, 1, channels, 1, codes, (0.0,) * channels), np.zeros(0, np.uint32)))


def _count_for(payload_bits: float, channels: int, bits_per_number: float, pixels: int) -> int:
    return int(np.clip(payload_bits / ((5 + channels) * max(bits_per_number, 0.1)), 1, min(MAX_GAUSSIANS, pixels)))


def _started(model: Gaussians2d, target: torch.Tensor) -> None:
    """Colours from the image at each centre over the summed weights there: the first render is
    already a rough copy of the image, which saves the fit hundreds of steps."""
    channels, height, width = target.shape
    with torch.no_grad():
        centre = model.factors()[0]
        model.colour.fill_(1.0)
        model.background.zero_()
        coverage = model(centre)[:, 0].clamp_min(0.5)
        rows = ((centre[:, 1] + 1) / 2 * (height - 1)).round().clamp(0, height - 1).long()
        cols = ((centre[:, 0] + 1) / 2 * (width - 1)).round().clamp(0, width - 1).long()
        background = target.mean((1, 2))
        model.background.copy_(background)
        model.colour.copy_((target[:, rows, cols].T - background) / coverage[:, None])


def _fitted(model: Gaussians2d, pixels: np.ndarray, steps: int, progress: Progress = SILENT) -> Gaussians2d:
    image = FieldImage(np.array(pixels), "<encoded>", "L" if pixels.shape[2] == 1 else "RGB")
    fit_loop(model, image, FitConfig(model=GAUSSIANS, steps=max(steps, 1)).resolved(), progress)
    return model


def fit_gaussians(pixels: np.ndarray, count: int, steps: int, progress: Progress = SILENT) -> Gaussians2d:
    """`count` Gaussians fitted to a (H, W, C) uint8 image in `steps` steps of the model's preset."""
    with torch.random.fork_rng(devices=[]):  # the same start for the same image and count; the caller's seed kept
        torch.manual_seed(0)
        model = gaussians_for(pixels.shape[2], count)
    _started(model, _target(pixels))
    return _fitted(model, pixels, steps, progress)


def _target(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float() / 255


def pruned(model: Gaussians2d, keep: int) -> Gaussians2d:
    """The `keep` Gaussians of most weight (|colour| x area), as a model of that count: the same
    centres and shapes, re-expressed in the smaller model's units (its spacing and largest sigma)."""
    centre, a, b, c = (t.detach() for t in model.factors())
    order = torch.argsort(model.colour.detach().norm(dim=1) * a * c, descending=True)[:keep]
    smaller = gaussians_for(model.colour.shape[1], keep)
    limit = 1 - 1e-6
    with torch.no_grad():
        smaller.position.copy_(centre[order] / smaller.spacing)
        share = torch.stack([a[order], c[order]], 1) / smaller.max_sigma
        logits = torch.logit(share.clamp(1e-6, limit))
        tilt = torch.atanh((b[order] / smaller.max_sigma).clamp(-limit, limit))
        smaller.cholesky.copy_(torch.stack([logits[:, 0], tilt, logits[:, 1]], 1))
        smaller.colour.copy_(model.colour[order])
        smaller.background.copy_(model.background)
    return smaller


def _gains(model: Gaussians2d, coords: torch.Tensor) -> dict[str, float]:
    """Squared change of the rendered image per unit squared change of one parameter, for each group:
    measured from a small random perturbation of the whole group."""
    generator, gains = torch.Generator().manual_seed(0), {}
    with torch.no_grad():
        base = model(coords)
        for name in GROUPS:
            parameter = getattr(model, name)
            kept = parameter.detach().clone()
            noise = torch.randn(parameter.shape, generator=generator) * PROBE
            parameter.add_(noise)
            gains[name] = max(float(((model(coords) - base) ** 2).sum() / (noise**2).sum()), 1e-12)
            parameter.copy_(kept)
    return gains


class _GaussianCoder:
    """Quantises the model's parameters at a global step and sizes the resulting file."""

    def __init__(self, model: Gaussians2d, height: int, width: int):
        self.model, self.height, self.width = model, height, width
        self.gains = _gains(model, grid(height, width))

    def steps(self, delta: float) -> dict[str, float]:
        # float16, as stored: the encoder quantises with exactly the steps the decoder reads
        return {name: float(np.float16(np.clip(delta / math.sqrt(g), 2**-24, 65504))) for name, g in self.gains.items()}

    def rows(self, delta: float) -> tuple[np.ndarray, list[float]]:
        """The (5 + C, N) integers in coded order (row gaps, columns, Cholesky, colours), and each row's step."""
        steps = self.steps(delta)
        q = {n: np.round(getattr(self.model, n).detach().double().numpy() / steps[n]) for n in GROUPS}
        position = np.clip(q["position"], -16383, 16383)  # so that a gap between two rows stays a symbol
        order = np.lexsort((position[:, 0], position[:, 1]))  # by row, then column
        gaps = np.diff(position[order, 1], prepend=0)
        symbols = [gaps[None], position[order, 0][None], q["cholesky"][order].T, q["colour"][order].T]
        rows = np.clip(np.concatenate(symbols), -32767, 32767).astype(np.int64)
        channels = self.model.colour.shape[1]
        return rows, [steps["position"]] * 2 + [steps["cholesky"]] * 3 + [steps["colour"]] * channels

    def file(self, delta: float) -> bytes:
        rows, steps = self.rows(delta)
        codes = fit_codes([rows[:, None, :]], steps, 1)
        m = self.model
        background = tuple(float(np.float16(v)) for v in m.background.detach())
        header = GaussiansHeader(GAUSSIANS, self.width, self.height, len(background), m.count, tuple(codes), background)
        return pack(header, encode([rows[:, None, :]], codes, 1))

    def search(self, budget: int, low: float = 2**-14, high: float = 2.0**12) -> float:
        """The smallest global step whose file fits `budget` bytes."""
        return finest_step(lambda delta: len(self.file(delta)), budget, low, high)


def _tuned(model: Gaussians2d, steps: dict[str, float], pixels: np.ndarray, count: int) -> None:
    """Quantisation-aware tuning: `count` Adam steps on pixel batches, every parameter group rounded to
    its step on the way forward and the gradient passed straight through the rounding."""
    height, width, channels = pixels.shape
    coords, target = grid(height, width), torch.from_numpy(np.array(pixels).reshape(-1, channels)).float() / 255
    parameters = {name: getattr(model, name) for name in GROUPS}
    optimizer = Adam([*parameters.values(), model.background], lr=TUNE_LR)  # the fit's (core.optim)
    generator = torch.Generator().manual_seed(0)
    for _ in range(count):
        ids = torch.randint(height * width, (min(BATCH, height * width),), generator=generator)
        rounded = {n: p + ((p / steps[n]).round() * steps[n] - p).detach() for n, p in parameters.items()}
        loss = ((torch.func.functional_call(model, rounded, (coords[ids],)) - target[ids]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _decoded(data: bytes) -> np.ndarray:
    """The image a reader decodes from a gaussians file (its PSNR is `metrics.decoded_psnr`'s); a file
    a reader would refuse is the budget's fault (`container.refused_when_read`)."""
    try:
        header, words = unpack(data, "<encoded>")
        return decode_gaussians(header, words, "<encoded>", len(data))
    except CodecFileError as exc:
        raise refused_when_read(exc) from None


def _counted(pixels: np.ndarray, budget: int, fit_steps: int, progress: Progress) -> Gaussians2d:
    """Gaussians fitted to the image, as many as the budget holds at the reference quality."""
    height, width, channels = pixels.shape
    payload_bits = 8 * (budget - overhead(channels))
    if payload_bits < 32:
        raise ConfigError(f"a budget of {budget:,} bytes is below the smallest file for this image")
    count = _count_for(payload_bits, channels, BITS_GUESS, height * width)
    model = fit_gaussians(pixels, count, fit_steps, progress)
    with torch.no_grad():
        sse = float(((model(grid(height, width)) - _target(pixels).flatten(1).T) ** 2).sum())
    numbers = count * (5 + channels)
    reference = math.sqrt(12 * REFERENCE_SHARE * max(sse, 1e-6) / numbers)  # quantisation adds share x sse
    coded = 8 * (len(_GaussianCoder(model, height, width).file(reference)) - overhead(channels))
    keep = _count_for(payload_bits, channels, coded / numbers, height * width)
    if keep < 0.9 * count:  # the budget holds fewer at that quality: drop the least, fit the rest a little
        model = _fitted(pruned(model, keep), pixels, fit_steps // 4, progress)
    return model


def encode_gaussians(
    pixels: np.ndarray, budget: int, fit_steps: int, tune_steps: int, progress: Progress = SILENT
) -> tuple[bytes, dict[str, Any]]:
    """A gaussians .pxl file of at most `budget` bytes for a (H, W, C) uint8 image, and figures about it
    (`progress` follows the fits)."""
    start = time.perf_counter()
    height, width, channels = pixels.shape
    if width * height > MAX_GAUSSIAN_PIXELS:
        raise ConfigError(
            f"--model gaussians encodes images up to {MAX_GAUSSIAN_PIXELS:,} pixels, not {width}x{height}"
        )
    smallest = math.ceil(MIN_BPP * width * height / 8)
    if budget < smallest:
        raise ConfigError(
            f"--model gaussians needs a budget of at least {MIN_BPP} bits a pixel, {smallest:,} bytes for "
            f"{width}x{height}, not {budget:,} (a decoder's work is bounded by the file's size); the latent-grid "
            "model takes less"
        )
    model = _counted(pixels, budget, fit_steps, progress)
    coder = _GaussianCoder(model, height, width)
    delta = coder.search(budget)
    data = coder.file(delta)
    psnr = untuned_psnr = decoded_psnr(_decoded(data), pixels)
    if tune_steps:
        _tuned(model, coder.steps(delta), pixels, tune_steps)
        tuned: bytes | None = coder.file(delta)
        if len(tuned) > budget:  # tuning moved the rate: the finest coarser step that fits
            try:
                tuned = coder.file(coder.search(budget, low=delta))
            except ConfigError:  # not even the coarsest step fits the tuned model: the untuned file stays
                tuned = None
        try:
            tuned_psnr = decoded_psnr(_decoded(tuned), pixels) if tuned is not None else -math.inf
        except ConfigError:  # tuning moved the Gaussians over the render's bound: the untuned file stays
            tuned_psnr = -math.inf
        if tuned is not None and tuned_psnr > psnr:  # tuning that did not pay is dropped
            data, psnr = tuned, tuned_psnr
    info = {
        **file_figures(data, width, height),
        "psnr": psnr,
        "untuned_psnr": untuned_psnr,
        "gaussians": model.count,
        "seconds": time.perf_counter() - start,
    }
    return data, info


def decode_gaussians(header: GaussiansHeader, words: np.ndarray, source: str, size: int) -> np.ndarray:
    """The (H, W, C) uint8 image of a gaussians file's header and payload (from `codec_format.unpack`);
    `size`: the file's bytes, which bound the render's cost."""
    channels, count = header.channels, header.count
    rows = decode(words, list(header.codes), [(5 + channels, 1, count)], 1, source)[0][:, 0, :]
    steps = np.array([code.step for code in header.codes])  # 0.0 for a row of zeros, never coded
    values = rows * steps[:, None]
    position = np.stack([rows[1] * steps[1], np.cumsum(rows[0]) * steps[0]], 1)
    with torch.random.fork_rng(devices=[]):  # the model's random start is overwritten: leave the caller's seed be
        model = gaussians_for(channels, count).double()
    with torch.no_grad():
        model.position.copy_(torch.from_numpy(position))
        model.cholesky.copy_(torch.from_numpy(np.clip(values[2:5], -LOGIT_LIMIT, LOGIT_LIMIT).T))
        model.colour.copy_(torch.from_numpy(values[5:].T))
        model.background.copy_(torch.tensor(header.background, dtype=torch.float64))
        coords = grid(header.height, header.width).double()
        _check_render_cost(model, coords, source, size)
        with thread_count(1):  # a fixed order of summation (the module's docstring)
            picture = model(coords)
    picture = torch.nan_to_num(picture, nan=0.0)
    out = torch.clamp(torch.round(picture * 255), 0, 255).to(torch.uint8)
    return out.reshape(header.height, header.width, channels).numpy()


# (pixel, Gaussian) pairs a render may evaluate per pixel: the encoder's files need ~10-30 (a Gaussian's
# 3-sigma box is capped at 2 mean spacings: `max_sigma_for`); a crafted file piling every Gaussian at the
# largest size onto one spot reaches ~245, which at 16 megapixels would render for minutes
MAX_PAIRS_PER_PIXEL = 96
# ... and per byte of the file, so a render's work is bounded by the file's size: the encoder's files
# need ~200-800 from MIN_BPP up (~25 pairs a pixel), while 54 bytes claiming 32,768 Gaussians piled on one
# spot of a 2048x2048 image would render for a minute
MAX_PAIRS_PER_BYTE = 1024
MIN_BPP = 0.25  # the smallest budget `compress --model gaussians` takes, so its files keep to MAX_PAIRS_PER_BYTE


def _check_render_cost(model: Gaussians2d, coords: torch.Tensor, source: str, size: int) -> None:
    """Refuse, before rendering, a file of `size` bytes whose Gaussians would cost over MAX_PAIRS_PER_PIXEL
    pairs a pixel, or over MAX_PAIRS_PER_BYTE pairs a byte of the file."""
    start, _ = model._cell_table()
    per_cell = start.diff()
    cells = model._cell_of(coords[:, 1]) * model.cells + model._cell_of(coords[:, 0])
    pairs = int(per_cell.index_select(0, cells).sum())
    if pairs > MAX_PAIRS_PER_PIXEL * len(coords):
        raise CodecFileError(
            source, f"its Gaussians would cost {pairs / len(coords):.0f} evaluations a pixel (at most "
            f"{MAX_PAIRS_PER_PIXEL} are allowed): not a file this encoder writes"
        )  # fmt: skip
    if pairs > MAX_PAIRS_PER_BYTE * size:
        raise CodecFileError(
            source, f"its Gaussians would cost {pairs:,} evaluations from a file of {size:,} bytes (at most "
            f"{MAX_PAIRS_PER_BYTE:,} a byte: a decoder's work is bounded by its file's size)"
        )  # fmt: skip
