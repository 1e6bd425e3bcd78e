"""Fitting an image: the run directory contract, save/load/render, held-out protocol, SIREN vs the seed."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.cli import app
from pixlearn.core.storage.rundir import read_json
from pixlearn.field.config import FitConfig, parse_duration
from pixlearn.field.coords import heldout_test_mask
from pixlearn.field.fit import fit_image
from pixlearn.field.image import load_field_image
from pixlearn.field.rendering.renderer import RenderConfig, render, render_array
from pixlearn.models.loading import load_model


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """A small real photo: scikit-image's cameraman, 48x48 grey."""
    from skimage import data

    return load_field_image(data.camera(), "grayscale", (48, 48)).pixels


@pytest.fixture(scope="module")
def colour() -> np.ndarray:
    from skimage import data

    return load_field_image(data.astronaut(), "rgb", (20, 24)).pixels  # width 20, height 24


def test_a_fit_writes_the_run_directory_contract(tmp_path, colour) -> None:
    result = fit_image(colour, tmp_path / "run", FitConfig(model="hashgrid", steps=5))
    run = tmp_path / "run"
    for name in (
        "config.json",
        "model.safetensors",
        "model.json",
        "original.png",
        "reconstruction.png",
        "figures/side_by_side.png",
        "figures/error_map.png",
        "figures/psnr.png",
        "history.csv",
        "metrics.json",
        "weights.json",
        "weights.npz",
        "log.txt",
    ):
        assert (run / name).is_file(), name
    spec = read_json(run / "model.json")
    assert spec["task"] == "field" and spec["coords"] == "normalized"
    assert spec["image"]["width"] == 20 and spec["image"]["height"] == 24 and spec["image"]["channels"] == 3
    metrics = read_json(run / "metrics.json")
    assert {"psnr", "ssim", "params", "bytes", "seconds", "steps", "model"} <= set(metrics)
    assert metrics["steps"] == 5 and metrics["params"] == sum(p.numel() for p in result.model.parameters())
    with open(run / "history.csv") as f:
        assert next(csv.reader(f)) == ["step", "seconds", "loss", "psnr"]
    width, height = Image.open(run / "figures" / "side_by_side.png").size  # original | reconstruction | error
    assert width > 2 * height
    assert set(np.load(run / "weights.npz").files) == set(result.model.state_dict())


def test_a_saved_and_loaded_model_renders_identical_pixels(tmp_path, colour) -> None:
    fit_image(colour, tmp_path / "run", FitConfig(model="seed-small", epochs=1))
    model, spec = load_model(tmp_path / "run")
    again = render_array(model, 24, 20, spec.coords)
    assert np.array_equal(again, np.asarray(Image.open(tmp_path / "run" / "reconstruction.png")))


def test_rendering_at_2x_or_a_given_size_has_that_size(tmp_path, colour) -> None:
    fit_image(colour, tmp_path / "run", FitConfig(model="siren", steps=2, model_kwargs={"hidden": 16}))
    assert render(tmp_path / "run", tmp_path / "big.png", RenderConfig(scale=2)).pixels.shape == (48, 40, 3)
    assert Image.open(tmp_path / "big.png").size == (40, 48)
    assert render(tmp_path / "run", config=RenderConfig(size=(33, 17))).pixels.shape == (17, 33, 3)


def test_siren_beats_the_seeds_deep_network_on_a_real_image(tmp_path, camera) -> None:
    seed = fit_image(camera, tmp_path / "deep", FitConfig(model="seed-deep", epochs=8))
    # a narrower SIREN (64 units, ~12.7k parameters) keeps the test to seconds on 2 cores
    small = {"hidden": 64}
    siren = fit_image(camera, tmp_path / "siren", FitConfig(model="siren", steps=150, lr=1e-3, model_kwargs=small))
    assert seed.metrics.steps == 8 * 18  # 48x48 pixels in batches of 128
    assert siren.metrics.psnr > seed.metrics.psnr + 8, (siren.metrics.psnr, seed.metrics.psnr)


def test_heldout_fit_never_trains_on_a_test_pixel(tmp_path, camera) -> None:
    seen: list[torch.Tensor] = []
    from pixlearn.field import fit as fit_module

    real_build = fit_module.build_model

    def recording_build(config, channels):
        model = real_build(config, channels)
        model.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().clone()) if m.training else None)
        return model

    fit_module.build_model = recording_build
    try:
        result = fit_image(camera, tmp_path / "run", FitConfig(model="seed-linear", epochs=2, heldout=True))
    finally:
        fit_module.build_model = real_build
    coords = torch.cat(seen)
    cols, rows = (coords[:, 0].round().long() - 1).numpy(), (coords[:, 1].round().long() - 1).numpy()  # pixel mode
    assert len(coords) == 2 * 24 * 24
    assert not heldout_test_mask(48, 48)[rows, cols].any()
    assert result.metrics.test_psnr is not None and result.metrics.test_ssim is not None
    with open(tmp_path / "run" / "history.csv") as f:
        assert "test_psnr" in next(csv.reader(f))


def test_rgba_and_grey_images_keep_their_channels(tmp_path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    result = fit_image(rgba, tmp_path / "rgba", FitConfig(model="seed-linear", steps=3))
    assert result.reconstruction.shape == (10, 12, 4) and result.spec.image.mode == "RGBA"


def test_durations_and_bad_options_give_clear_errors(tmp_path, colour) -> None:
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120 and parse_duration(5) == 5
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")
    with pytest.raises(KeyError, match="unknown model"):
        fit_image(colour, tmp_path / "x", FitConfig(model="seed-cnn"))  # a classifier, not a field model
    with pytest.raises(ValueError, match="coords"):
        fit_image(colour, tmp_path / "y", FitConfig(coords="polar"))


def test_time_budget_stops_the_fit(tmp_path, colour) -> None:
    limit = 10**7  # far more steps than 0.3 s allows: only the budget can end this fit
    result = fit_image(colour, tmp_path / "run", FitConfig(model="seed-linear", time="0.3s", steps=limit))
    steps, last = result.metrics.steps, result.history[-1]
    assert 0 < steps < limit
    # the last row logged: the budget was reached, less the reserve (at most a tenth of it) the loop keeps for
    # the next step and the final measurement, which count in the budget
    assert last.step == steps and last.seconds >= 0.9 * 0.3
    assert all(row.seconds <= 0.3 for row in result.history[:-1])  # not before (rows round to 0.1 ms)
    assert read_json(tmp_path / "run" / "metrics.json")["steps"] == steps


def test_cli_fit_render_table_and_compare(tmp_path, colour) -> None:
    runner = CliRunner()
    photo = tmp_path / "photo.png"
    Image.fromarray(colour).save(photo)
    ok = runner.invoke(app, ["fit", str(photo), "--model", "seed-linear", "--steps", "5", "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    assert "0.weight" in ok.output  # a 9-parameter model prints its weights, as the seed's get_weights()
    ok = runner.invoke(app, ["render", str(tmp_path / "r"), "--scale", "2", "--out", str(tmp_path / "big.png")])
    assert ok.exit_code == 0 and Image.open(tmp_path / "big.png").size == (40, 48)
    ok = runner.invoke(app, ["table", str(photo), "--csv", str(tmp_path / "t.csv")])
    assert ok.exit_code == 0 and (tmp_path / "t.csv").read_text().startswith("x,y,r,g,b\n1,1,")
    out = tmp_path / "cmp"
    ok = runner.invoke(
        app, ["compare", str(photo), "--models", "seed-linear,hashgrid", "--steps", "3", "--out", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    rows = read_json(out / "compare.json")
    assert [r["model"] for r in rows] == ["seed-linear", "hashgrid"]
    assert (out / "figures" / "compare_grid.png").is_file() and (out / "models" / "hashgrid" / "metrics.json").is_file()
    ok = runner.invoke(app, ["summary", "siren", "--input", "2"])
    assert ok.exit_code == 0 and "Total params: 198,915" in ok.output  # RGB by default
    bad = runner.invoke(app, ["fit", str(tmp_path / "missing.png"), "--out", str(tmp_path / "m")])
    assert bad.exit_code == 2 and "missing.png" in bad.output
