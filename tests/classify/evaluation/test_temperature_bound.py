"""A fitted temperature at a bound of its search is warned about (calibration.bound_warning), in
metrics.json's calibration_warning, which training also writes to log.txt."""

from __future__ import annotations

import pytest
import torch

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.data.decoding import ImageSet
from pixlearn.classify.evaluation import calibration, thresholds
from pixlearn.core.storage.spec import ModelSpec


def separable_set(n: int) -> ImageSet:
    """8x8 grey images, dark (class 0) or light (class 1), far apart: nothing in between."""
    labels = torch.arange(n) % 2
    images = (labels.view(n, 1, 1, 1).expand(n, 1, 8, 8) * 160 + 40).to(torch.uint8).contiguous()
    return ImageSet(images, labels, [f"{i}.png" for i in range(n)], ["dark", "light"], [(8, 8)] * n, [])


def brightness_net(scale: float) -> torch.nn.Module:
    """Logits (brightness - 0.5) x `scale` for light, the opposite for dark: a positive scale is right
    about every image, a negative one wrong about every one."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0] * 64, [1.0] * 64]) * scale / 64)
        model[1].bias.copy_(torch.tensor([0.5, -0.5]) * scale)
    return model


SPEC = ModelSpec("net", "classify", {"in_channels": 1, "num_classes": 2, "input_size": [8, 8]},
                 classes=("dark", "light"), input_size=(8, 8), color="grayscale", precision="fp32")  # fmt: skip


# right about every image by a hair (the NLL still falls steeply as T -> 0), wrong about every one by a lot
@pytest.mark.parametrize(("scale", "side", "bound"), [(0.002, "lower", calibration.MIN_TEMPERATURE),
                                                      (-8.0, "upper", calibration.MAX_TEMPERATURE)])  # fmt: skip
def test_a_temperature_stopped_by_its_search_bound_is_warned_about(scale: float, side: str, bound: float) -> None:
    spec, metrics = thresholds.fitted_spec(
        brightness_net(scale), SPEC, separable_set(40), TrainConfig(calibrate=True), torch.device("cpu")
    )
    assert spec.temperature == (bound,)
    warning = metrics["calibration_warning"]
    assert f"the fitted temperature {bound:g} is the {side} bound of its search" in warning
    assert "40 validation images" in warning


def test_a_temperature_inside_its_bounds_gives_no_bound_warning() -> None:
    assert calibration.bound_warning((1.7,), 100) is None
    assert calibration.bound_warning((1.7, calibration.MAX_TEMPERATURE), 100).startswith(
        "the fitted temperature 20 of output 1 is the upper bound"
    )
