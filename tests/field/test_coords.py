"""Coordinates: the grid helper, the table round trip and the held-out pixel split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixlearn.field.coords import (
    EvenPixels,
    PixelSet,
    coords_of,
    grid,
    heldout_test_mask,
    image_to_table,
    load_table,
    random_batches,
    save_table,
    shuffled_pixel_batches,
    table_to_image,
)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_table_round_trip_is_exact(channels: int) -> None:
    image = np.random.default_rng(channels).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    table = image_to_table(image)
    assert table.shape == (35, 2 + channels)
    assert np.array_equal(table_to_image(table), image)
    shuffled = table[np.random.default_rng(0).permutation(len(table))]
    assert np.array_equal(table_to_image(shuffled), image)  # rows are placed by their x, y


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_table_files_round_trip_exactly(tmp_path, suffix: str) -> None:
    image = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    path = save_table(image_to_table(image), tmp_path / f"pixels{suffix}")
    assert np.array_equal(table_to_image(load_table(path)), image)


def test_table_uses_the_seeds_one_based_columns_and_rows() -> None:
    image = np.zeros((2, 3, 1), dtype=np.uint8)
    image[1, 2, 0] = 255  # row 2, column 3
    table = image_to_table(image)
    assert table[table[:, 2] == 1.0, :2].tolist() == [[3.0, 2.0]]


def test_table_with_missing_rows_is_refused() -> None:
    with pytest.raises(ValueError, match="rows"):
        table_to_image(image_to_table(np.zeros((3, 3, 1), np.uint8))[:-1], height=3, width=3)


def test_normalized_grid_spans_minus_one_to_one_and_x_is_the_column() -> None:
    coords = grid(3, 5)
    assert coords.shape == (15, 2)
    assert coords[:, 0].min() == -1 and coords[:, 0].max() == 1
    assert coords[1].tolist() == [-0.5, -1.0]  # second pixel of the first row: x moved, y did not


def test_pixel_mode_is_one_based_and_a_finer_grid_spans_the_same_extent() -> None:
    assert grid(2, 3, "pixel").tolist() == [[1, 1], [2, 1], [3, 1], [1, 2], [2, 2], [3, 2]]
    fine = coords_of(torch.arange(7), 1, 7, "pixel", extent=(4, 1))[:, 0]
    assert fine[0] == 1 and fine[-1] == 4 and len(fine) == 7
    big = coords_of(torch.arange(8 * 6), 6, 8, "pixel", extent=(4, 3))
    assert big[:, 0].max() == 4 and big[:, 1].max() == 3


def test_unknown_coordinate_mode_is_an_error() -> None:
    with pytest.raises(ValueError, match="coordinate mode"):
        coords_of(torch.arange(3), 1, 3, "polar")  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(6, 8), (7, 5)])
def test_heldout_training_pixels_never_include_a_test_pixel(shape: tuple[int, int]) -> None:
    height, width = shape
    train = EvenPixels(height, width)
    ids = train.flat(torch.arange(train.count)).numpy()
    mask = heldout_test_mask(height, width).reshape(-1)
    assert not mask[ids].any()
    assert len(set(ids.tolist())) == train.count == (~mask).sum()  # every training pixel, once
    drawn = torch.cat([next(random_batches(train, 64, torch.Generator().manual_seed(s))) for s in range(20)])
    assert not mask[drawn.numpy()].any()


def test_an_epoch_visits_every_pixel_once() -> None:
    pixels = PixelSet(5, 7)
    seen = torch.cat(list(shuffled_pixel_batches(pixels, 8, torch.Generator().manual_seed(0))))
    assert sorted(seen.tolist()) == list(range(35))
