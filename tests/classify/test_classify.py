"""The first seed's workflow end to end: train, save, load, evaluate, predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pixlearn.classify.config import EvaluateConfig, PredictConfig
from pixlearn.classify.evaluation.interpretation import Evaluation, evaluate
from pixlearn.classify.inference.prediction import Predictor, predict
from pixlearn.classify.training.loop import TrainConfig, TrainResult, train
from pixlearn.core.storage import rundir
from pixlearn.models.loading import load_model
from tests.classify.conftest import figures_not_rasterised


def test_a_run_directory_holds_every_output(trained_run: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "model.json",
        "history.csv",
        "metrics.json",
        "data_summary.json",
        "skipped.csv",
        "log.txt",
        "evaluation.json",
        "confusion_matrix.csv",
        "per_class.csv",
    ):
        assert (trained_run / name).exists(), name
    for name in ("history.png", "confusion_matrix.png", "samples.png"):
        assert (trained_run / "figures" / name).stat().st_size > 1000
    spec = json.loads((trained_run / "model.json").read_text())
    assert spec["classes"] == ["city", "nature"]
    assert spec["input_size"] == [32, 32] and spec["color"] == "grayscale"
    history = rundir.read_csv(trained_run / "history.csv")
    assert [int(h["epoch"]) for h in history] == list(range(1, 9))
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])
    summary = json.loads((trained_run / "data_summary.json").read_text())
    # 10% of train/ per class validates (the default); the rest trains
    assert summary["per_class"]["train"] == {"city": 14, "nature": 14}
    assert summary["per_class"]["val"] == {"city": 2, "nature": 2} and summary["validation"]["set"] == "train-split"
    assert summary["sizes"]["train"]["most_common"][0]["size"] in ("40x40", "48x36")


def test_training_learns_the_stripes(trained_run: Path) -> None:
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.9


def test_saved_and_loaded_model_gives_identical_predictions(trained_run: Path, seed_tree: Path) -> None:
    from pixlearn.classify.data.decoding import DecodeOptions, load_images
    from pixlearn.classify.data.folders import LabelRule, find_splits

    model, spec = load_model(trained_run)
    splits = find_splits(seed_tree, LabelRule())
    data = load_images(splits.test, DecodeOptions("grayscale", (32, 32)), spec.classes)
    predictor = Predictor.from_run(trained_run, PredictConfig(device="cpu", precision="fp32"))
    direct = torch.softmax(model(data.images.float() / 255), 1).detach().numpy()
    assert np.array_equal(predictor.probabilities(data.images), direct)
    one = predictor.predict_image(data.paths[0])
    assert one.probabilities == pytest.approx(dict(zip(spec.classes, direct[0].tolist(), strict=True)), abs=1e-6)


def test_prediction_runs_in_the_precision_of_the_run_and_equals_its_evaluation(
    trained_run: Path, seed_tree: Path
) -> None:
    """By default the Predictor uses the run's precision (bf16 where the CPU has it), the same path as
    `evaluate`: equal probabilities; bf16 stays within bf16 rounding of float32."""
    from pixlearn.classify.data.decoding import DecodeOptions, load_images
    from pixlearn.classify.data.folders import LabelRule, find_splits
    from pixlearn.core.devices import uses_bf16

    model, spec = load_model(trained_run)
    assert spec.precision == "auto"
    data = load_images(find_splits(seed_tree, LabelRule()).test, DecodeOptions("grayscale", (32, 32)), spec.classes)
    cpu = torch.device("cpu")
    default = Predictor.from_run(trained_run, PredictConfig(device="cpu"))
    assert default.precision == "auto"
    assert next(default.model.parameters()).dtype == (torch.bfloat16 if uses_bf16("auto", cpu) else torch.float32)
    assert np.array_equal(default.probabilities(data.images), Evaluation.from_model(model, spec, data, cpu).probs)
    batched = default.probabilities(data.images)
    one_by_one = np.concatenate([default.probabilities(data.images[i : i + 1]) for i in range(len(data))])
    assert np.allclose(batched, one_by_one, atol=1e-6)  # batching never changes an image's scores
    bf16 = Predictor.from_run(trained_run, PredictConfig(device="cpu", precision="bf16")).probabilities(data.images)
    fp32 = Predictor.from_run(trained_run, PredictConfig(device="cpu", precision="fp32")).probabilities(data.images)
    assert not np.array_equal(bf16, fp32)
    assert np.abs(bf16 - fp32).max() < 0.05


def test_evaluation_matches_a_hand_computed_confusion_matrix() -> None:
    # 3 classes; true labels and predicted (argmax) labels chosen by hand
    targets = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    preds = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 2])
    probs = np.full((10, 3), 0.1)
    probs[np.arange(10), preds] = 0.8
    ev = Evaluation(
        ["a", "b", "c"], targets, probs, [f"{i}.png" for i in range(10)], np.zeros((10, 4, 4, 1), np.uint8), []
    )
    expected = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 3]])
    assert np.array_equal(ev.confusion_matrix(), expected)
    assert ev.accuracy == pytest.approx(0.7)
    assert np.allclose(ev.confusion_proportions(), expected / 10)
    rates = ev.conditional_error_rates()
    assert rates[0, 1] == pytest.approx(1 / 3) and rates[2, 0] == pytest.approx(1 / 4)
    per_class = {r["class"]: r for r in ev.per_class()}
    assert per_class["a"]["precision"] == pytest.approx(2 / 3)
    assert per_class["a"]["recall"] == pytest.approx(2 / 3)
    assert per_class["c"]["precision"] == pytest.approx(3 / 4)
    assert per_class["c"]["f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)
    assert ev.most_confused()[0][2] == 1
    assert set(ev.mistakes(16).tolist()) == {1, 6, 9}  # the three off-diagonal images
    confident = ev.mistakes(2, order="confident")
    assert len(confident) == 2 and set(confident.tolist()) <= {1, 6, 9}
    assert ev.probability_caption(0) == "a:0.80 / b:0.10 / c:0.10"


def test_evaluate_writes_tables_and_galleries(trained_run: Path, seed_tree: Path, tmp_path: Path) -> None:
    ev = evaluate(trained_run, seed_tree / "test", tmp_path / "ev", EvaluateConfig(device="cpu")).evaluation
    assert len(ev.targets) == 12
    saved = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert saved["accuracy"] == pytest.approx(ev.accuracy)
    assert np.array_equal(np.array(saved["confusion_matrix"]), ev.confusion_matrix())
    with open(tmp_path / "ev" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {"p_city", "p_nature"} <= set(rows[0])


def test_misclassified_gallery_shows_each_probability(trained_run: Path, tmp_path: Path) -> None:
    from tests.conftest import make_tree

    # Swap the label folders so that every prediction becomes a mistake.
    swapped = make_tree(tmp_path / "swap", per_leaf={"test": 2})
    (swapped / "test" / "city").rename(swapped / "test" / "tmp")
    (swapped / "test" / "nature").rename(swapped / "test" / "city")
    (swapped / "test" / "tmp").rename(swapped / "test" / "nature")
    ev = evaluate(trained_run, swapped / "test", tmp_path / "ev", EvaluateConfig(device="cpu")).evaluation
    assert ev.accuracy < 0.5
    assert (tmp_path / "ev" / "figures" / "misclassified.png").stat().st_size > 1000
    assert (tmp_path / "ev" / "figures" / "confident_mistakes.png").exists()


def test_predict_writes_a_csv_with_a_probability_per_class_and_resumes(
    trained_run: Path, seed_tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.csv"
    result = predict(trained_run, [seed_tree / "test"], out, PredictConfig(device="cpu"), gallery=tmp_path / "g.png")
    assert len(result.predictions) == 12 and (tmp_path / "g.png").exists()
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "p_city", "p_nature"]
    assert all(abs(float(r["p_city"]) + float(r["p_nature"]) - 1) < 1e-4 for r in rows)
    again = predict(trained_run, [seed_tree / "test"], out, PredictConfig(device="cpu"), resume=True)
    assert again.predictions == ()
    with open(out) as f:
        assert len(list(csv.DictReader(f))) == 12


def test_seed_head_and_resume(seed_tree: Path, tmp_path: Path) -> None:
    """The seed's sigmoid + binary cross-entropy head; a resumed run continues its history."""
    config = TrainConfig(model="resnet-small", size=28, color="grayscale", epochs=1, batch_size=10, head="sigmoid")
    with figures_not_rasterised():  # the resume below draws them
        train(seed_tree, tmp_path / "run", config)
    config.epochs = 2
    result = train(seed_tree, tmp_path / "run", config, resume=True)
    assert [h.epoch for h in result.history] == [1, 2]
    predictor = Predictor.from_run(tmp_path / "run", PredictConfig(device="cpu"))
    probs = predictor.predict_image(next((seed_tree / "test").rglob("*.png"))).probabilities
    assert all(0 <= p <= 1 for p in probs.values())  # per-class sigmoids: need not sum to 1


def test_a_finished_run_is_not_overwritten(trained_run: Path, seed_tree: Path) -> None:
    before = (trained_run / "model.safetensors").read_bytes()
    with pytest.raises(rundir.RunError, match="--overwrite"):
        train(seed_tree, trained_run, TrainConfig(size=32, epochs=1))
    assert (trained_run / "model.safetensors").read_bytes() == before


@pytest.fixture(scope="module")
def two_seeded_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult, TrainResult]:
    """The seed tree with one truncated PNG in it, trained twice alike: shared by the repeatability and the
    skipped-file tests (the broken file is skipped before training, so both runs see the same images)."""
    from tests.conftest import make_tree

    root = tmp_path_factory.mktemp("seeded")
    tree = make_tree(root / "data")
    bad = tree / "train" / "nature" / "sea" / "truncated.png"
    good = next((tree / "train" / "nature" / "sea").glob("*.png")).read_bytes()
    bad.write_bytes(good[: len(good) // 2])
    config = TrainConfig(size=28, color="grayscale", epochs=2, batch_size=8, flip=True, shift=0.1, seed=5)
    first = train(tree, root / "a", config)
    with figures_not_rasterised():  # the same figures as the first run's
        again = train(tree, root / "b", config)
    return bad, first, again


def test_runs_are_repeatable_with_a_seed(two_seeded_runs) -> None:
    _, a, b = two_seeded_runs
    assert [h.loss for h in a.history] == [h.loss for h in b.history]
    assert [h.val_accuracy for h in a.history] == [h.val_accuracy for h in b.history]


def test_bad_file_is_skipped_and_reported_in_the_run(two_seeded_runs) -> None:
    bad, result, _ = two_seeded_runs
    skipped = rundir.read_csv(result.run.skipped)
    assert [r["path"] for r in skipped] == [str(bad)]
    assert "truncated" in skipped[0]["reason"]
    summary = json.loads(result.run.data_summary.read_text())
    # the training folder's 32 good images, some held out to validate (the default --val-split 0.1)
    assert summary["images"]["train"] + summary["images"]["val"] == 32 and len(summary["skipped"]) == 1
    assert "truncated.png" in result.run.log_file.read_text()


@pytest.mark.parametrize("shift", [0, 1])
def test_tta_scores_each_image_and_its_mirror_in_evaluation_and_prediction(
    seed_tree: Path, tmp_path: Path, shift: int
) -> None:
    """--tta (and --tta-shift) is saved with the model; metrics, `evaluate` and `Predictor` all average
    image and mirror (and, with a shift, the moved images and their mirrors: half and a quarter each)."""
    from pixlearn.classify.data.decoding import DecodeOptions, load_images
    from pixlearn.classify.data.folders import LabelRule, find_splits

    config = TrainConfig(
        model="resnet-small", size=28, color="grayscale", epochs=1, batch_size=8, tta=True, tta_shift=shift,
        precision="fp32",
    )  # fmt: skip
    train(seed_tree, tmp_path / "run", config)
    model, spec = load_model(tmp_path / "run")
    assert spec.tta is True and spec.tta_shift == shift
    splits = find_splits(seed_tree, LabelRule())
    data = load_images(splits.test, DecodeOptions("grayscale", (28, 28)), spec.classes)
    x = data.images.float() / 255
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    with torch.no_grad():
        plain, mirror = model.eval()(x), lambda v: (model(v) + model(v.flip(3))) / 2
        moved = (mirror(padded[..., :28, :28]) + mirror(padded[..., 2:, 2:])) / 4
        mirror_only = mirror(x)
        logits = mirror_only / 2 + moved if shift else mirror_only
    expected = torch.softmax(logits, 1).numpy()
    assert not np.allclose(expected, torch.softmax(plain, 1).numpy(), atol=1e-4)  # the mirror changes the scores
    if shift:
        assert not np.allclose(expected, torch.softmax(mirror_only, 1).numpy(), atol=1e-4)  # and so do the shifts
    predictor = Predictor.from_run(tmp_path / "run", PredictConfig(device="cpu"))
    assert np.allclose(predictor.probabilities(data.images), expected, atol=1e-5)
    evaluation = Evaluation.from_model(model, spec, data, torch.device("cpu"))
    assert np.allclose(evaluation.probs, expected, atol=1e-5)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(float((expected.argmax(1) == data.labels.numpy()).mean()))


def test_training_without_the_unread_edges_takes_the_same_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """seed-cnn at 150x150 trains on the 109x109 it reads: the weights after a few steps equal
    those of training on the whole image (float32, augmentation on)."""

    from pixlearn.classify.data.decoding import ImageSet
    from pixlearn.classify.training import loop as train_module
    from pixlearn.classify.training.loop import make_optimizer, train_one_epoch
    from pixlearn.core.progress import SILENT
    from pixlearn.models.registry import create_model

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 150, 150), dtype=torch.uint8, generator=generator)
    data = ImageSet(images, torch.arange(12) % 2, [f"{i}.png" for i in range(12)], ["a", "b"], [(150, 150)] * 12, [])
    config = TrainConfig(model="seed-cnn", batch_size=4, epochs=1, precision="fp32", shift=0.1, flip=True)
    assert train_module.read_cut(create_model("seed-cnn"), (150, 150)) == (109, 109)

    def trained(cut: bool) -> dict[str, torch.Tensor]:
        if not cut:
            monkeypatch.setattr(train_module, "read_cut", lambda *_: None)
        torch.manual_seed(0)
        model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
        train_one_epoch(model, data, make_optimizer(model, config), config, 0, torch.device("cpu"), SILENT)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    cut, whole = trained(True), trained(False)
    for name in whole:  # Adam divides by each gradient's size, so sums taken in another order differ by ~1e-6
        torch.testing.assert_close(cut[name], whole[name], rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    start = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150)).state_dict()
    assert all(not torch.equal(whole[name], start[name]) for name in whole)  # the steps moved every tensor
