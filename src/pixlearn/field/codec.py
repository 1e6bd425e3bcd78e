"""`pixlearn compress` / `decompress`: an image as a quantised, entropy-coded `latent-grid` field.

Encoding: the latent pyramid starts from the image's own Laplacian pyramid (exact); one step size
per level and channel, each the global step over the root of that grid's gain on the image (so every
grid's rounding costs the same error per unit), is searched by bisection to meet the budget; then
quantisation-aware fine-tuning lowers distortion + lambda * bits (uniform noise, then straight-through
rounding; lambda from the high-rate slope 2 ln 2 * step^2 / 12); last, the step is searched again,
downwards in quality, until the file, header and all, fits. Decoding is float64 arithmetic whose
results do not depend on the thread count, rounded to 8 bits: a file always gives the same pixels.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> picture = (np.add.outer(np.arange(32), np.arange(48)) * 2 + rng.integers(0, 9, (32, 48)))[..., None]
    >>> data, info = encode_pixels(picture.astype(np.uint8), 400, CodecConfig(kb=0.4, steps=5))
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
from pixlearn.core.files import open_data_file
from pixlearn.core.options import check_options, option
from pixlearn.field.codec_entropy import decode, encode, fit_codes, rate_bits
from pixlearn.field.codec_format import MAX_FILE_BYTES, MODEL_NAME, CodecFileError, CodecHeader, pack, unpack
from pixlearn.models.latent_grids import LatentGrids
from pixlearn.models.registry import create_model

RATE, ENCODER = "Rate (one of)", "Encoder"
BUCKETS = 6  # context buckets per grid: parent activity 0, 1, 2-3, 4-7, 8-15, 16+
COARSEST = 8  # levels stop when the coarsest grid is about this many cells a side


@dataclass
class CodecConfig:
    """The options of `compress`."""

    bpp: float | None = option(
        None, "Largest size in bits per pixel, from the file's bytes on disk (header included).", panel=RATE, above=0
    )
    kb: float | None = option(None, "Largest size in kilobytes (1,000 bytes) instead of --bpp.", panel=RATE, above=0)
    steps: int = option(
        300, "Quantisation-aware fine-tuning steps (0: the analytic pyramid only).", panel=ENCODER, minimum=0
    )
    lr: float = option(0.05, "Adam learning rate of the fine-tuning, in quantisation steps.", panel=ENCODER, above=0)
    color: Literal["auto", "grayscale", "rgb"] = option("auto", "Colour mode; auto keeps grey grey.", panel=ENCODER)
    seed: int = option(0, "Seed of the quantisation noise.", panel=ENCODER)
    threads: int = option(0, "CPU threads; 0 = one per core other work leaves free.", panel=ENCODER, minimum=0)

    def budget(self, width: int, height: int) -> int:
        """The largest file in bytes."""
        check_options(self)
        if (self.bpp is None) == (self.kb is None):
            raise ConfigError("give exactly one of bpp (--bpp) and kb (--kb)")
        return math.floor(self.bpp * width * height / 8) if self.bpp is not None else math.floor(self.kb * 1000)


def _levels(width: int, height: int) -> int:
    return max(1, 1 + round(math.log2(max(min(width, height), COARSEST) / COARSEST)))


def _model(width: int, height: int, channels: int, levels: int) -> LatentGrids:
    return create_model(MODEL_NAME, "field", out_features=channels, width=width, height=height, levels=levels)


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

    def __init__(self, model: LatentGrids):
        self.model, self.gains = model, _gains(model)

    def steps(self, delta: float) -> list[np.ndarray]:
        # float16, as stored: the encoder quantises with exactly the steps the decoder reads
        return [np.array([delta / math.sqrt(g) for g in row], dtype=np.float16).astype(np.float64) for row in self.gains]

    def quantise(self, delta: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
        steps = self.steps(delta)
        latents = [g.detach()[0].double().numpy() for g in self.model.latents]
        q = [np.clip(np.round(x / s[:, None, None]), -32767, 32767).astype(np.int64) for x, s in zip(latents, steps)]
        return q, steps

    def file(self, delta: float) -> bytes:
        q, steps = self.quantise(delta)
        codes = fit_codes(q, [float(s[0]) for s in steps], BUCKETS)
        codes = [c if not c.maxabs else type(c)(c.maxabs, float(s), c.scales) for c, s in zip(codes, _flat(steps))]
        m = self.model
        header = CodecHeader(MODEL_NAME, m.width, m.height, m.channels, m.levels, 1, BUCKETS, tuple(codes))
        return pack(header, encode(q, codes, BUCKETS))

    def search(self, budget: int, low: float = 2**-14, high: float = 8.0, rounds: int = 18) -> float:
        """The smallest global step whose file fits `budget` bytes (bisection on log2 step)."""
        if len(self.file(high)) > budget:
            raise ConfigError(f"a budget of {budget:,} bytes is below the smallest file for this image")
        for _ in range(rounds):
            mid = math.sqrt(low * high)
            low, high = (low, mid) if len(self.file(mid)) <= budget else (mid, high)
        return high


def _flat(steps: list[np.ndarray]) -> list[float]:
    return [float(s) for row in steps for s in row]


def _finetune(model: LatentGrids, target: torch.Tensor, steps: list[np.ndarray], delta: float, config: CodecConfig):
    """Quantisation-aware rate-distortion tuning of the latents, in units of their steps."""
    scale = [torch.tensor(s, dtype=torch.float32)[None, :, None, None] for s in steps]
    u = [torch.nn.Parameter(g.detach() / s) for g, s in zip(model.latents, scale)]
    log_scales = torch.nn.Parameter(torch.zeros(sum(s.size for s in steps), BUCKETS))
    opt = torch.optim.Adam([{"params": u}, {"params": [log_scales], "lr": 0.05}], lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(config.steps, 1), eta_min=config.lr * 0.05)
    lam = 2 * math.log(2) * delta**2 / 12  # the high-rate slope of distortion per bit
    gen = torch.Generator().manual_seed(config.seed)
    for step in range(config.steps):
        noisy = step < config.steps // 2
        qs = [x + (torch.rand(x.shape, generator=gen) - 0.5 if noisy else (x.round() - x).detach()) for x in u]
        sse = ((model.image([q * s for q, s in zip(qs, scale)]) - target) ** 2).sum()
        bits, row = 0.0, 0
        for level, q in enumerate(qs):
            for channel in range(q.shape[1]):
                parent = qs[level + 1][0, channel] if level + 1 < len(qs) else None
                bits = bits + rate_bits(q[0, channel], parent, log_scales[row], BUCKETS)
                row += 1
        opt.zero_grad()
        (sse + lam * bits).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        for g, x, s in zip(model.latents, u, scale):
            g.copy_(x * s)


def encode_pixels(pixels: np.ndarray, budget: int, config: CodecConfig) -> tuple[bytes, dict[str, Any]]:
    """A .pxl file of at most `budget` bytes for a (H, W, C) uint8 image, and figures about it."""
    start = time.perf_counter()
    height, width, channels = pixels.shape
    target = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float() / 255
    model = _model(width, height, channels, _levels(width, height))
    model.analyse(target)
    coder = _Coder(model)
    delta = coder.search(budget)
    if config.steps:
        torch.manual_seed(config.seed)
        _finetune(model, target, coder.steps(delta), delta, config)
        # search downwards: the finest step (best quality) of a ladder around the tuned one that fits
        ladder = [delta * 2 ** (k / 32) for k in range(-16, 200)]
        delta = next(d for d in ladder if len(coder.file(d)) <= budget)
    data = coder.file(delta)
    if len(data) > budget:
        data = coder.file(coder.search(budget))
    decoded = decode_bytes(data, "<encoded>").astype(np.float64)
    mse = float(((decoded - pixels) ** 2).mean())
    info = {
        "bytes": len(data),
        "bpp": len(data) * 8 / (width * height),
        "psnr": 10 * math.log10(255**2 / max(mse, 1e-12)),
        "seconds": time.perf_counter() - start,
    }
    return data, info


def decode_bytes(data: bytes, source: str) -> np.ndarray:
    """The (H, W, C) uint8 image of a .pxl file's bytes; refused with CodecFileError when bad."""
    header, words = unpack(data, source)
    model = _model(header.width, header.height, header.channels, header.levels).double()
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


def compress(source: str | os.PathLike, out: str | os.PathLike, config: CodecConfig) -> dict[str, Any]:
    """Encode an image file (or URL) into a .pxl file of at most the budget; returns its figures."""
    from pixlearn.core.images import decode_image
    from pixlearn.core.runs import write_bytes

    pixels = decode_image(source, config.color)
    budget = config.budget(pixels.shape[1], pixels.shape[0])
    with thread_count(choose_threads(config.threads, adapt_to_load=True)):
        data, info = encode_pixels(pixels, budget, config)
    write_bytes(out, data)
    return {"source": str(source), "out": str(out), "width": pixels.shape[1], "height": pixels.shape[0], **info}


def decompress(source: str | os.PathLike, out: str | os.PathLike | None = None) -> np.ndarray:
    """Decode a .pxl file to a (H, W, C) uint8 image, written as PNG to `out` when given."""
    from pixlearn.core.images import to_pil
    from pixlearn.core.runs import write_bytes

    with open_data_file(source, "rb", error=CodecFileError) as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CodecFileError(str(source), f"larger than the limit of {MAX_FILE_BYTES:,} bytes")
    pixels = decode_bytes(data, str(source))
    if out is not None:
        import io

        buffer = io.BytesIO()
        to_pil(pixels).save(buffer, format="PNG")
        write_bytes(Path(out), buffer.getvalue())
    return pixels
