"""One source per option, checked up front; one error type for a person's mistakes; no side effects
left behind. Each test here reproduces a bug found by trying pixlearn as a new user."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn.classify.config import PredictConfig, TrainConfig
from pixlearn.classify.evaluation.interpretation import Evaluation
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.classify.training.loop import train
from pixlearn.core import devices
from pixlearn.core.errors import ConfigError, DataError, PixlearnError, RunError
from pixlearn.core.options import check_options, flag_of, option_fields
from pixlearn.field.config import FitConfig
from pixlearn.models.registry import UnknownModelError
from tests.corpus import cli, error_line, fake_run, make_class_folders, write_png
from tests.paths import FIXTURES

TINY = ["--model", "airnet-small", "--size", "16", "--epochs", "1", "--batch-size", "4", "--device", "cpu"]


def must_not_decode(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded images before checking the options")

    monkeypatch.setattr("pixlearn.classify.training.loop.load_training_data", refuse)


# ---------------------------------------------------------------------------------- checked up front


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--color", "greyscale"], ["color (--color)", "'greyscale'", "did you mean 'grayscale'"]),
        (["--fit", "crop2"], ["fit (--fit)", "'crop2'", "did you mean 'crop'"]),
        (["--optimizer", "adamm"], ["optimizer (--optimizer)", "did you mean 'adam'"]),
        (["--val-split", "1.5"], ["val_split (--val-split)", "less than 1"]),
        (["--shift", "0.7"], ["shift (--shift)", "less than 0.5"]),
        (["--model", "resnet-small", "--size", "10"], ["resnet-small needs inputs of at least 28x28", "10x10"]),
        (["--model", "resnet-smal"], ["unknown model 'resnet-smal'", "did you mean 'resnet-small'"]),
        (["--device", "gpu"], ["device (--device)", "'gpu'"]),
        (["--labels", "groups"], ["--group"]),
    ],
)
def test_every_option_is_checked_before_any_file_is_decoded(tmp_path: Path, monkeypatch, args, fragments) -> None:
    make_class_folders(tmp_path / "data")
    must_not_decode(monkeypatch)
    line = error_line(cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY, *args))
    for fragment in fragments:
        assert fragment in line
    assert line.count("crop2") <= 1  # said once, not once per file
    assert not (tmp_path / "out").exists()  # and no empty run folder is left behind


def test_an_invalid_option_never_reaches_the_saved_files(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data")
    with pytest.raises(ConfigError, match="fit"):
        train(tmp_path / "data", tmp_path / "out", TrainConfig(model="airnet-small", size=16, fit="crop2"))
    assert not (tmp_path / "out" / "model.json").exists() and not (tmp_path / "out" / "config.json").exists()


def test_fit_options_are_checked_too(tmp_path: Path) -> None:
    photo = write_png(tmp_path / "p.png", 90, size=12)
    for args, fragment in (
        (["--color", "grey"], "did you mean 'grayscale'"),
        (["--batch-size", "lots"], "batch (--batch-size)"),
        (["--size", "12y9"], "size (--size)"),
        (["--time", "soon"], "time (--time)"),
        (["--model", "sirne"], "did you mean 'siren'"),
    ):
        assert fragment in error_line(cli("fit", photo, "--out", tmp_path / "f", *args))
        assert not (tmp_path / "f").exists()


def test_group_rule_naming_a_missing_folder_says_which(tmp_path: Path) -> None:
    for leaf in ("boot", "sandal", "sneaker"):
        make_class_folders(tmp_path / "data" / leaf, {"x": 90}, per_class=3)
    line = error_line(
        cli(
            "train",
            tmp_path / "data",
            "--out",
            tmp_path / "o",
            *TINY,
            "--group",
            "b=boot,sandle",
            "--group",
            "s=sneaker",
        )
    )
    assert "b=boot,sandle" in line and "'sandle'" in line and "did you mean 'sandal'" in line
    assert not (tmp_path / "o").exists()


def test_the_cli_options_are_the_config_fields() -> None:
    result = cli("train", "--help")
    assert result.exit_code == 0
    for f, info, _ in option_fields(TrainConfig):
        if info.cli:
            assert f"--{f.name.replace('_', '-')}" in result.output, f.name
    fit_help = cli("fit", "--help").output
    for f, info, _ in option_fields(FitConfig):
        if info.cli:
            assert flag_of(f, info) in fit_help, f.name
    # choices come from the Literal type, one list for every verb's --color (tests/cli/test_same_flags.py)
    assert "[auto | grayscale | rgb | rgba]" in " ".join(w for w in result.output.split() if w != "│")  # unwrapped


def test_typed_options_reach_the_config_parsed(tmp_path: Path, monkeypatch) -> None:
    seen = {}

    def capture(source, out, config, **kwargs):
        seen["config"] = config
        raise ConfigError("stop here")

    monkeypatch.setattr("pixlearn.field.fit.fit_image", capture)
    photo = write_png(tmp_path / "p.png", 90, size=12)
    cli("fit", photo, "--batch-size", "full", "--size", "8x6", "--time", "2s", "--no-heldout")
    assert seen["config"] == FitConfig(batch=0, size=(8, 6), time="2s")


# ---------------------------------------------------------------------------------- what is saved


def test_config_json_stores_the_resolved_size(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=4)
    config = TrainConfig(model="airnet-small", epochs=1, batch_size=4, color="grayscale", device="cpu")
    assert config.size is None
    train(tmp_path / "data", tmp_path / "run", config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["size"] == 28 and saved["labels"] == "first"
    assert json.loads((tmp_path / "run" / "model.json").read_text())["input_size"] == [28, 28]


# ---------------------------------------------------------------------------------- commands


@pytest.mark.parametrize("model", ["siren", "hashgrid", "fourier", "seed-deep"])
def test_summary_of_a_coordinate_model(model: str) -> None:
    result = cli("summary", model)
    assert result.exit_code == 0, result.output
    assert "Total params" in result.output and "Traceback" not in result.output


def test_summary_of_a_classifier_uses_its_own_size() -> None:
    result = cli("summary", "seed-cnn")
    assert result.exit_code == 0 and "Total params: 120,242" in result.output
    assert "at least 109" in error_line(cli("summary", "seed-cnn", "--input", "50x50x1"))


def test_evaluate_on_the_current_folder_writes_where_it_says(tmp_path: Path, monkeypatch) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    data = make_class_folders(tmp_path / "held-out")
    monkeypatch.chdir(data)
    result = cli("evaluate", run, ".", "--device", "cpu")
    assert result.exit_code == 0, result.output
    written = run / "evaluations" / "held-out" / "evaluation.json"
    assert written.is_file() and json.loads(written.read_text())["images"] == 12
    assert "Evaluation of 12 images written to" in result.output


def test_a_failed_command_leaves_no_empty_run_folder_but_keeps_an_existing_one(tmp_path: Path) -> None:
    error_line(cli("train", tmp_path / "nowhere", "--out", tmp_path / "new", *TINY))
    assert not (tmp_path / "new").exists()
    error_line(cli("fit", tmp_path / "missing.png", "--out", tmp_path / "fit"))
    assert not (tmp_path / "fit").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    error_line(cli("train", tmp_path / "nowhere", "--out", tmp_path / "mine", *TINY))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_errors_from_the_api_name_the_api_argument_too(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=4)
    config = TrainConfig(model="airnet-small", size=16, epochs=1, batch_size=4, device="cpu")
    train(tmp_path / "data", tmp_path / "run", config)
    with pytest.raises(RunError, match=r"overwrite=True"):
        train(tmp_path / "data", tmp_path / "run", config)
    with pytest.raises(ConfigError, match=r"epochs \(--epochs\)"):
        TrainConfig(epochs=0).resolved()


def test_shift_tta_needs_the_mirror_and_images_to_move() -> None:
    with pytest.raises(ConfigError, match=r"tta_shift \(--tta-shift\) adds views to the mirror's: add --tta"):
        TrainConfig(tta_shift=1).resolved()
    with pytest.raises(ConfigError, match=r"--freeze computes each image's features once.*--tta-shift"):
        TrainConfig(model="efficientnet-lite0", pretrained=True, freeze=True, tta=True, tta_shift=1).resolved()
    assert TrainConfig(tta=True, tta_shift=1).resolved().tta_shift == 1


def test_user_errors_share_one_base_class_and_bugs_keep_their_traceback(tmp_path: Path, monkeypatch) -> None:
    for kind in (ConfigError, DataError, RunError, UnknownModelError):
        assert issubclass(kind, PixlearnError)

    def bug(*args, **kwargs):
        raise ValueError("a genuine bug")

    monkeypatch.setattr("pixlearn.classify.training.loop.load_training_data", bug)
    make_class_folders(tmp_path / "data")
    result = cli("train", tmp_path / "data", "--out", tmp_path / "out", *TINY)
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)  # not an `error:` line


def test_conditional_error_rates_carry_the_class_names() -> None:
    targets, preds = np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1])
    probs = np.eye(2)[preds] * 0.8 + 0.1
    ev = Evaluation(["city", "nature"], targets, probs, ["a", "b", "c", "d"], np.zeros((4, 2, 2, 1), np.uint8), [])
    rates = ev.conditional_error_rates()
    assert rates.classes == ("city", "nature")
    assert rates["city", "nature"] == pytest.approx(2 / 3) and rates["nature", "nature"] == 1.0
    assert rates.to_dict()["city"] == pytest.approx({"city": 1 / 3, "nature": 2 / 3})


# ---------------------------------------------------------------------------------- side effects


def test_importing_pixlearn_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    code = (
        "import matplotlib; matplotlib.use('svg');"
        "import pixlearn.classify.inference.prediction, pixlearn.classify.evaluation.interpretation;"
        "import pixlearn.field.fit, pixlearn.cli;"
        "from pixlearn.core.imaging import figures;"
        "figures.save(figures.plot_history([{'epoch': 1, 'loss': 0.5, 'accuracy': 0.7}]), 'h.png');"
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "svg"
    assert (tmp_path / "h.png").stat().st_size > 0


def test_predictor_tunes_the_allocator_only_when_asked(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(devices, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1)
    monkeypatch.setattr(devices, "_allocator_tuned", False)
    run = fake_run(tmp_path / "run", ["dark", "light"])
    Predictor.from_run(run, PredictConfig(device="cpu"))
    assert calls == []
    Predictor.from_run(run, PredictConfig(device="cpu"), tune_allocator=True)
    assert calls and calls[0][0] == devices._M_MMAP_THRESHOLD
    calls.clear()
    with devices.freed_memory_kept() as tuned:  # inside a caller's opt-in: nothing changes, nothing undone
        assert tuned
    assert calls == []
    devices.restore_allocator()
    calls.clear()
    with devices.freed_memory_kept() as tuned:  # on its own: set for the block, glibc's defaults after
        assert tuned and len(calls) == 2
    assert calls[-2:] == [
        (devices._M_MMAP_THRESHOLD, devices._GLIBC_DEFAULT_THRESHOLD),
        (devices._M_TRIM_THRESHOLD, devices._GLIBC_DEFAULT_THRESHOLD),
    ]


def test_training_restores_the_pixel_limit(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data", per_class=4)
    before = Image.MAX_IMAGE_PIXELS
    config = TrainConfig(model="airnet-small", size=16, epochs=1, batch_size=4, device="cpu", max_pixels=10_000)
    train(tmp_path / "data", tmp_path / "run", config)
    assert before == Image.MAX_IMAGE_PIXELS


# ---------------------------------------------------------------------------------- run directories of 0.1.0

LEGACY = FIXTURES / "legacy-runs"


def test_runs_written_by_pixlearn_0_1_load_and_predict_as_they_did(tmp_path: Path) -> None:
    expected = json.loads((LEGACY / "expected.json").read_text())
    predictor = Predictor.from_run(LEGACY / "classify", PredictConfig(device="cpu", precision="fp32"))
    for name in ("city.png", "nature.jpg"):
        got = predictor.predict_image(LEGACY / "images" / name).probabilities
        assert got == pytest.approx(expected[name], abs=1e-6)
    from pixlearn.field.rendering.renderer import RenderConfig, render
    from pixlearn.report import write_report

    rendered = render(LEGACY / "field", config=RenderConfig(scale=1)).pixels
    assert int(rendered.astype(np.int64).sum()) == expected["field_render_sum"]
    for kind in ("classify", "field"):
        copy = shutil.copytree(LEGACY / kind, tmp_path / kind)
        assert "Model summary" in write_report(copy).read_text(encoding="utf-8")


def test_a_spec_from_a_newer_pixlearn_is_refused_clearly(tmp_path: Path) -> None:
    run = shutil.copytree(LEGACY / "classify", tmp_path / "run")
    spec = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**spec, "format": "pixlearn-model/2"}))
    with pytest.raises(RunError, match=r"newer pixlearn \(spec version 2; this version reads up to 1\)"):
        Predictor.from_run(run, PredictConfig(device="cpu"))
    (run / "model.json").write_text(json.dumps({**spec, "colour": "rgb"}))
    with pytest.raises(RunError, match="unknown spec field"):
        Predictor.from_run(run, PredictConfig(device="cpu"))


def test_the_spec_round_trips_and_is_one_line_per_field() -> None:
    from pixlearn.core.storage.spec import FittedImage, ModelSpec

    for spec in (
        ModelSpec.classifier("seed-cnn", ["a", "b"], (150, 150), "grayscale", head="sigmoid", tta=True),
        ModelSpec.field("siren", FittedImage(20, 10, 3, "RGB", "x.png")),
    ):
        assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict(), default=list))) == spec
    assert {f.name for f in dataclasses.fields(ModelSpec)} >= {"model", "task", "kwargs", "classes", "image"}


# ---------------------------------------------------------------------------------- threads


def test_the_thread_count_is_chosen_at_the_start_recorded_and_repeats(tmp_path: Path, monkeypatch) -> None:
    import torch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "busy_cores", lambda: 1.0)  # one other process holds a core
    cores = torch.get_num_threads()
    assert devices.choose_threads(0, adapt_to_load=True) == max(1, cores - 1)
    assert devices.choose_threads(3, adapt_to_load=True) == 3  # --threads wins
    make_class_folders(tmp_path / "data", per_class=4)
    config = TrainConfig(model="airnet-small", size=16, epochs=2, batch_size=4, device="cpu", seed=3)
    first = train(tmp_path / "data", tmp_path / "a", config)
    chosen = json.loads((tmp_path / "a" / "config.json").read_text())["threads"]
    assert chosen == max(1, cores - 1) and first.metrics.epochs_run == 2  # recorded, not 0
    monkeypatch.setattr(devices, "busy_cores", lambda: 0.0)  # the load has gone: a rerun with the count repeats
    again = train(tmp_path / "data", tmp_path / "b", dataclasses.replace(config, threads=chosen))
    assert [h.loss for h in again.history] == [h.loss for h in first.history]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["threads"] == chosen
    assert "threads" in (tmp_path / "a" / "report.html").read_text(encoding="utf-8")


def test_busy_cores_counts_other_running_work() -> None:
    script = "import time; t = time.time() + 3\nwhile time.time() < t: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
    try:
        busy = devices.busy_cores(samples=9, interval_s=0.05)
    finally:
        for p in spinners:
            p.kill()
    assert busy >= 1  # at least one of the two spinners is on a core whenever we look


def test_every_threads_option_has_the_one_bound() -> None:
    """torch's thread count is a C int: every command's --threads refuses what would overflow it."""
    from pixlearn.classify.audit.inspection import CheckConfig
    from pixlearn.core.devices import MAX_THREADS
    from pixlearn.field.codec.compression import CompressConfig
    from pixlearn.field.config import FitConfig

    for config in (TrainConfig, FitConfig, CompressConfig, CheckConfig):
        with pytest.raises(ConfigError, match=rf"threads \(--threads\): must be at most {MAX_THREADS}"):
            check_options(config(threads=10**10))
        check_options(config(threads=MAX_THREADS))
