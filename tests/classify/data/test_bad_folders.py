"""Messy folders and wrong settings: one clear `error:` line before any training, or files skipped and counted."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pixlearn.classify.training import loop as TRAIN_MODULE
from pixlearn.classify.training.loop import TrainConfig, train
from pixlearn.core.storage import rundir
from tests.corpus import BAD, GOOD, cli, error_line, fake_run, make_class_folders, write_png

TINY = ["--model", "airnet-small", "--size", "16", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]


def assert_nothing_trained(out: Path) -> None:
    assert not (out / "checkpoint.json").exists() and not (out / "model.safetensors").exists()


# ---------------------------------------------------------------------------------- folders


def test_missing_path(tmp_path: Path) -> None:
    error_line(cli("train", tmp_path / "nowhere", "--out", tmp_path / "out", *TINY), "does not exist")
    assert_nothing_trained(tmp_path / "out")


def test_no_images_at_all(tmp_path: Path) -> None:
    (tmp_path / "data" / "dark").mkdir(parents=True)
    (tmp_path / "data" / "dark" / "readme.txt").write_text("no pictures here")
    (tmp_path / "data" / "empty").mkdir()
    result = cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY)
    error_line(result, "no labelled images")
    assert_nothing_trained(tmp_path / "out")


def test_single_class(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", {"dark": 30})
    error_line(cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY), "only one class", "dark")


def test_empty_class_folder_is_named(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data")
    (tmp_path / "data" / "grey").mkdir()
    line = error_line(cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY), "no images", "grey")
    assert "dark" not in line.split("no images")[1]
    assert_nothing_trained(tmp_path / "out")


def test_test_class_never_seen_in_training(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data" / "train")
    make_class_folders(tmp_path / "data" / "test", {"dark": 40, "light": 210, "blue": 120}, per_class=2)
    result = cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY)
    error_line(result, "never seen in training", "blue")
    assert_nothing_trained(tmp_path / "out")


def test_group_rule_that_matches_nothing(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data" / "train" / "city")
    result = cli(
        "train", tmp_path / "data", "--out", tmp_path / "out", "--group", "a=dark", "--group", "b=nosuch", *TINY
    )
    error_line(result, "nosuch", "match no image")


def test_file_matching_two_group_rules(tmp_path: Path) -> None:
    write_png(tmp_path / "data" / "train" / "city" / "forest" / "x.png", 5)
    write_png(tmp_path / "data" / "train" / "nature" / "sea" / "y.png", 200)
    result = cli(
        "train", tmp_path / "data", "--out", tmp_path / "out", "--group", "c=city", "--group", "n=forest", *TINY
    )
    error_line(result, "x.png", "more than one --group rule", "c, n")
    assert_nothing_trained(tmp_path / "out")


def test_class_whose_every_file_is_broken(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", {"light": 210})
    (tmp_path / "data" / "dark").mkdir()
    for make in (BAD["truncated_png"], BAD["zero_bytes"]):
        make(tmp_path / "data" / "dark")
    result = cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY)
    error_line(result, "no training image of class(es) dark", "truncated")
    assert_nothing_trained(tmp_path / "out")


# ---------------------------------------------------------------------------------- settings


def test_seed_cnn_too_small_fails_before_decoding(tmp_path: Path, monkeypatch) -> None:
    make_class_folders(tmp_path / "data")

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded the data before checking the model size")

    monkeypatch.setattr(TRAIN_MODULE, "load_training_data", must_not_decode)
    result = cli("train", tmp_path / "data", "--out", tmp_path / "out", "--model", "seed-cnn", "--size", "32")
    error_line(result, "seed-cnn", "109")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("batch_size", ["0", "-3"])
def test_batch_size_must_be_positive(tmp_path: Path, batch_size: str) -> None:
    make_class_folders(tmp_path / "data")
    args = [tmp_path / "data", "--out", tmp_path / "out", "--model", "resnet-small", "--batch-size", batch_size]
    error_line(cli("train", *args), "--batch-size", batch_size)
    assert not (tmp_path / "out").exists()


def test_out_that_cannot_be_written_fails_before_training(tmp_path: Path, monkeypatch) -> None:
    # A path under a regular file cannot be created, even by root (who ignores permissions).
    make_class_folders(tmp_path / "data")
    (tmp_path / "file").write_text("a file, not a folder")

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded the data before checking --out")

    monkeypatch.setattr(TRAIN_MODULE, "load_training_data", must_not_decode)
    result = cli("train", tmp_path / "data", "--out", tmp_path / "file" / "run", *TINY)
    error_line(result, "cannot create the run directory", str(tmp_path / "file" / "run"))
    error_line(cli("train", tmp_path / "data", "--out", tmp_path / "file", *TINY), "not a directory")


def test_max_pixels_must_be_positive(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data")
    train = cli("train", tmp_path / "data", "--out", tmp_path / "o", "--max-pixels", "0", *TINY)
    error_line(train, "--max-pixels", "at least 1")
    error_line(cli("predict", tmp_path / "run", tmp_path / "data", "--max-pixels", "-1"), "at least 1")


# ---------------------------------------------------------------------------------- evaluate / predict


def test_evaluate_on_classes_the_model_does_not_know(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    make_class_folders(tmp_path / "data", {"dark": 40, "blue": 120}, per_class=2)
    error_line(cli("evaluate", run, tmp_path / "data"), "not trained on", "blue")


def test_evaluate_and_predict_on_missing_paths(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    error_line(cli("evaluate", run, tmp_path / "nowhere"), "does not exist")
    error_line(cli("predict", run, tmp_path / "nowhere"), "does not exist")
    error_line(cli("predict", tmp_path / "no-run", tmp_path), "model.json", "not found")


def test_predict_any_colour_or_size_decodes_to_the_models_own(tmp_path: Path) -> None:
    # The predictor decodes every image to the model's size and colour mode, so RGB photos of
    # any shape are fine for a grayscale 16x16 model: there is no mismatch left to report.
    run = fake_run(tmp_path / "run", ["dark", "light"])
    folder = tmp_path / "new"
    folder.mkdir()
    for name in ("cmyk_jpeg", "palette_transparent", "png16", "elongated", "tiny", "exif_rotated"):
        GOOD[name](folder)
    result = cli("predict", run, folder, "--csv", tmp_path / "p.csv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_predict_skips_and_reports_bad_files(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    folder = tmp_path / "new"
    folder.mkdir()
    for make in BAD.values():
        make(folder)
    write_png(folder / "fine.png", 30)
    write_png(folder / os.fsdecode(b"caf\xe9 'x'.png"), 30)
    result = cli("predict", run, folder, "--csv", tmp_path / "p.csv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output.count("skipped") == len(BAD)
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["path"]).name for r in rows) == ["caf\\xe9 'x'.png", "fine.png"]
    strict = cli("predict", run, folder, "--csv", tmp_path / "q.csv", "--strict", "--device", "cpu")
    error_line(strict, str(folder))
    limited = cli("predict", run, folder / "fine.png", "--csv", tmp_path / "r.csv", "--max-pixels", "100")
    assert limited.exit_code == 0 and "decompression bomb" in limited.output


# ---------------------------------------------------------------------------------- training on a messy folder


def test_training_skips_reports_and_counts_bad_files(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=5)
    for make in BAD.values():
        make(data / "dark")
    BAD["truncated_jpeg"](data / "dark", os.fsdecode(b"broken \xff 'x'.jpg"))  # bad and not UTF-8
    for name in ("animated_gif", "multipage_tiff", "tiny", "elongated"):
        GOOD[name](data / "light")
    strange = [os.fsdecode(b"\xff\xfe odd.png"), 'quote "me".png', "comma, space.png"]
    for name in strange:
        write_png(data / "light" / name, 200)
    config = TrainConfig(model="airnet-small", size=16, epochs=1, batch_size=8, color="grayscale", device="cpu")
    result = train(data, tmp_path / "out", config)
    summary = rundir.read_json(result.run.data_summary)
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert len(skipped) == len(BAD) + 1
    assert "decompression bomb" in skipped["bomb.png"] and "symlink loop" in skipped["loop.png"]
    assert "truncated" in skipped[os.fsdecode(b"broken \xff 'x'.jpg")]  # JSON keeps the exact name
    assert sum(summary["images"].values()) == 5 + 5 + 4 + len(strange)
    assert {Path(n["path"]).name for n in summary["notes"]} == {"animated.gif", "pages.tif"}
    with open(result.run.skipped, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(BAD) + 1
    assert any(r["path"].endswith("broken \\xff 'x'.jpg") for r in rows)  # CSV and log: readable UTF-8
    log = result.run.log_file.read_text(encoding="utf-8")
    assert "truncated.png" in log and "broken \\xff 'x'.jpg" in log and "read the first" in log
    predictions = (result.run.path / "predictions.csv").read_text(encoding="utf-8")  # the evaluation's rows
    assert predictions.startswith("path,")


def test_evaluate_skips_and_lists_bad_files(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    data = make_class_folders(tmp_path / "data", per_class=2)
    BAD["zero_bytes"](data / "light")
    result = cli("evaluate", run, data, "--out", tmp_path / "ev", "--device", "cpu")
    assert result.exit_code == 0, result.output
    evaluation = rundir.read_json(tmp_path / "ev" / "evaluation.json")
    assert evaluation["images"] == 4
    assert [Path(s["path"]).name for s in evaluation["skipped"]] == ["empty.png"]


def test_strict_training_stops_at_the_bad_file_before_training(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=3)
    BAD["html_as_png"](data / "dark")
    result = cli("train", data, "--out", tmp_path / "out", "--strict", *TINY)
    error_line(result, "page.png", "not an image")
    assert_nothing_trained(tmp_path / "out")
