"""Calibration, operating points and unbalanced folders (classify.calibration, .operating, .balance)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.evaluation import calibration, scores, thresholds
from pixlearn.classify.evaluation.interpretation import Evaluation
from pixlearn.classify.evaluation.scores import confusion_counts, scores_from_confusion
from pixlearn.classify.inference import decisions, wording
from pixlearn.classify.inference.heads import classification_loss, probabilities
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.classify.training import sampling
from pixlearn.classify.training.stopping import best_epoch
from pixlearn.core.errors import ConfigError, RunError
from pixlearn.core.storage import weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.loading import load_model
from pixlearn.models.registry import create_model


def overconfident_logits(n: int, classes: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from softmax(z), logits scale x z: a model `scale` times too sure of itself."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * scale, labels


def spec_of(head: str = "softmax", classes: int = 3, **fields) -> ModelSpec:
    names = [f"c{i}" for i in range(classes)]
    return ModelSpec.classifier("airnet-small", names, (28, 28), "grayscale", head=head, **fields)


# ---------------------------------------------------------------------------------- calibration


def test_temperature_scaling_reduces_the_ece_of_an_overconfident_model_on_held_out_logits():
    logits, labels = overconfident_logits(4000, 3, scale=4.0, seed=0)
    val, test = slice(0, 2000), slice(2000, None)
    spec = spec_of()
    calibrated = ModelSpec.from_dict(
        {**spec.to_dict(), "temperature": list(calibration.fit_temperature(logits[val], labels[val], "softmax"))}
    )
    assert 3.4 < calibrated.temperature[0] < 4.6  # the overconfidence it was built with
    before_probs = probabilities(logits[test], spec.head, spec.temperature)
    after_probs = probabilities(logits[test], calibrated.head, calibrated.temperature)
    before = scores.expected_calibration_error(before_probs, labels[test])
    after = scores.expected_calibration_error(after_probs, labels[test])
    assert before > 0.15 and after < 0.03 and after < before / 5
    nll_before = scores.negative_log_likelihood(before_probs, labels[test])
    nll_after = scores.negative_log_likelihood(after_probs, labels[test])
    assert nll_after < nll_before


def brightness_set(n: int, seed: int):
    """8x8 grey images whose class (dark / light) shows only on average: the brightness overlaps."""
    from pixlearn.classify.data.decoding import ImageSet

    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    level = 0.5 + 0.08 * (2 * labels - 1) + 0.08 * torch.randn(n, generator=g)
    images = (level.view(n, 1, 1, 1).expand(n, 1, 8, 8) * 255).clamp(0, 255).round().to(torch.uint8)
    return ImageSet(images.contiguous(), labels, [f"{i}.png" for i in range(n)], ["dark", "light"], [(8, 8)] * n, [])


def test_calibrating_a_deliberately_overconfident_network_lowers_its_held_out_ece():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with torch.no_grad():  # the right direction, three times too steep: every answer too sure
        model[1].weight.copy_(torch.tensor([[-1.0] * 64, [1.0] * 64]) * 40 / 64)
        model[1].bias.copy_(torch.tensor([20.0, -20.0]))
    spec = ModelSpec("net", "classify", {"in_channels": 1, "num_classes": 2, "input_size": [8, 8]},
                     classes=("dark", "light"), input_size=(8, 8), color="grayscale", precision="fp32")  # fmt: skip
    cpu = torch.device("cpu")
    calibrated, metrics = thresholds.fitted_spec(model, spec, brightness_set(2000, 0), TrainConfig(calibrate=True), cpu)
    assert calibrated.temperature[0] > 2 and metrics["val_ece_after"] < metrics["val_ece_before"]
    assert metrics["val_nll_after"] < metrics["val_nll_before"]
    test = brightness_set(2000, 1)  # held out: no part in the fit
    before = Evaluation.from_model(model, spec, test, cpu).calibration()["ece"]
    after = Evaluation.from_model(model, calibrated, test, cpu).calibration()["ece"]
    assert before > 0.07 and after < before / 3
    effect = Evaluation.from_model(model, calibrated, test, cpu).to_dict()["temperature_effect"]
    assert effect["ece_before"] == before and effect["ece_after"] == after  # the held-out pair, in evaluation.json
    assert effect["nll_after"] < effect["nll_before"]
    assert Evaluation.from_model(model, spec, test, cpu).temperature_effect() == {}  # uncalibrated: nothing to compare


def test_the_sigmoid_head_gets_one_temperature_per_class_output():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (3000,), generator=g)
    # output 0 is 3x too sure, output 1 is underconfident (x 0.5): one temperature cannot fix both
    base = torch.randn(3000, 2, generator=g) + torch.nn.functional.one_hot(labels, 2) * 2.0 - 1.0
    target = torch.nn.functional.one_hot(labels, 2).float()
    flips = torch.rand(3000, 2, generator=g) > torch.sigmoid(base) * target + (1 - torch.sigmoid(base)) * (1 - target)
    logits = torch.where(flips, -base, base) * torch.tensor([3.0, 0.5])
    t = calibration.fit_temperature(logits, labels, "sigmoid")
    assert len(t) == 2 and t[0] > 1.5 and t[1] < 1.0
    spec = spec_of("sigmoid", 2, temperature=t)
    assert spec.temperature == t  # checked: two outputs, two temperatures


def test_ece_is_torchmetrics_definition_and_the_reliability_bins_add_up():
    from torchmetrics.functional.classification import multiclass_calibration_error

    logits, labels = overconfident_logits(500, 4, scale=3.0, seed=2)
    probs = torch.softmax(logits, 1)
    expected = float(multiclass_calibration_error(probs, labels, 4, n_bins=15))
    assert scores.expected_calibration_error(probs, labels) == pytest.approx(expected, abs=1e-6)
    bins = scores.reliability(probs.numpy(), labels.numpy())
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 500
    ece = sum(b["count"] / 500 * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    assert ece == pytest.approx(expected, abs=1e-5)


def test_a_temperature_that_makes_the_validation_ece_worse_is_warned_about():
    worse = {"nll_before": 0.5, "nll_after": 0.4, "ece_before": 0.02, "ece_after": 0.09}
    warning = thresholds.scaling_warning(worse, 12)
    assert "raised the validation ECE from 0.0200 to 0.0900 (12 validation images;" in warning
    assert thresholds.scaling_warning({**worse, "ece_after": 0.01}, 12) is None
    # six validation images: the temperature that lowers their NLL raises their ECE
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-1.0] * 64, [1.0] * 64]) * 8 / 64)
        model[1].bias.copy_(torch.tensor([4.0, -4.0]))
    spec = ModelSpec("net", "classify", {"in_channels": 1, "num_classes": 2, "input_size": [8, 8]},
                     classes=("dark", "light"), input_size=(8, 8), color="grayscale", precision="fp32")  # fmt: skip
    config = TrainConfig(calibrate=True)
    _, metrics = thresholds.fitted_spec(model, spec, brightness_set(6, 1), config, torch.device("cpu"))
    assert metrics["val_ece_after"] > metrics["val_ece_before"]  # NLL is what the fit lowers, not ECE
    assert metrics["calibration_warning"].startswith("temperature scaling raised the validation ECE")
    _, fine = thresholds.fitted_spec(model, spec, brightness_set(2000, 0), config, torch.device("cpu"))
    assert fine["val_ece_after"] <= fine["val_ece_before"] and "calibration_warning" not in fine


def test_the_ece_and_the_reliability_diagram_are_of_the_label_the_threshold_predicts():
    # sigmoid outputs (rows need not sum to 1) and a threshold well under 0.5 on "b"
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 400)
    p_b = np.clip(0.25 + 0.2 * targets + rng.normal(0, 0.08, 400), 0.01, 0.99)
    probs = np.stack([np.clip(0.6 - 0.1 * targets + rng.normal(0, 0.05, 400), 0.01, 0.99), p_b], 1)
    threshold = {"class": "b", "value": 0.35, "rule": "recall b=0.9"}
    ev = Evaluation(["a", "b"], targets, probs, [str(i) for i in range(400)], None, [], head="sigmoid",
                    threshold=threshold)  # fmt: skip
    assert (ev.preds != probs.argmax(1)).mean() > 0.3  # the threshold, not the argmax, names most "b"s
    confidence = probs[np.arange(400), ev.preds]
    data = ev.calibration()
    bins = data["bins"]
    assert sum(b["count"] for b in bins) == 400
    # the diagram's accuracy is the evaluation's: the bins hold the labels the run predicts
    assert sum(b["count"] * b["accuracy"] for b in bins if b["count"]) / 400 == pytest.approx(ev.accuracy)
    assert sum(b["count"] * b["confidence"] for b in bins if b["count"]) / 400 == pytest.approx(confidence.mean())
    by_hand = sum(b["count"] / 400 * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    assert data["ece"] == pytest.approx(by_hand, abs=1e-5)
    assert data["ece"] != pytest.approx(scores.expected_calibration_error(probs, targets), abs=1e-3)
    assert "predicted label, the threshold's pick" in data["note"] and "need not sum to 1" in data["note"]
    plain = Evaluation(["a", "b"], targets, probs, ev.paths, None, [])  # no threshold: torchmetrics' own figure
    from torchmetrics.functional.classification import multiclass_calibration_error

    ours = torch.as_tensor(probs, dtype=torch.float32)
    theirs = float(multiclass_calibration_error(ours, torch.as_tensor(targets), 2, n_bins=15))
    assert plain.calibration()["ece"] == pytest.approx(theirs, abs=1e-6)


def test_the_decided_labels_serve_before_and_after_scaling_a_thresholded_run():
    logits, labels = overconfident_logits(3000, 2, scale=3.0, seed=4)
    spec = spec_of("softmax", 2)
    hot = ModelSpec.from_dict({**spec.to_dict(), "temperature": [3.0]})
    before, after = (probabilities(logits, s.head, s.temperature).numpy() for s in (spec, hot))
    threshold = {"class": "c1", "value": 0.3, "rule": "recall c1=0.9"}
    effect = thresholds.temperature_effect(before, after, labels.numpy(), ("c0", "c1"), threshold)
    # the threshold's images before scaling: a threshold fitted on the unscaled probabilities picks the same
    labels_after = decisions.decide(after, ("c0", "c1"), threshold)
    rule = SimpleNamespace(target_recall="c1=0.9", equal_error=False)
    fitted = [thresholds.choose_threshold(p, labels.numpy(), ("c0", "c1"), rule) for p in (before, after)]
    assert (decisions.decide(before, ("c0", "c1"), fitted[0]) == decisions.decide(after, ("c0", "c1"), fitted[1])).all()
    assert effect["ece_before"] == scores.expected_calibration_error(before, labels.numpy(), labels_after)
    assert effect["ece_after"] < effect["ece_before"] and effect["nll_after"] < effect["nll_before"]


# ---------------------------------------------------------------------------------- operating points


def two_class_scores(positives: int, negatives: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = np.array([1] * positives + [0] * negatives)
    logit = np.where(targets == 1, rng.normal(1.0, 1.2, len(targets)), rng.normal(-1.0, 1.2, len(targets)))
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], 1), targets


def test_a_target_recall_threshold_holds_on_held_out_data_with_500_positives():
    classes = ("city", "nature")
    val_probs, val_targets = two_class_scores(1000, 1000, seed=0)
    test_probs, test_targets = two_class_scores(600, 600, seed=1)  # held out: 600 positives
    config = TrainConfig(target_recall="nature=0.95")
    threshold = thresholds.choose_threshold(val_probs, val_targets, classes, config)
    assert threshold["class"] == "nature" and threshold["rule"] == "recall nature=0.95"
    val_recall = (decisions.decide(val_probs, classes, threshold)[val_targets == 1] == 1).mean()
    assert val_recall >= 0.95
    recall = (decisions.decide(test_probs, classes, threshold)[test_targets == 1] == 1).mean()
    assert abs(recall - 0.95) <= 0.02
    assert threshold["value"] < 0.5  # a 0.95 recall asks for more than the 0.5 rule gives (~0.80 here)


def test_the_equal_error_threshold_balances_the_two_error_rates():
    classes = ("a", "b")
    probs, targets = two_class_scores(300, 1500, seed=3)  # unbalanced: 0.5 would not give equal rates
    threshold = thresholds.choose_threshold(probs, targets, classes, TrainConfig(equal_error=True))
    preds = decisions.decide(probs, classes, threshold)
    false_negative = (preds[targets == 1] == 0).mean()
    false_positive = (preds[targets == 0] == 1).mean()
    assert abs(false_negative - false_positive) < 0.01 and threshold["rule"] == "equal error rates"


def test_threshold_options_are_refused_where_they_cannot_be_fitted():
    with pytest.raises(ConfigError, match="never on the test set"):
        TrainConfig(model="airnet-small", calibrate=True, val_split=0).resolved()
    with pytest.raises(ConfigError, match="CLASS=R"):
        TrainConfig(model="airnet-small", target_recall="nature").resolved()
    with pytest.raises(ConfigError, match="two classes"):
        thresholds.check_rule(TrainConfig(equal_error=True), ["a", "b", "c"])
    with pytest.raises(ConfigError, match="did you mean 'nature'"):
        thresholds.check_rule(TrainConfig(target_recall="natur=0.9"), ["city", "nature"])


def test_abstaining_marks_images_and_reports_coverage_and_accuracy_on_the_rest():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [0.4, 0.6]])
    targets = np.array([0, 1, 1, 0])
    preds = decisions.decide(probs, ("a", "b"), None)
    facts = thresholds.coverage(probs, targets, preds, 0.7)
    assert facts == {"abstain_below": 0.7, "abstained": 2, "coverage": 0.5, "accuracy_on_kept": 1.0}


# ---------------------------------------------------------------------------------- unbalanced folders


def test_balanced_sampling_draws_every_class_equally():
    labels = torch.tensor([0] * 900 + [1] * 80 + [2] * 20)
    config = TrainConfig(balance="sampler", batch_size=64, seed=0)
    drawn = torch.cat(list(sampling.epoch_order(labels, 3, config, epoch=0)))
    assert len(drawn) == len(labels)
    shares = torch.bincount(labels[drawn], minlength=3).float() / len(drawn)
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.05)
    again = torch.cat(list(sampling.epoch_order(labels, 3, config, epoch=0)))
    assert torch.equal(drawn, again)  # seeded: a resumed run draws the same epoch
    plain = torch.cat(list(sampling.epoch_order(labels, 3, TrainConfig(batch_size=64), epoch=0)))
    assert sorted(plain.tolist()) == list(range(1000))  # without --balance: every image once


def test_class_weights_make_each_class_add_the_same_to_the_loss():
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = sampling.class_weights(labels, 2)
    per_class_total = torch.bincount(labels, weights=weights[labels])
    assert torch.allclose(per_class_total, per_class_total[0].expand(2))
    logits = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    for head in ("softmax", "sigmoid"):
        loss = classification_loss(logits, labels, head, class_weights=weights)
        unweighted = [classification_loss(logits[labels == k], labels[labels == k], head) for k in (0, 1)]
        assert loss.item() == pytest.approx(sum(unweighted).item() / 2, rel=1e-5)  # the mean of the class means


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_and_macro_f1_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    targets = rng.choice(4, 300, p=[0.7, 0.2, 0.1, 0.0])
    preds = np.where(rng.random(300) < 0.6, targets, rng.choice(4, 300))
    counts = confusion_counts(torch.as_tensor(preds), torch.as_tensor(targets), 4).numpy()
    scores = scores_from_confusion(counts)
    assert scores["balanced_accuracy"] == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(targets, preds), abs=1e-6
    )
    assert scores["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(targets, preds, average="macro"), abs=1e-6)


def test_early_stopping_can_watch_balanced_scores_higher_being_better():
    history = [{"epoch": e, "loss": 1.0, "accuracy": 0.5, "val_macro_f1": f} for e, f in ((1, 0.5), (2, 0.7), (3, 0.6))]
    assert best_epoch(history, "val_macro_f1") == 2
    assert TrainConfig(model="airnet-small", monitor="val_balanced_accuracy").resolved().monitor


# ---------------------------------------------------------------------------------- the spec


def test_a_calibrated_spec_round_trips_through_save_and_load_with_identical_probabilities(tmp_path: Path):
    torch.manual_seed(0)
    spec = spec_of("sigmoid", 2, temperature=(1.7, 0.8), abstain_below=0.6,
                   threshold={"class": "c1", "value": 0.37, "rule": "recall c1=0.95"})  # fmt: skip
    model = create_model(spec.model, **spec.kwargs).eval()
    weights.save_model(model, spec, tmp_path)
    loaded, loaded_spec = load_model(tmp_path)
    assert loaded_spec == spec
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = probabilities(model(images.float() / 255), spec.head, spec.temperature).numpy()
    predictor = Predictor(loaded, loaded_spec, torch.device("cpu"), precision="fp32")
    got = predictor.probabilities(images)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.array_equal(got, Predictor(model, spec, torch.device("cpu"), precision="fp32").probabilities(images))
    labels = [predictor._prediction("x", p) for p in got]
    assert [q.label for q in labels] == ["c1" if p[1] >= 0.37 else "c0" for p in got]
    assert [q.abstained for q in labels] == [bool(p.max() < 0.6) for p in got]


def test_old_specs_load_uncalibrated_and_bad_decisions_are_refused():
    spec = spec_of()
    old = {k: v for k, v in spec.to_dict().items() if k not in ("temperature", "threshold", "abstain_below")}
    assert ModelSpec.from_dict(json.loads(json.dumps(old))).temperature is None
    for bad, reason in (
        ({"temperature": [1.0, 2.0]}, "takes 1 temperature"),
        ({"temperature": [-1.0]}, "positive"),
        ({"threshold": {"class": "c0", "value": 0.5, "rule": "x"}}, "needs two classes"),
        ({"abstain_below": 1.5}, "probability"),
    ):
        with pytest.raises(RunError, match=reason):
            ModelSpec.from_dict({**spec.to_dict(), **bad})


def test_an_evaluation_reports_its_decision_rule_balanced_scores_and_calibration():
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    threshold = {"class": "b", "value": 0.42, "rule": "recall b=0.95"}
    ev = Evaluation(["a", "b"], np.array([0, 1, 1, 0]), probs, ["w", "x", "y", "z"], None, [], head="sigmoid",
                    threshold=threshold, abstain_below=0.65)  # fmt: skip
    assert ev.preds.tolist() == [0, 0, 1, 1]
    data = ev.to_dict()
    assert data["balanced_accuracy"] == 0.5 and "P(b) >= 0.4200" in data["decision"]
    assert data["abstention"]["abstained"] == 2 and data["abstention"]["coverage"] == 0.5
    assert "need not sum to 1" in data["calibration"]["note"]
    assert [c["class"] for c in data["precision_recall"]] == ["a", "b"]


def test_the_sigmoid_csvs_say_their_probabilities_need_not_sum_to_1(tmp_path: Path):
    pandas = pytest.importorskip("pandas")
    from pixlearn.classify.evaluation.interpretation import write_evaluation
    from pixlearn.classify.inference.prediction import predict
    from tests.corpus import make_class_folders

    spec = ModelSpec.classifier("resnet-small", ["dark", "light"], (16, 16), "grayscale", head="sigmoid")
    torch.manual_seed(0)
    weights.save_model(create_model(spec.model, **spec.kwargs), spec, tmp_path / "run")
    images = make_class_folders(tmp_path / "new", per_class=2)
    predict(tmp_path / "run", [images], tmp_path / "p.csv")
    table = pandas.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["path", "label", "p_dark", "p_light", "note"]  # one more field, no comment line
    assert set(table["note"]) == {wording.head_note("sigmoid")} and len(table) == 4
    ev = Evaluation(["dark", "light"], np.array([0, 1]), np.array([[0.7, 0.6], [0.2, 0.9]]), ["x", "y"],
                    None, [], head="sigmoid")  # fmt: skip
    write_evaluation(ev, tmp_path / "ev")
    evaluated = pandas.read_csv(tmp_path / "ev" / "predictions.csv")
    assert list(evaluated.columns) == ["path", "true", "predicted", "p_dark", "p_light", "note"]
    softmax = Evaluation(["dark", "light"], np.array([0, 1]), np.array([[0.7, 0.3], [0.2, 0.8]]), ["x", "y"], None, [])
    write_evaluation(softmax, tmp_path / "soft")
    assert "note" not in pandas.read_csv(tmp_path / "soft" / "predictions.csv").columns  # softmax rows sum to 1


def test_evaluate_prints_the_ece_rule_the_temperatures_by_class_and_what_the_csv_holds(tmp_path: Path):
    from tests.corpus import cli, make_class_folders

    threshold = {"class": "light", "value": 0.4, "rule": "recall light=0.9"}
    spec = ModelSpec.classifier("resnet-small", ["dark", "light"], (16, 16), "grayscale", head="sigmoid",
                                temperature=(0.5, 2.0), threshold=threshold)  # fmt: skip
    torch.manual_seed(0)
    weights.save_model(create_model(spec.model, **spec.kwargs), spec, tmp_path / "run")
    result = cli("evaluate", tmp_path / "run", make_class_folders(tmp_path / "images", per_class=4))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ECE confidence: the probability of the predicted label, the threshold's pick (it can be under 0.5)" in out
    assert "temperature (logits / T): dark 0.500, light 2.000 (one per class output)" in out
    assert re.search(r"temperature scaling on these 8 images: NLL [0-9.]+ -> [0-9.]+, ECE [0-9.]+ -> [0-9.]+", out)
    assert out.count("need not sum to 1") == 1  # said once, beside the ECE's confidence, not again for the CSV


# ---------------------------------------------------------------------------------- a run


@pytest.mark.slow  # a whole run, an evaluation and a prediction: about 15 s of CPU
def test_a_run_fits_temperature_and_threshold_on_validation_and_uses_them_everywhere(tmp_path: Path):
    from pixlearn.classify.evaluation.interpretation import evaluate
    from pixlearn.classify.inference.prediction import predict
    from pixlearn.classify.training.loop import train
    from tests.conftest import make_tree

    data = make_tree(tmp_path / "data", per_leaf={"train": 10, "test": 3}, sizes=((28, 28),))
    config = TrainConfig(
        model="airnet-small",
        size=28,
        color="grayscale",
        epochs=2,
        batch_size=8,
        calibrate=True,
        target_recall="nature=0.9",
        abstain_below=0.6,
        balance="weights",
        monitor="val_macro_f1",
    )
    result = train(data, tmp_path / "run", config)
    spec = weights.read_spec(tmp_path / "run")
    assert spec == result.spec and spec.temperature is not None and spec.threshold["class"] == "nature"
    metrics = result.metrics
    assert metrics.validation_effect() is not None  # NLL and ECE before and after, on the validation split
    assert metrics.val_nll_after <= metrics.val_nll_before + 1e-9  # the fit minimises validation NLL
    held_out = (metrics.test_ece_before, metrics.test_ece_after, metrics.test_nll_before, metrics.test_nll_after)
    assert None not in held_out
    assert metrics.run_seconds > sum(h.seconds for h in result.history)  # the whole run, not its epochs
    assert "validation split" in metrics.decisions_fitted_on and "(4 images)" in metrics.decisions_fitted_on
    ev = evaluate(tmp_path / "run", data / "test").evaluation
    saved = json.loads((ev.directory / "evaluation.json").read_text())
    assert saved["threshold"] == spec.threshold and saved["temperature"] == list(spec.temperature)
    assert {"balanced_accuracy", "macro_f1", "ece", "nll", "abstention"} <= set(saved)
    assert (ev.directory / "figures" / "reliability.png").exists()
    assert (ev.directory / "figures" / "precision_recall.png").exists()
    out = predict(tmp_path / "run", [data / "test"], tmp_path / "p.csv")
    header = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert header == "path,label,abstained,p_city,p_nature"  # a column, never a class
    by_path = {p: ev.classes[q] for p, q in zip(ev.paths, ev.preds, strict=True)}
    assert all(by_path[p.path] == p.label for p in out.predictions)  # one threshold in evaluate and predict
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Reliability diagram" in report and "chosen on the validation split" in report
