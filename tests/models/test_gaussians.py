"""The 2D Gaussians field model: shapes, tiling that equals the dense sum, fitting and rendering at any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from pixlearn.field.rendering.renderer import RenderConfig, render
from pixlearn.models import gaussians as gaussians_module
from pixlearn.models.registry import create_model


def spread_model(channels: int = 3, count: int = 300) -> torch.nn.Module:
    """A model whose Gaussians have varied sizes, orientations and colours, as after training."""
    torch.manual_seed(1)
    model = create_model("gaussians", out_features=channels, count=count)
    with torch.no_grad():
        model.cholesky.add_(torch.randn_like(model.cholesky) * 1.5)
        model.colour.normal_()
    return model


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_forward_gives_one_colour_per_coordinate(channels: int) -> None:
    model = create_model("gaussians", out_features=channels, count=64)
    out = model(torch.rand(37, 2) * 2 - 1)
    assert out.shape == (37, channels) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == 64 * (5 + channels) + channels


def test_default_size_stays_within_a_256_image_of_parameters() -> None:
    for channels in (1, 3):
        params = sum(p.numel() for p in create_model("gaussians", out_features=channels).parameters())
        assert 60_000 < params <= 65_536


def test_tiled_evaluation_equals_the_dense_sum(monkeypatch) -> None:
    model = spread_model()
    coords = torch.rand(2_000, 2) * 2 - 1
    dense = model.dense_forward(coords)
    assert torch.allclose(model(coords), dense, atol=1e-5)
    monkeypatch.setattr(gaussians_module, "PAIR_CHUNK", 5_000)  # several chunks of pixels
    assert torch.allclose(model(coords[:300]), dense[:300], atol=1e-5)
    with torch.no_grad():  # the cached cell table of rendering
        assert torch.allclose(model(coords), dense, atol=1e-5)
        assert torch.allclose(model(coords), dense, atol=1e-5)


def test_tiled_gradients_equal_the_dense_gradients() -> None:
    model = spread_model(channels=1, count=120)
    coords, target = torch.rand(500, 2) * 2 - 1, torch.rand(500, 1)
    grads = []
    for forward in (model, model.dense_forward):
        model.zero_grad()
        ((forward(coords) - target) ** 2).mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for tiled, dense in zip(*grads, strict=True):
        assert torch.allclose(tiled, dense, atol=1e-6)


def test_the_cached_table_follows_an_optimiser_step() -> None:
    model = spread_model(channels=1, count=80)
    coords = torch.rand(300, 2) * 2 - 1
    with torch.no_grad():
        model(coords)  # caches the cell table
        model.position.add_(0.5)  # moves every Gaussian
        assert torch.allclose(model(coords), model.dense_forward(coords), atol=1e-5)


def test_fit_and_render_at_any_resolution(tmp_path) -> None:
    image = (np.indices((12, 16)).sum(0) * 9).astype(np.uint8)
    result = fit_image(image, tmp_path / "run", FitConfig(model="gaussians", steps=4, model_kwargs={"count": 50}))
    assert result.reconstruction.shape == (12, 16, 1) and result.metrics.params == 50 * 6 + 1
    assert render(tmp_path / "run", config=RenderConfig(size=(40, 25))).pixels.shape == (25, 40, 1)
    assert render(tmp_path / "run", config=RenderConfig(scale=1)).pixels.tolist() == result.reconstruction.tolist()


def test_the_fused_backward_passes_gradcheck() -> None:
    torch.manual_seed(0)
    coords = torch.rand(40, 2, dtype=torch.float64) * 0.4 - 0.2
    pixel = torch.arange(40).repeat_interleave(3)
    rows = torch.cat(
        [torch.rand(120, 2, dtype=torch.float64) * 0.2 - 0.1, 0.1 + torch.rand(120, 1, dtype=torch.float64) * 0.1,
         torch.randn(120, 1, dtype=torch.float64) * 0.05, 0.1 + torch.rand(120, 1, dtype=torch.float64) * 0.1,
         torch.randn(120, 3, dtype=torch.float64)], dim=1,
    ).requires_grad_()  # fmt: skip
    assert torch.autograd.gradcheck(lambda r: gaussians_module._FusedSplat.apply(coords, pixel, r, 40), (rows,))
