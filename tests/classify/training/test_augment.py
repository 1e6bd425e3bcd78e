"""Training-batch augmentation: random erasing is seeded, bounded and honours its probability."""

from __future__ import annotations

import pytest
import torch

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training.inputs import augment, erase_rectangles
from pixlearn.core.errors import ConfigError


def _erased_share(x: torch.Tensor) -> torch.Tensor:
    return (x == 0).float().mean(dim=(1, 2, 3))


def test_erasing_blacks_out_one_rectangle_of_2_to_25_percent_in_every_channel() -> None:
    x = torch.ones(64, 3, 28, 28)
    y = erase_rectangles(x, torch.Generator().manual_seed(0), 1.0)
    share = _erased_share(y)
    assert bool((share > 0).all()), "probability 1 erases every image"
    assert float(share.max()) <= 0.25 * 1.2 and float(share.min()) >= 1 / (28 * 28)
    assert torch.equal(y[:, 0], y[:, 2]), "the same rectangle in every channel"
    for image in (y[:, 0] == 0).float():
        rows, cols = image.any(1).nonzero().flatten(), image.any(0).nonzero().flatten()
        box = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert bool(box.all()), "the erased pixels form one filled rectangle"


def test_erasing_probability_and_seed() -> None:
    x = torch.ones(2000, 1, 16, 16)
    share = _erased_share(erase_rectangles(x, torch.Generator().manual_seed(1), 0.3))
    assert 0.25 < float((share > 0).float().mean()) < 0.35
    a = augment(x[:50], torch.Generator().manual_seed(5), True, 0.1, 0.5)
    b = augment(x[:50], torch.Generator().manual_seed(5), True, 0.1, 0.5)
    assert torch.equal(a, b)
    assert torch.equal(augment(x[:50], torch.Generator().manual_seed(5), False, 0.0, 0.0), x[:50])


def test_erase_option_is_checked() -> None:
    with pytest.raises(ConfigError, match="erase"):
        TrainConfig(erase=1.5).resolved()
