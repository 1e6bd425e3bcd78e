"""Photo augmentations (random resized crops, rotations, colour jitter): whole batches at once, seeded,
within their ranges, and off by default, where `augment` is exactly what it was."""

from __future__ import annotations

import math

import pytest
import torch

from pixlearn.classify.config import AUG, TrainConfig
from pixlearn.classify.training import inputs
from pixlearn.classify.training.augment import color_jitter, photo_augment, random_affine
from pixlearn.classify.training.inputs import augment
from pixlearn.core.errors import ConfigError
from pixlearn.core.options import option_fields


def ramp(n: int = 32, c: int = 1, h: int = 24, w: int = 24) -> torch.Tensor:
    """Each row runs from 0 (left) to 1 (right): a crop zooms the ramp in, a rotation tilts it."""
    return torch.linspace(0, 1, w).expand(n, c, h, w).contiguous()


def test_off_changes_nothing_and_draws_no_random_numbers() -> None:
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    assert photo_augment(x, g, 0.0, 0.0, 0.0) is x and torch.equal(g.get_state(), before)
    old = augment(x, torch.Generator().manual_seed(5), True, 0.1, 0.5)
    new = augment(x, torch.Generator().manual_seed(5), True, 0.1, 0.5, crop_scale=0.0, rotate=0.0, jitter=0.0)
    assert torch.equal(old, new)
    # the batch the first seed's flips, shifts and erasing gave (recorded before the photo augmentations existed)
    assert float(old.double().sum()) == pytest.approx(2857.171681344509, abs=1e-6)


def test_same_seed_same_batches_another_seed_others() -> None:
    x = torch.rand(16, 3, 20, 20)
    a = augment(x, torch.Generator().manual_seed(1), True, 0.1, 0.25, 0.35, 15.0, 0.3)
    b = augment(x, torch.Generator().manual_seed(1), True, 0.1, 0.25, 0.35, 15.0, 0.3)
    c = augment(x, torch.Generator().manual_seed(2), True, 0.1, 0.25, 0.35, 15.0, 0.3)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape


def test_random_resized_crops_zoom_in_by_the_area_share() -> None:
    x = ramp()
    y = random_affine(x, torch.Generator().manual_seed(0), 0.35, 0.0)
    step = (x[..., 1:] - x[..., :-1]).mean().item()
    steps = (y[..., 1:] - y[..., :-1]).mean(dim=(1, 2, 3))
    assert bool((y[..., 1:] >= y[..., :-1] - 1e-6).all()), "no rotation, no flip: every row still rises"
    # zooming in stretches the ramp: a smaller step per pixel, never a larger one (a crop never zooms out)
    assert bool((steps <= step * 1.001).all())
    # area in [0.35, 1], aspect 3/4..4/3: the width kept is at least sqrt(0.35 * 3/4) of the image
    assert float(steps.min()) >= step * math.sqrt(0.35 * 0.75) * 0.95 and float(steps.mean()) < step * 0.9
    assert not torch.equal(y[0], y[1]), "each image its own crop"


def test_rotations_tilt_within_the_limit_around_the_centre() -> None:
    x = ramp(h=25, w=25)
    y = random_affine(x, torch.Generator().manual_seed(0), 0.0, 30.0)
    vertical = (y[:, :, 1:, 8:17] - y[:, :, :-1, 8:17]).mean(dim=(1, 2, 3)).abs()
    horizontal = (y[:, :, 8:17, 1:] - y[:, :, 8:17, :-1]).mean(dim=(1, 2, 3))
    assert float(vertical.max()) > 0.005, "rows tilt"
    tilt = torch.atan2(vertical, horizontal)
    assert float(tilt.max()) <= math.radians(30) * 1.05
    assert torch.allclose(y[:, :, 12, 12], x[:, :, 12, 12], atol=1e-4), "rotated about the centre"


def test_colour_jitter_per_image_factors_in_range_saturation_for_rgb_only() -> None:
    x = torch.full((64, 1, 8, 8), 0.5)
    y = color_jitter(x, torch.Generator().manual_seed(0), 0.3)
    level = y.mean(dim=(1, 2, 3))
    assert bool((level >= 0.5 * 0.7 - 1e-6).all() and (level <= 0.5 * 1.3 + 1e-6).all())
    assert level.std() > 0.01, "each image its own factor"
    grey_rgb = torch.rand(16, 1, 8, 8).expand(16, 3, 8, 8).contiguous()
    out = color_jitter(grey_rgb, torch.Generator().manual_seed(0), 0.5)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and float(out.min()) >= 0 and float(out.max()) <= 1
    colour = torch.rand(16, 3, 8, 8)
    spread = lambda t: (t - t.mean(1, keepdim=True)).abs().mean(dim=(1, 2, 3))  # noqa: E731
    changed = spread(color_jitter(colour, torch.Generator().manual_seed(0), 0.5)) / spread(colour)
    assert float(changed.max() - changed.min()) > 0.1, "saturation moves the channels apart or together"


def test_the_options_are_checked_and_shown_in_the_augmentation_panel() -> None:
    panels = {f.name: info.panel for f, info, _ in option_fields(TrainConfig)}
    assert all(panels[name] == AUG for name in ("crop_scale", "rotate", "jitter"))
    assert TrainConfig().crop_scale == TrainConfig().rotate == TrainConfig().jitter == 0.0
    for bad in ({"crop_scale": 1.5}, {"rotate": 120.0}, {"jitter": 1.0}, {"jitter": -0.1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TrainConfig(**bad).resolved()  # type: ignore[arg-type]


def test_training_uses_them_on_rgb_channels_last_batches(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixlearn.classify.training.loop import train
    from tests.corpus import make_class_folders

    seen: list[tuple[tuple[int, ...], float, float, float]] = []

    def recording(x: torch.Tensor, g: torch.Generator, crop: float, rot: float, jit: float) -> torch.Tensor:
        seen.append((tuple(x.shape), crop, rot, jit))
        return photo_augment(x, g, crop, rot, jit)

    monkeypatch.setattr(inputs, "photo_augment", recording)
    data = make_class_folders(tmp_path / "data", per_class=6)
    config = TrainConfig(model="airnet-small", size=16, color="rgb", epochs=1, batch_size=4, device="cpu",
                         crop_scale=0.35, rotate=10.0, jitter=0.3)  # fmt: skip
    result = train(data, tmp_path / "run", config)
    assert seen and all(s[0][1:] == (3, 16, 16) and s[1:] == (0.35, 10.0, 0.3) for s in seen)
    assert result.metrics.epochs_run == 1
