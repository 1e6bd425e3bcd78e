"""Field models: the seed presets' parameter counts, every model's forward pass, the hash grid's gradient."""

from __future__ import annotations

import math

import pytest
import torch

from pixlearn.models.encodings import BilinearGather, HashGrid2d
from pixlearn.models.registry import create_model, list_models


@pytest.mark.parametrize(("name", "params"), [("seed-linear", 9), ("seed-small", 173), ("seed-deep", 41_003)])
def test_seed_presets_have_the_seeds_parameter_counts(name: str, params: int) -> None:
    model = create_model(name, in_features=2, out_features=3)
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name", list_models("field"))
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_field_model_maps_coordinates_to_colours(name: str, channels: int) -> None:
    model = create_model(name, in_features=2, out_features=channels)
    out = model(torch.rand(10, 2) * 2 - 1)
    assert out.shape == (10, channels) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["seed-linear", "seed-small", "seed-deep", "fourier"])
def test_bounded_models_stay_in_zero_one(name: str) -> None:
    out = create_model(name, out_features=3)(torch.randn(200, 2) * 300)
    assert out.min() >= 0 and out.max() <= 1


def test_siren_has_the_reference_size_and_initialisation() -> None:
    model = create_model("siren", out_features=1)
    assert sum(p.numel() for p in model.parameters()) == 198_401  # the ~198k of the SIREN anchor
    first, hidden = model.body[0], model.body[1]
    assert first.omega_0 == 30
    assert first.linear.weight.abs().max() <= 1 / 2  # U(-1/n, 1/n), n = 2 inputs
    assert hidden.linear.weight.abs().max() <= math.sqrt(6 / 256) / 30


def test_fourier_frequencies_are_fixed_saved_and_seeded() -> None:
    a, b = create_model("fourier", seed=3), create_model("fourier", seed=3)
    assert "encoder.B" in a.state_dict()
    assert torch.equal(a.encoder.B, b.encoder.B)
    assert not any(p is a.encoder.B for p in a.parameters())


def test_hash_grid_gradient_matches_plain_autograd() -> None:
    table = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(50, (30, 4))
    weight = torch.rand(30, 4, dtype=torch.float64)
    grad = torch.randn(30, 2, dtype=torch.float64)
    (BilinearGather.apply(table, index, weight) * grad).sum().backward()
    ours = table.grad.clone()
    table.grad = None
    ((table[index] * weight[..., None]).sum(1) * grad).sum().backward()
    assert torch.allclose(ours, table.grad)


def test_hash_grid_dense_level_interpolates_exactly_at_vertices() -> None:
    encoder = HashGrid2d(levels=1, features=1, log2_table=10, base_resolution=4, finest_resolution=4)
    with torch.no_grad():
        encoder.table.copy_(torch.arange(25, dtype=torch.float32)[:, None])  # vertex value = x + 5 y
    coords = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-0.5, 0.0], [-0.25, 0.0]])  # vertices (0,0) (4,0) (1,2)
    assert encoder(coords)[:, 0].tolist() == [0.0, 4.0, 11.0, 11.5]


def test_hash_grid_finest_levels_hash_into_their_table() -> None:
    encoder = HashGrid2d(levels=4, features=2, log2_table=8, base_resolution=8, finest_resolution=64)
    assert encoder.dense_levels == 1  # 9x9 = 81 vertices fit in 256 entries; 17x17 do not
    assert encoder.table.shape == (81 + 3 * 256, 2)
    out = encoder(torch.rand(100, 2) * 2 - 1)
    assert out.shape == (100, 8)
