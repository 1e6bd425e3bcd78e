"""Evaluating a fitted field: colours at any pixel grid, in chunks; PNG output; readable weights.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from pixlearn.field.config import FitConfig
    >>> from pixlearn.field.fit import fit_image
    >>> from pixlearn.field.rendering.renderer import RenderConfig, render
    >>> tmp = tempfile.TemporaryDirectory()
    >>> run = Path(tmp.name) / "run"
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # a 16x16 grey gradient
    >>> _ = fit_image(image, run, FitConfig(model="seed-small", steps=10))
    >>> big = render(run, Path(tmp.name) / "big.png", RenderConfig(scale=4))
    >>> big.pixels.shape
    (64, 64, 1)

Coordinates always span the trained image's extent, so `--scale 4` evaluates the same function
on a 4x finer grid (between the training pixels), whatever the coordinate convention.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pixlearn.core.devices import LoadFollower
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.imaging.images import to_pil
from pixlearn.core.progress import SILENT, Progress, make_progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.field_records import ReadableWeights, TensorValues
from pixlearn.core.storage.files import check_output
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.field.config import MAX_RENDER_SCALE, RenderConfig, check_render_size
from pixlearn.field.coords import CoordMode, coords_of
from pixlearn.field.image import ImageResult
from pixlearn.field.metrics import psnr_from_mse
from pixlearn.field.rendering.saturation import SaturatedTanhMlp
from pixlearn.models.loading import load_model

RENDER_CHUNK = 65_536  # pixels evaluated at once: memory stays bounded by the output image itself
PRINTED_WEIGHTS = 1_000  # models up to this many parameters print their weights (the seed's get_weights())
# Pixels per call when every pixel's coordinates go through the network: small enough that the
# activations of a 100-wide MLP stay in cache; the hash grid's row-and-column path takes 65,536
# (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)").
PIXEL_CALL = 8_192
# Above this a PNG is written with zlib level 1: much faster than level 6, for a larger file, lossless
# either way (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)").
FAST_PNG_PIXELS = 2**20


def predict_ids(
    model: nn.Module,
    ids: torch.Tensor,
    height: int,
    width: int,
    mode: CoordMode,
    extent: tuple[int, int] | None = None,
    chunk: int = RENDER_CHUNK,
) -> torch.Tensor:
    """Colours in [0, 1] (clamped) of the row-major pixel numbers `ids`, evaluated in chunks."""
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk].to(device)
            outputs.append(model(coords_of(part, height, width, mode, extent).to(device)).clamp_(0.0, 1.0))
    return torch.cat(outputs) if outputs else torch.empty(0)


class Renderer:
    """A model evaluated on every pixel of a height x width grid, a band of whole rows at a time,
    without autograd.

    Models that render a whole grid (`renders_grids`, `forward_grid`) are given a band's row and
    column coordinates: the hash grid interpolates per row and per column instead of per pixel
    (models/encodings.py), seed-deep's render copy finds where its tanh is saturated
    (`saturation.SaturatedTanhMlp`); the rest evaluate each pixel's coordinates.
    extent: the (width, height) the model was trained on, for pixel-coordinate models.
    """

    def __init__(
        self, model: nn.Module, height: int, width: int, mode: CoordMode, extent: tuple[int, int] | None = None
    ):
        self.model, self.height, self.width, self.mode, self.extent = model, height, width, mode, extent
        self.device = next(model.parameters()).device
        self.band = max(1, RENDER_CHUNK // width)  # rows per band (`bands`)
        self.call = max(1, pixels_per_call(model) // width)  # rows per call of the network
        self.grids: list[torch.Tensor] | None = None  # what forward_grid reads, computed once per render
        self.on_grid = bool(getattr(model, "renders_grids", False))
        if self.on_grid:
            self.band = self.call = max(self.band, self.call)
            with torch.inference_mode():
                self.grids = model.grid_state()
            rows = torch.arange(height) * width
            self.ys = coords_of(rows, height, width, mode, extent)[:, 1].to(self.device)
            self.xs = coords_of(torch.arange(width), height, width, mode, extent)[:, 0].to(self.device)

    def rows(self, top: int, bottom: int) -> torch.Tensor:
        """Colours in [0, 1] (clamped, float32) of rows top..bottom-1, row-major (pixels, channels)."""
        with torch.inference_mode():
            parts = [self._call(start, min(bottom, start + self.call)) for start in range(top, bottom, self.call)]
            return (parts[0] if len(parts) == 1 else torch.cat(parts)).float().clamp_(0.0, 1.0)

    def _call(self, top: int, bottom: int) -> torch.Tensor:
        if self.on_grid:
            return self.model.forward_grid(self.ys[top:bottom], self.xs, self.grids)
        ids = torch.arange(top * self.width, bottom * self.width)
        return self.model(coords_of(ids, self.height, self.width, self.mode, self.extent).to(self.device))

    def bands(self, before_each: Callable[[], object] | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(top, bottom, colours) for every band of rows, top to bottom; `before_each` is called before
        each band is computed (`LoadFollower` re-decides the thread count there)."""
        for top in range(0, self.height, self.band):
            bottom = min(self.height, top + self.band)
            if before_each is not None:
                before_each()
            yield top, bottom, self.rows(top, bottom).cpu()


def pixels_per_call(model: nn.Module) -> int:
    """How many pixels a Renderer passes to `model` at once: the model's own `pixels_per_call` when
    it sets one, RENDER_CHUNK for a narrow net (no layer over NARROW_LAYER units: its activations stay
    in cache anyway, and the per-call overhead dominates), else PIXEL_CALL."""
    if hasattr(model, "pixels_per_call"):
        return int(model.pixels_per_call)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]  # a colour head's too
    widths += [m.weight.shape[0] for m in model.modules() if isinstance(m, _Bf16Linear)]
    return RENDER_CHUNK if widths and max(widths) <= NARROW_LAYER else PIXEL_CALL


# Nets no wider than this (seed-linear, seed-small) render in calls of RENDER_CHUNK pixels: their activations stay in
# cache at that size, and fewer calls cost less (bench/README.md, "Rendering, measuring and writing a fit").
NARROW_LAYER = 16


def to_uint8(values: torch.Tensor) -> torch.Tensor:
    """[0, 1] colours as uint8, rounded half to even (as np.rint)."""
    return values.mul(255.0).round_().to(torch.uint8)


def render_array(
    model: nn.Module,
    height: int,
    width: int,
    mode: CoordMode,
    extent: tuple[int, int] | None = None,
    progress: Progress = SILENT,
    threads: int | None = None,
) -> np.ndarray:
    """Evaluate the model at every pixel of a height x width grid: uint8 (height, width, C).

    Bands of about RENDER_CHUNK pixels keep memory bounded by the output image itself; `progress`
    advances by each band's rows. extent: the (width, height) the model was trained on, for
    pixel-coordinate models. threads: None keeps the caller's count; 0 follows the load band by band
    on a CPU (`LoadFollower`: each pixel is computed alone, so the bytes do not depend on the count);
    a positive count is kept.
    """
    renderer = Renderer(model, height, width, mode, extent)
    follow = threads is not None and renderer.device.type == "cpu"
    with LoadFollower(threads or 0) if follow else contextlib.nullcontext() as follower:
        return _render_bands(renderer, progress, follower)


def _render_bands(renderer: Renderer, progress: Progress, follower: LoadFollower | None) -> np.ndarray:
    height, width = renderer.height, renderer.width
    out: np.ndarray | None = None
    progress.task("render", height)
    for top, bottom, values in renderer.bands(before_each=follower):
        if out is None:
            out = np.empty((height, width, values.shape[1]), dtype=np.uint8)
        out[top:bottom] = to_uint8(values).numpy().reshape(bottom - top, width, -1)
        progress.advance(bottom - top)
    assert out is not None
    return out


@dataclass
class ScoredRender:
    """A render of the fitted image's own grid with its squared errors, summed in float64 per band."""

    image: np.ndarray  # uint8 (height, width, channels)
    train_error: float  # over the training pixels (all, or the even rows and columns when held out)
    train_values: int  # pixels x channels
    test_error: float = 0.0  # over the held-out pixels (the rest)
    test_values: int = 0


def render_scored(renderer: Renderer, truth: np.ndarray, heldout: bool = False) -> ScoredRender:
    """Render every pixel and sum the squared errors of the float outputs against `truth` (uint8) in
    the same pass: the PSNR over every pixel costs one subtraction per value, not a second render."""
    height, width, channels = truth.shape
    out = np.empty_like(truth)
    total, train = 0.0, 0.0
    for top, bottom, values in renderer.bands():
        out[top:bottom] = to_uint8(values).numpy().reshape(bottom - top, width, channels)
        target = torch.from_numpy(truth[top:bottom]).reshape(-1, channels).float() / 255.0
        error = ((values - target) ** 2).reshape(bottom - top, width, channels)
        total += float(error.sum())
        if heldout:  # training pixels: even rows and even columns (coords.EvenPixels)
            train += float(error[(top % 2) :: 2, ::2].sum())
    if not heldout:
        return ScoredRender(out, total, truth.size)
    train_values = ((height + 1) // 2) * ((width + 1) // 2) * channels
    return ScoredRender(out, train, train_values, total - train, truth.size - train_values)


# ---------------------------------------------------------------------------------- fast precision

BF16_RENDER_PIXELS = 2**22  # renders of at least this many pixels try bfloat16 hidden layers
BF16_MAX_PSNR_CHANGE = 0.01  # dB on the check sample, against float32
BF16_MAX_CHANGE = 2.0 / 255.0  # no colour value moves by more than two levels of 255


class _Bf16Linear(nn.Module):
    """A hidden Linear layer (and the ReLU after it) in bfloat16 with float32 sums, for rendering:
    oneDNN with the weights packed once where the build has it, else torch's own bf16 matmul."""

    def __init__(self, layer: nn.Linear, relu: bool):
        super().__init__()
        self.weight = layer.weight.detach().to(torch.bfloat16)
        self.bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)
        self.relu = relu
        self.packed = None
        ops = torch.ops.mkldnn
        # oneDNN packs bf16 weights only on CPUs with AVX512 or AVX-NE-CONVERT: elsewhere torch's own matmul
        packable = hasattr(ops, "_reorder_linear_weight") and ops._is_mkldnn_bf16_supported()
        if self.weight.device.type == "cpu" and packable:
            self.packed = ops._reorder_linear_weight(self.weight, RENDER_CHUNK)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.bfloat16)
        if self.packed is not None:
            post = "relu" if self.relu else "none"
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, post, [], "")
        y = nn.functional.linear(x, self.weight, self.bias)
        return y.relu_() if self.relu else y


class _Float32Input(nn.Module):
    """A layer fed float32: the colour head sums its inputs in float32 and returns float32."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.float())


class _Float32TanhLinear(nn.Module):
    """A coordinate layer and the tanh after it as one oneDNN float32 call with tanh fused into the
    matmul (seed-deep's first layer): one pass where a matmul, then a tanh pass, took several times
    longer; float32, so pixel 4,095 stays 4,095 (bench/README.md, "Rendering, measuring and writing a fit")."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach().float(), RENDER_CHUNK)
        self.bias = None if layer.bias is None else layer.bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.float(), self.packed, self.bias, "tanh", [], "")


def _fuses_tanh(layer: nn.Module, follower: nn.Module | None) -> bool:
    """Whether a coordinate layer followed by a tanh can run as one fused oneDNN call (CPU builds with it)."""
    fused = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None) is not None
    return fused and type(follower) is nn.Tanh and layer.weight.device.type == "cpu"


class _SigmoidTanh(nn.Module):
    """tanh(x) as 2 sigmoid(2x) - 1 (absolute error ~2e-7, far below bf16's rounding): faster than
    torch's CPU tanh (bench/README.md, "4. The time budget of a whole fit, 16 megapixels (issue 14, item 3)").
    The input is clamped to +-20 (tanh is +-1 there in float32) because sigmoid leaves its fast path
    beyond ~50: seed-deep's first layer sees raw pixel coordinates, so its pre-activations reach thousands."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x.clamp(-20.0, 20.0).mul_(2.0)).mul_(2.0).sub_(1.0)


def bf16_copy(model: nn.Module, share_rows: bool = True) -> nn.Module | None:
    """A rendering copy of `model` whose hidden Linear layers run in bfloat16; None when it has none.

    Layers reading coordinates (2 inputs: bf16 would round pixel 4,095 to 4,096) and colour heads
    (at most 4 outputs) stay float32, as does everything that is not a Linear layer (encodings,
    activations other than a fused ReLU or tanh; another tanh is computed from a sigmoid). Whether
    the copy is exact enough: `bf16_exact_enough`. After a fused tanh coordinate layer the rest runs
    where it is saturated (`saturation.SaturatedTanhMlp`) unless `share_rows` is False.
    """
    fast = copy.deepcopy(model).eval()
    hidden = 0
    for module in list(fast.modules()):
        children = list(module.named_children())
        for index, (name, child) in enumerate(children):
            if type(child) is nn.Tanh and getattr(module, name) is child:  # not fused into its layer
                setattr(module, name, _SigmoidTanh())
            if not isinstance(child, nn.Linear):
                continue
            follower = children[index + 1][1] if index + 1 < len(children) else None
            if child.in_features <= 4:
                if isinstance(module, nn.Sequential) and _fuses_tanh(child, follower):
                    setattr(module, name, _Float32TanhLinear(child))
                    setattr(module, children[index + 1][0], nn.Identity())
                continue
            if child.out_features <= 4:
                setattr(module, name, _Float32Input(child))
                continue
            fused = isinstance(module, nn.Sequential) and type(follower) is nn.ReLU
            setattr(module, name, _Bf16Linear(child, relu=fused))
            hidden += 1
            if fused:
                setattr(module, children[index + 1][0], nn.Identity())
    if not hidden:
        return None
    if share_rows and renders_saturation(fast):
        return SaturatedTanhMlp(model[0], fast[0], fast[1:])
    return fast


def renders_saturation(fast: nn.Module | None) -> bool:
    """Whether a bf16 copy made with `share_rows=False` starts with a fused tanh coordinate layer,
    so that the copy `bf16_copy` makes by default renders where it is saturated (`SaturatedTanhMlp`)."""
    return isinstance(fast, nn.Sequential) and isinstance(fast[0], _Float32TanhLinear)


def bf16_exact_enough(
    model: nn.Module, fast: nn.Module, coords: torch.Tensor, truth: torch.Tensor | None = None
) -> bool:
    """Whether `fast` renders like `model` on a sample: no value more than BF16_MAX_CHANGE away and,
    given the `truth` ([0, 1]), PSNR within BF16_MAX_PSNR_CHANGE dB."""
    with torch.inference_mode():
        exact, quick = model(coords).float().clamp_(0, 1), fast(coords).float().clamp_(0, 1)
    if float((exact - quick).abs().max()) > BF16_MAX_CHANGE:
        return False
    if truth is None:
        return True
    change = psnr_from_mse(float(((exact - truth) ** 2).mean())) - psnr_from_mse(float(((quick - truth) ** 2).mean()))
    return abs(change) <= BF16_MAX_PSNR_CHANGE


def probe_rows(renderer: Renderer, pixels: int) -> int:
    """Rows `render_seconds` times: about `pixels` pixels and at least one whole call of the network
    (a part of one would time the per-call overhead as if the render paid it every `pixels` pixels)."""
    return min(renderer.height, max(renderer.call, -(-pixels // renderer.width)))


def render_seconds(renderer: Renderer, pixels: int = 8_192) -> float:
    """Seconds a full render would take, from a timed render of a band of rows (`probe_rows`)
    scaled to every row: after one untimed call (which builds what first calls build), the median of
    three (fewer when they take over half a second): a busy machine preempts some calls, and a whole
    render as many of its own."""
    rows = probe_rows(renderer, pixels)
    renderer.rows(0, rows)
    times: list[float] = []
    while len(times) < 3 and sum(times) < 0.5:
        started = time.perf_counter()
        renderer.rows(0, rows)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * renderer.height / rows


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """A uint8 (H, W, C) array as a PNG, written atomically; zlib level 1 above FAST_PNG_PIXELS."""
    path = Path(path)
    level = 1 if image.shape[0] * image.shape[1] > FAST_PNG_PIXELS else 6
    with rundir.atomic_path(path) as tmp:
        to_pil(image).save(tmp, format="PNG", compress_level=level)
    return path


def output_size(spec: ModelSpec, scale: float | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """(width, height) of a render: `size`, or the trained image scaled by `scale` (default 1)."""
    width, height = spec.image.width, spec.image.height
    if size is not None and scale is not None:
        raise ConfigError("give --scale or --size, not both")
    if size is not None:
        width, height = size
    elif scale is not None:
        if not 0 < scale <= MAX_RENDER_SCALE:  # NaN and infinity too
            raise ConfigError(f"scale must be a number above 0 and at most {MAX_RENDER_SCALE:,}, got {scale}")
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    check_render_size(width, height)
    return width, height


@dataclass(frozen=True)
class RenderResult(ImageResult):
    """What `render` made: the uint8 (height, width, channels) image, and the PNG written (None: none)."""


def render(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    config: RenderConfig = RenderConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
) -> RenderResult:
    """Evaluate a fitted run's model on a `config.size` = (width, height) grid or `config.scale` x the image.

    Writes a PNG to `out` when given (None: nothing written). `progress`: None shows it when stderr is
    a terminal, True always, False never (`core.progress`).
    """
    from pixlearn.core.devices import resolve_device

    config.check()
    if out is not None:
        check_output(out)  # a device, FIFO or folder named as the output: refused before the render
    model, spec = load_model(run, device=resolve_device(config.device))
    if spec.task != "field" or spec.image is None:
        raise RunError(f"{run}: not an image-fit run (model task {spec.task!r})")
    width, height = output_size(spec, config.scale, config.size)
    extent = (spec.image.width, spec.image.height)
    with make_progress(progress) as bar:
        image = render_array(model, height, width, spec.coords, extent, bar, threads=config.threads)
    if out is not None:
        write_png(image, out)
    return RenderResult(image, Path(out) if out is not None else None)


# ---------------------------------------------------------------------------------- weights


def weights_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """Every saved tensor (weights, biases, fixed buffers) by name, as float arrays."""
    return {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}


def write_weights(model: nn.Module, directory: str | os.PathLike) -> None:
    """weights.json (name -> shape and nested values) and weights.npz (the same arrays)."""
    directory = Path(directory)
    arrays = weights_dict(model)
    tensors = {name: TensorValues(shape=tuple(v.shape), values=v.tolist()) for name, v in arrays.items()}
    ReadableWeights(tensors).write(directory / ReadableWeights.FILE)
    with rundir.atomic_path(directory / "weights.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def format_weights(model: nn.Module) -> str:
    """The weights as text, like the seed's ``model$get_weights()``; Dense kernels are shown (in, out)
    as Keras stores them (PyTorch stores (out, in))."""
    lines = []
    with np.printoptions(precision=7, suppress=False, linewidth=100):
        for name, value in weights_dict(model).items():
            shown = value.T if name.endswith("weight") and value.ndim == 2 else value
            layout = " (in x out)" if shown is not value else ""
            lines.append(f"{name} {tuple(shown.shape)}{layout}\n{shown}")
    return "\n\n".join(lines)
