"""pixlearn's numpy curves equal torchmetrics' and scikit-learn's (the libraries they replace at run
time, kept as the references here) on random, tied, saturated and one-sided scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk
from torchmetrics.functional import classification as tm

from pixlearn.classify.evaluation import curves


def cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.random(n) < 0.3
    return [
        ("random", rng.random(n), labels),
        ("informative", np.clip(0.3 * labels + rng.normal(0.4, 0.2, n), 0, 1), labels),
        ("tied", rng.integers(0, 5, n) / 4, labels),  # many equal scores, 0 and 1 among them
        ("saturated", np.where(labels, 1.0, rng.random(n)), labels),
        ("one positive", rng.random(20), np.arange(20) == 7),
        ("all positive", rng.random(20), np.ones(20, bool)),
    ]


@pytest.mark.parametrize(("name", "scores", "positives"), cases(), ids=[c[0] for c in cases()])
def test_precision_recall_and_average_precision_equal_the_libraries(name, scores, positives) -> None:
    precision, recall, thresholds = curves.precision_recall_curve(scores, positives)
    p_sk, r_sk, t_sk = sk.precision_recall_curve(positives, scores, drop_intermediate=False)
    np.testing.assert_allclose(precision, p_sk)
    np.testing.assert_allclose(recall, r_sk)
    np.testing.assert_allclose(thresholds, t_sk)
    p_tm, r_tm, t_tm = tm.binary_precision_recall_curve(torch.as_tensor(scores), torch.as_tensor(positives).long())
    np.testing.assert_allclose(precision, p_tm.numpy(), atol=1e-12)
    np.testing.assert_allclose(recall, r_tm.numpy(), atol=1e-12)
    np.testing.assert_allclose(thresholds, t_tm.numpy())
    assert curves.average_precision(scores, positives) == pytest.approx(sk.average_precision_score(positives, scores))


@pytest.mark.parametrize(("name", "scores", "positives"), cases()[:4], ids=[c[0] for c in cases()[:4]])
def test_the_roc_equals_torchmetrics(name, scores, positives) -> None:
    fpr, tpr, thresholds = curves.roc_curve(scores, positives)
    f_tm, t_tm, th_tm = tm.binary_roc(torch.as_tensor(scores), torch.as_tensor(positives).long())
    np.testing.assert_allclose(fpr, f_tm.numpy(), atol=1e-12)
    np.testing.assert_allclose(tpr, t_tm.numpy(), atol=1e-12)
    np.testing.assert_allclose(thresholds, th_tm.numpy())
    assert np.trapezoid(tpr, fpr) == pytest.approx(sk.roc_auc_score(positives, scores))


@pytest.mark.parametrize(("name", "scores", "positives"), cases()[:4], ids=[c[0] for c in cases()[:4]])
def test_the_calibration_error_equals_torchmetrics_with_its_bin_of_certain_answers(name, scores, positives) -> None:
    confidence = scores.astype(np.float32)
    ours = curves.binary_calibration_error(confidence, positives, bins=15)
    theirs = float(tm.binary_calibration_error(torch.as_tensor(confidence), torch.as_tensor(positives).long(), 15))
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert np.isnan(curves.binary_calibration_error(np.array([]), np.array([])))


def test_nothing_torchmetrics_is_imported_by_an_evaluation() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from pixlearn.classify.evaluation.interpretation import Evaluation\n"
        "probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])\n"
        "ev = Evaluation(['a', 'b'], np.array([0, 1, 1]), probs, ['x', 'y', 'z'], None, [])\n"
        "ev.to_dict()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torchmetrics', 'sklearn', 'torch._dynamo'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
