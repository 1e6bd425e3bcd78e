"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", section 4.2):
one temperature (or one per output of the sigmoid head) fitted on the validation logits, so the
probabilities can be read as frequencies.

The fitted temperature is saved in the model spec; `inference.heads.probabilities(logits, spec.head,
spec.temperature)` applies it, so evaluation, prediction and the ONNX export give the same numbers.
Calibration error and the reliability table are in `evaluation.scores`.

    >>> import torch
    >>> logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    >>> round(fit_temperature(logits, torch.tensor([0, 1, 1, 0]), "softmax")[0], 1) > 1.0  # overconfident: T > 1
    True
"""

from __future__ import annotations

import torch

from pixlearn.classify.inference.heads import classification_loss

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0  # a search bound: outside it the validation set is degenerate


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


def bound_warning(temperature: tuple[float, ...], images: int) -> str | None:
    """A warning where a fitted temperature sits at a bound of its search (None where none does): the
    loss still fell beyond it, so the value is the bound's, not a fit. The lower bound: a validation
    split every image of which the model gets right with room to spare; the upper: one it gets wrong.

    >>> bound_warning((0.05,), 12)[:58]
    'the fitted temperature 0.05 is the lower bound of its sear'
    >>> bound_warning((1.3,), 12) is None
    True
    """
    effects = {"lower": "towards 0 and 1", "upper": "towards the same value for every class"}
    for index, t in enumerate(temperature):
        side = "lower" if t <= MIN_TEMPERATURE else "upper" if t >= MAX_TEMPERATURE else None
        if side is not None:
            which = f" of output {index}" if len(temperature) > 1 else ""
            return (
                f"the fitted temperature {t:g}{which} is the {side} bound of its search ({MIN_TEMPERATURE:g} to "
                f"{MAX_TEMPERATURE:g}; {images} validation images): the validation split cannot tell the right "
                f"temperature, and the calibrated probabilities are pushed {effects[side]}; a larger --val-split "
                "may fit it, and without --calibrate the probabilities stay as trained"
            )
    return None
