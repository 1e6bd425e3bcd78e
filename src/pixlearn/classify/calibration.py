"""Probabilities you can read as frequencies: the one logits-to-probabilities conversion, expected
calibration error, a reliability table, and temperature scaling (Guo et al. 2017, "On Calibration of
Modern Neural Networks", section 4.2).

`probabilities(logits, spec)` divides the logits by the spec's fitted temperature, then applies the
head's output function (softmax; or the seed's sigmoid, one temperature per class output, whose
probabilities need not sum to 1). Evaluation, prediction and the ONNX export all go through it, so
they give the same numbers.

ECE is torchmetrics' top-label definition (15 equal-width bins, L1) on the label the run predicts: the
confidence is the probability of the predicted label and the accuracy whether that label is right. Without
a threshold the predicted label is the most probable class, and the figure is torchmetrics'
`multiclass_calibration_error`; with a two-class threshold (`operating.decide`) it is the threshold's
label, whose probability can be under 0.5. For the sigmoid head the confidence is that class's own output,
not a share of a distribution over the classes.

    >>> import torch
    >>> from pixlearn.core.spec import ModelSpec
    >>> spec = ModelSpec.classifier("seed-cnn", ["a", "b"], (150, 150), "grayscale", temperature=(2.0,))
    >>> probabilities(torch.tensor([[0.0, 2.0]]), spec).tolist()  # softmax([0, 1])
    [[0.2689414322376251, 0.7310585975646973]]
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pixlearn.classify.losses import classification_loss
from pixlearn.classify.losses import probabilities as head_probabilities
from pixlearn.core.spec import ModelSpec

ECE_BINS = 15  # torchmetrics' default and Guo et al.'s
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # a search bound: outside it the validation set is degenerate


def scaled_logits(logits: torch.Tensor, temperature: tuple[float, ...] | None) -> torch.Tensor:
    """logits / T (one T for every output, or one per output column); the logits themselves for None."""
    if temperature is None:
        return logits
    return logits / torch.tensor(temperature, dtype=logits.dtype, device=logits.device)


def probabilities(logits: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Class probabilities of logits (N, K) as `spec` defines them: its temperature, then its head."""
    return head_probabilities(scaled_logits(logits, spec.temperature), spec.head)


def head_note(head: str) -> str:
    """What the probabilities of a head mean, for captions and CSV readers ("" for softmax)."""
    if head == "sigmoid":
        return "sigmoid head: each class's probability is its own output, so they need not sum to 1"
    return ""


def gallery_title(title: str, head: str) -> str | tuple[str, ...]:
    """A gallery's title, with a second line for the sigmoid head: its probabilities need not sum to 1."""
    note = head_note(head)
    return (title, note) if note else title


def csv_note(head: str) -> dict[str, str]:
    """The `note` column of the prediction CSVs: what the p_CLASS columns mean ({} for softmax, which needs none).

    A column rather than a comment line: pandas and spreadsheets read it as one more field.

    >>> csv_note("sigmoid")
    {'note': "sigmoid head: each class's probability is its own output, so they need not sum to 1"}
    """
    note = head_note(head)
    return {"note": note} if note else {}


def top_label(
    probs: np.ndarray | torch.Tensor, targets: np.ndarray | torch.Tensor, preds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) per image: the probability of the predicted label and whether it is the true
    one; `preds` are the labels the run predicts (default: the most probable class).

    >>> confidence, correct = top_label(np.array([[0.55, 0.45]]), np.array([1]), preds=np.array([1]))
    >>> confidence.tolist(), correct.tolist()  # a threshold of 0.4 on the second class picked it
    ([0.45], [True])
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if len(t) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    labels = p.argmax(1) if preds is None else np.asarray(preds, dtype=np.int64)
    return p[np.arange(len(t)), labels], labels == t


def expected_calibration_error(
    probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, preds: np.ndarray | None = None
) -> float:
    """ECE (15 bins, L1, torchmetrics) of class probabilities (N, K) against integer targets (N,), on the
    predicted labels `preds` (default: the most probable class).

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    # imported here: torchmetrics takes 1-3 s to import, which every command that only predicts would pay
    from torchmetrics.functional.classification import binary_calibration_error

    confidence, correct = top_label(probs, targets, preds)
    if len(correct) == 0:
        return math.nan
    # Top-label ECE is the binary ECE of (confidence, correct): torchmetrics' multiclass version reduces to
    # it with the argmax. The clamp keeps float rounding (a sigmoid's 1.0000001) from reading as a logit.
    c = torch.as_tensor(confidence, dtype=torch.float32).clamp(0, 1)
    ece = binary_calibration_error(c, torch.as_tensor(correct).long(), n_bins=ECE_BINS, validate_args=False)
    return round(float(ece), 6)


def negative_log_likelihood(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> float:
    """Mean -log p(true class): the loss temperature scaling lowers (clipped at 1e-12, never infinite)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets, dtype=np.int64)
    if len(t) == 0:
        return math.nan
    return float(-np.log(np.clip(p[np.arange(len(t)), t], 1e-12, 1.0)).mean())


def reliability(
    probs: np.ndarray, targets: np.ndarray, preds: np.ndarray | None = None, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """The reliability diagram's table: per equal-width confidence bin, its range, image count, mean
    confidence and accuracy of the predicted label (`preds`, default the most probable class; empty bins
    have NaN confidence and accuracy).

    >>> rows = reliability(np.array([[0.95, 0.05], [0.3, 0.7]]), np.array([0, 0]), bins=2)
    >>> [(r["count"], r["accuracy"]) for r in rows]
    [(0, nan), (2, 0.5)]
    """
    confidence, correct = top_label(probs, targets, preds)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": n,
                "confidence": float(confidence[inside].mean()) if n else math.nan,
                "accuracy": float(correct[inside].mean()) if n else math.nan,
            }
        )
    return rows


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, head: str) -> tuple[float, ...]:
    """Temperature(s) minimising the head's loss (NLL, or the sigmoid head's binary cross-entropy) of
    `logits` / T on held-out images: one T for softmax, one per class output for sigmoid (the outputs are
    separate binary problems, so the joint minimum is each one's own). LBFGS on log T in float64."""
    z = logits.detach().to(torch.float64)
    y = targets.detach().to(torch.long)
    log_t = torch.zeros(z.shape[1] if head == "sigmoid" else 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = classification_loss(z / log_t.exp(), y, head)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = log_t.detach().exp().clamp(MIN_TEMPERATURE, MAX_TEMPERATURE)
    if not torch.isfinite(fitted).all():  # a degenerate set (one class, all logits 0): leave it uncalibrated
        fitted = torch.ones_like(fitted)
    return tuple(round(float(t), 6) for t in fitted)
