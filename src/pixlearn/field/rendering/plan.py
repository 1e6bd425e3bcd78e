"""The final render of a fit, planned before training: a timed render of a band of rows estimates it
(`plan_render`), a model whose render alone would take more than a quarter of the time budget says so
then (`say_render_cost`), and after training the render runs in the precision the plan chose, bf16
only where it stays within bounds of float32 (`final_render`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pixlearn.core.devices import uses_bf16
from pixlearn.core.progress import Progress
from pixlearn.field.config import FitConfig
from pixlearn.field.coords import CoordMode, coords_of
from pixlearn.field.image import FieldImage
from pixlearn.field.rendering.renderer import (
    BF16_RENDER_PIXELS,
    Renderer,
    ScoredRender,
    bf16_copy,
    bf16_exact_enough,
    probe_rows,
    render_scored,
    render_seconds,
    renders_saturation,
)
from pixlearn.field.timing import QUARTER


@dataclass
class RenderPlan:
    """How the final render will run, decided before training: precision, and its estimated seconds."""

    precision: str  # "fp32", or "bf16" when the render is large and the CPU computes bf16 natively
    seconds: float  # estimated from a timed render of a band of rows (`render_seconds`)
    probe_pixels: int
    fp32_seconds: float  # the same in float32, what a bf16 render found not exact enough falls back to
    at_most: bool = False  # seconds is a bound: the render skips what the fitted weights let it skip


PROBE_PIXELS = 8_192  # pixels of the timed render before training
CHECK_PIXELS = 65_536  # pixels on which a bf16 render is checked against float32 after training


def plan_render(model: nn.Module, image: FieldImage, config: FitConfig, device: torch.device) -> RenderPlan:
    """Time a render of a band of rows of the untrained model, in the precision the final render will
    try (bf16 for a large render on a CPU that computes it natively) and in float32, and scale it
    to every pixel. The weights' values do not change the time, except where seed-deep's tanh is
    saturated (`rendering.renders_saturation`): unknown before training (the untrained net, its
    weights on raw pixel numbers, is saturated almost everywhere), so its estimate times it
    evaluating every pixel, the most it can take (`RenderPlan.at_most`)."""
    mode: CoordMode = config.coords  # type: ignore[assignment]
    model.eval()  # rendering is evaluation; fit_loop switches to training mode
    large = image.height * image.width >= BF16_RENDER_PIXELS
    fast = bf16_copy(model, share_rows=False) if large and uses_bf16("auto", device) else None
    exact = Renderer(model, image.height, image.width, mode)
    fp32 = render_seconds(exact, PROBE_PIXELS)
    if fast is None:
        return RenderPlan("fp32", fp32, probe_rows(exact, PROBE_PIXELS) * image.width, fp32)
    quick = Renderer(fast, image.height, image.width, mode)
    bf16 = render_seconds(quick, PROBE_PIXELS)
    at_most = renders_saturation(fast)
    return RenderPlan("bf16", bf16, probe_rows(quick, PROBE_PIXELS) * image.width, fp32, at_most=at_most)


def say_render_cost(plan: RenderPlan, image: FieldImage, config: FitConfig, progress: Progress, log: Any) -> None:
    """A warning line (progress and log) when the render alone would take more than a quarter of the
    time budget; otherwise the estimate goes to the log."""
    megapixels = image.width * image.height / 1e6
    estimate = (
        f"rendering {config.model} at {image.width}x{image.height} ({megapixels:.1f} MP) "
        f"{'may take up to' if plan.at_most else 'will take about'} {plan.seconds:.1f} s after training "
        f"(a timed render of {plan.probe_pixels:,} pixels in {plan.precision}, scaled"
    )
    estimate += f"; {plan.fp32_seconds:.1f} s in fp32)" if plan.precision != "fp32" else ")"
    if plan.at_most:
        estimate += "; less where the fitted tanh units are saturated, as they are over most of a fitted image"
    budget = config.budget_seconds
    if budget is not None and plan.seconds > QUARTER * budget:
        warning = f"warning: {estimate}, more than a quarter of the {budget:g} s budget ({QUARTER * budget:.1f} s)"
        progress.note(warning)
        log(warning)
    else:
        log(estimate)


def final_render(
    model: nn.Module, image: FieldImage, config: FitConfig, plan: RenderPlan, log: Any
) -> tuple[ScoredRender, str]:
    """Every pixel rendered and scored; in bf16 when planned and, checked on a sample against float32,
    exact enough (`bf16_exact_enough`), else in float32."""
    mode: CoordMode = config.coords  # type: ignore[assignment]
    chosen, precision = model, "fp32"
    if plan.precision == "bf16":
        fast = bf16_copy(model)
        assert fast is not None  # the plan found hidden layers in this very model
        generator = torch.Generator().manual_seed(config.seed)
        ids = torch.randint(image.height * image.width, (CHECK_PIXELS,), generator=generator)
        coords = coords_of(ids, image.height, image.width, mode).to(next(model.parameters()).device)
        truth = torch.from_numpy(image.pixels.reshape(-1, image.channels))[ids].float().to(coords.device) / 255.0
        if bf16_exact_enough(model, fast, coords, truth):
            chosen, precision = fast, "bf16 hidden layers (checked against fp32)"
        else:
            log(
                "a bf16 render is not exact enough for this fit (PSNR or a colour moved): rendering in fp32, "
                f"about {plan.fp32_seconds:.1f} s"
            )
    scored = render_scored(Renderer(chosen, image.height, image.width, mode), image.pixels, config.heldout)
    return scored, precision
