"""Fair comparisons: sizing to a parameter budget, the compare options, seeds, and the figures' titles and scales."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pixlearn.cli import app
from pixlearn.core.errors import ConfigError
from pixlearn.core.imaging import figures
from pixlearn.core.storage.rundir import read_json
from pixlearn.field.comparison import compare, model_config
from pixlearn.field.config import CompareConfig, FitConfig
from pixlearn.models.registry import create_model, sized_kwargs


@pytest.mark.parametrize("name", ["siren", "fourier", "fourier-siren", "gaussians"])
@pytest.mark.parametrize("target", [5_000, 65_536])
def test_equal_params_sizes_a_model_within_two_percent(name: str, target: int) -> None:
    kwargs, params = sized_kwargs(name, target, out_features=3)
    built = sum(p.numel() for p in create_model(name, **kwargs).parameters())
    assert built == params and abs(params - target) <= 0.02 * target


def test_the_hash_grid_takes_the_nearest_table_size_and_seed_presets_keep_theirs() -> None:
    kwargs, params = sized_kwargs("hashgrid", 65_536, out_features=3)
    assert kwargs["log2_table"] == 13 and 0.8 * 65_536 < params < 1.2 * 65_536  # tables grow by 2x steps
    assert sized_kwargs("seed-deep", 65_536, out_features=3) is None
    base = FitConfig(steps=1)
    assert model_config(base, "seed-deep", 3, CompareConfig(equal_params=10_000))[1] == "fixed"
    config, size = model_config(base, "siren", 3, CompareConfig(equal_params=10_000))
    assert size == f"hidden={config.model_kwargs['hidden']}" and config.model == "siren"
    assert model_config(base, "siren", 3, CompareConfig())[1] == "default"


def test_compare_options_are_checked_before_any_fit(tmp_path) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        compare(np.zeros((8, 8), np.uint8), tmp_path / "c", CompareConfig(models=["seed-linear"], seeds=0))
    runner = CliRunner()
    bad = runner.invoke(app, ["compare", "x.png", "--equal-params", "0", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "equal-params" in bad.output
    help_text = runner.invoke(app, ["compare", "--help"], terminal_width=200).output
    assert all(flag in help_text for flag in ("--equal-time", "--no-equal-time", "--equal-params", "--seeds"))
    # the help's panel wraps lines between box borders: compare the words alone
    fit_help = " ".join(runner.invoke(app, ["fit", "--help"], terminal_width=200).output.replace("│", " ").split())
    assert "The default, hashgrid, reaches the highest PSNR" in fit_help  # the default and why, not just its name


def test_compare_with_seeds_and_equal_params_states_its_settings(tmp_path) -> None:
    image = (np.indices((12, 14)).sum(0) * 9).astype(np.uint8)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(image).save(photo)
    out = tmp_path / "cmp"
    argv = ["compare", str(photo), "--models", "seed-linear,gaussians", "--steps", "2", "--seeds", "2"]
    result = CliRunner().invoke(app, [*argv, "--equal-params", "600", "--heldout", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_json(out / "compare.json")
    assert [r["size"] for r in rows] == ["fixed", "count=100"]  # 100 x 6 + 1 = 601, the nearest to 600
    assert rows[1]["params"] == 601 and rows[1]["lr"] == 0.01 and rows[1]["batch"] == 8192
    assert all(r["seeds"] == 2 and "psnr_sd" in r and "test_psnr" in r for r in rows)
    assert (out / "seeds" / "gaussians-seed1" / "metrics.json").is_file()
    assert read_json(out / "config.json")["compare"]["equal_params"] == 600
    for column in ("lr", "batch", "size", "psnr_sd", "test_psnr"):
        assert column in result.output


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_figures_carry_panel_titles_and_an_error_scale() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    recon = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(3)]
    fig = figures.comparison_figure(original, recon, [("a", "1 dB"), ("b", "2 dB"), ("c", "3 dB")])
    assert _titles(fig)[:1] == ["original"] and sum(t.startswith(("a", "b", "c")) for t in _titles(fig)) == 3
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 1 + 3 + 3  # original, reconstructions, error maps; the colour bar fills the 8th cell
    insets = [child for ax in fig.axes for child in ax.child_axes]  # the colour bar sits in the 8th cell
    assert any(figures.ERROR_LABEL in ax.get_ylabel() for ax in insets)
    error = figures.error_levels(original, recon[0])
    fig = figures.side_by_side(original, recon[0], error, ["original", "model", "error map"])
    assert _titles(fig) == ["original", "model", "error map"]
    assert any(figures.ERROR_LABEL in ax.get_ylabel() for ax in fig.axes)  # the error map's colour scale
