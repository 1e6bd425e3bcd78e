"""One reader of sizes (`core.options.parse_size`): WIDTHxHEIGHT everywhere, a side for a square, and
each command's images come out that many pixels wide and high (train, fit, render, summary)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn.classify.config import PredictConfig, TrainConfig
from pixlearn.classify.data.decoding import decode_options
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.cli.classify import _image_shape
from pixlearn.core.errors import ConfigError
from pixlearn.core.imaging.images import decode_image
from pixlearn.core.options import parse_size
from pixlearn.core.storage.weights import read_spec
from tests.corpus import cli, error_line, make_class_folders

WIDE = "64x32"  # 64 wide, 32 high: a size read the wrong way round cannot pass


def test_parse_size_reads_width_then_height_and_a_side_as_a_square() -> None:
    assert parse_size("64x32") == (64, 32) and parse_size("64X32") == (64, 32)
    assert parse_size("150") == (150, 150) == parse_size(150) == parse_size(" 150 ")
    for bad in ("12y9", "64x", "x32", "64x32x1", "", "-4", "²"):
        with pytest.raises(ConfigError, match="size \\(--size\\): expected WIDTHxHEIGHT"):
            parse_size(bad)


def test_summary_input_is_width_by_height_by_channels() -> None:
    assert _image_shape("64x32x3", 10) == (32, 64, 3)  # (height, width, channels), as arrays hold it
    assert _image_shape("64x32", 10) == (32, 64, 1) and _image_shape("150", 10) == (150, 150, 1)
    assert _image_shape(None, 28) == (28, 28, 1)
    for bad in ("64x32xa", "64y32", "64x32x0", "0x32"):
        with pytest.raises(ConfigError, match="--input: expected WIDTHxHEIGHTxCHANNELS"):
            _image_shape(bad, 10)
    result = cli("summary", "resnet-small", "--input", f"{WIDE}x1")
    assert result.exit_code == 0, result.output
    assert "(None, 32, 64, 32)" in result.output  # Keras' (batch, height, width, channels)


def test_train_size_is_width_by_height(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=4, size=40)
    out = tmp_path / "run"
    result = cli(
        "train", data, "--out", out, "--model", "resnet-small", "--size", WIDE, "--epochs", "1",
        "--batch-size", "4", "--device", "cpu", "--color", "grayscale", "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["size"] == [64, 32]  # (width, height), as typed
    assert json.loads((out / "data_summary.json").read_text())["size"] == [32, 64]  # (height, width), as the spec
    assert "before resizing to 64x32" in (out / "report.html").read_text()
    spec = read_spec(out)
    assert spec.input_size == (32, 64)  # (height, width): arrays 32 rows of 64 pixels
    options = decode_options(spec)
    assert decode_image(next(data.rglob("*.png")), options.color, options.size, options.fit).shape == (32, 64, 1)
    predictor = Predictor.from_run(out, PredictConfig(device="cpu"))
    assert predictor.predict_image(next(data.rglob("*.png"))).label in spec.classes
    resumed = cli("train", data, "--out", out, "--resume", "--epochs", "2", "--device", "cpu", "--threads", "1")
    assert resumed.exit_code == 0, resumed.output  # config.json's [64, 32] reads back as the same size
    assert read_spec(out).input_size == (32, 64)


def test_train_config_keeps_a_square_as_its_side_and_converts_once() -> None:
    assert TrainConfig(model="resnet-small", size=(48, 48)).resolved().size == 48  # as runs stored it before
    wide = TrainConfig(model="resnet-small", size=(64, 32)).resolved()
    assert wide.size == (64, 32) and wide.input_size() == (32, 64)
    assert TrainConfig(model="resnet-small", size=[64, 32]).resolved().size == (64, 32)  # read from config.json
    with pytest.raises(ConfigError, match="size \\(--size\\): must be at least 8, got 4"):
        TrainConfig(model="resnet-small", size=(64, 4)).resolved()
    line = error_line(cli("train", "nowhere", "--size", "64y32"))
    assert "size (--size): expected WIDTHxHEIGHT" in line


def test_fit_size_is_width_by_height(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray((np.indices((20, 30)).sum(0) * 5).astype(np.uint8)).save(photo)  # 30 wide, 20 high
    out = tmp_path / "fit"
    result = cli("fit", photo, "--out", out, "--model", "seed-linear", "--steps", "2", "--size", WIDE, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert Image.open(out / "reconstruction.png").size == (64, 32)  # PIL's size is (width, height)
    rendered = tmp_path / "big.png"
    result = cli("render", out, "--size", "48x24", "--out", rendered)
    assert result.exit_code == 0, result.output
    assert Image.open(rendered).size == (48, 24) and "48x24 image written" in result.output


def test_check_size_is_read_the_same_way_and_stays_a_square(tmp_path: Path) -> None:
    from pixlearn.classify.audit.inspection import CheckConfig, square_side

    assert square_side("48x48") == 48 == square_side("48")
    with pytest.raises(ConfigError, match="a check decodes images to a square"):
        square_side("64x32")
    assert "size (--size): expected WIDTHxHEIGHT" in error_line(cli("check", tmp_path, "--size", "64y32"))
    assert CheckConfig().size == 112  # not typed: the field's default, not None
