"""The learning-rate sweep (Smith's learning-rate range test, as fastai's `lr_find`) and `--lr auto`.

A sweep trains a copy of the network for a few steps at exponentially growing learning rates, one
training batch each, and reads a rate off the curve of the smoothed loss:

- the copy is `copy.deepcopy` of the network (or, where the run trains its head on cached features, of
  the head), with a fresh optimizer of the run's kind and parameter groups: each group keeps its
  `lr_scale`, so a backbone that trains at a fraction of the head's rate follows the swept rate at that
  fraction, and a frozen one (scale 0, no gradients) stays frozen. The caller's model, optimizer and
  random-number states (torch's, CUDA's, numpy's and Python's) are left as they were;
- the rates run from `start_lr` to `end_lr`, `start_lr * (end_lr / start_lr) ** (i / (steps - 1))`,
  1e-7 to 10 over 100 steps by default (fastai's range); the batches cycle when an epoch has fewer, and
  they, their augmentation and the loss are training's own;
- the loss is smoothed by a debiased exponential moving average (beta 0.98, fastai's `AvgSmoothLoss`),
  and the sweep stops once the smoothed loss is not finite or exceeds 4x its minimum so far;
- the rule is fastai's "valley" (`suggest`, `valley_index`).

`--lr auto` (`AutoRates`): a training run sweeps at the start of each phase, on a copy of the model as
it stands then (a fine-tuning run twice: the head phase's, then the full phase's), trains at the
suggestion and keeps each sweep as `lr_find[-PHASE].csv` and `figures/lr_find[-PHASE].png`; config.json
keeps "auto", metrics.json the rates found (`lr_found`), history.csv the rate of every epoch.

    >>> [f"{lr:.0e}" for lr in exponential_rates(1e-7, 10, 9)]
    ['1e-07', '1e-06', '1e-05', '1e-04', '1e-03', '1e-02', '1e-01', '1e+00', '1e+01']
    >>> valley_index([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 2.0, 5.0])
    3
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixlearn.classify.data.decoding import ImageSource
from pixlearn.classify.inference.heads import classification_loss
from pixlearn.classify.training import sampling
from pixlearn.classify.training.transfer import FrozenFeatures, enter_phase, train_mode, transfer_phase
from pixlearn.core import distributed
from pixlearn.core.devices import uses_bf16
from pixlearn.core.errors import ConfigError, DataError, RunError
from pixlearn.core.optim import Optimizer
from pixlearn.core.progress import SILENT, Progress
from pixlearn.core.storage import rundir

START_LR, END_LR, STEPS = 1e-7, 10.0, 100  # fastai's lr_find range
BETA = 0.98  # the smoothing of the loss (fastai's Recorder)
DIVERGENCE = 4.0  # the sweep stops where the smoothed loss passes this multiple of its minimum
RULE = "valley"
RULE_TEXT = "fastai's valley: about halfway into the longest decreasing stretch of the smoothed loss"
COLUMNS = ("lr", "loss", "smoothed_loss")  # lr_find.csv's

# (network, its training set, the run's config, a pass's number, device) -> that pass's batches on the device
BatchesOf = Callable[[nn.Module, ImageSource, Any, int, torch.device], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass(frozen=True)
class Curve:
    """What a sweep saw: each step's rate, its batch's loss and the smoothed loss, up to where it stopped."""

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    steps: int  # planned: the rule's window is measured in them
    stopped: str = ""  # why it ended before its last rate ("" when it swept them all)


@dataclass(frozen=True)
class LrFindResult:
    """What `lr_find` found and wrote: the suggested rate and the rule that read it off the curve, the
    curve itself (each step's rate, loss and smoothed loss), the phase swept ("" for a network trained in
    one phase; head or full when fine-tuning), why the sweep stopped early ("" if it did not), and the
    CSV (lr, loss, smoothed_loss) and figure written."""

    suggestion: float
    rule: str
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    phase: str
    stopped: str
    csv: Path
    figure: Path


# ---------------------------------------------------------------------------------- the curve


def exponential_rates(start: float = START_LR, end: float = END_LR, steps: int = STEPS) -> list[float]:
    """`steps` rates from `start` to `end`, each the last times one factor."""
    if not (0 < start < end and math.isfinite(end)):
        raise ConfigError(f"start_lr, end_lr: a sweep needs 0 < start_lr < end_lr, got {start:g}, {end:g}")
    if steps < 2:
        raise ConfigError(f"steps: a sweep needs at least 2 steps, got {steps}")
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


def run_curve(step: Callable[[float], float], lrs: Sequence[float], progress: Progress = SILENT) -> Curve:
    """Call `step(lr)` (one training step at that rate; its batch's loss) for each rate until the smoothed
    loss is not finite or passes DIVERGENCE x its minimum so far (that step is kept, as fastai keeps it)."""
    losses: list[float] = []
    smoothed: list[float] = []
    mean, lowest, stopped = 0.0, math.inf, ""
    for i, lr in enumerate(lrs):
        loss = float(step(lr))
        mean = BETA * mean + (1 - BETA) * loss
        value = mean / (1 - BETA ** (i + 1))  # debiased: the first steps are not pulled towards 0
        losses.append(loss)
        smoothed.append(value)
        progress.advance(1, loss=value)
        if not math.isfinite(value):
            stopped = f"the smoothed loss is not finite at {lr:.3g}"
            break
        lowest = min(lowest, value)
        if value > DIVERGENCE * lowest:
            stopped = f"the smoothed loss passed {DIVERGENCE:g}x its minimum at {lr:.3g}"
            break
    return Curve(tuple(lrs[: len(losses)]), tuple(losses), tuple(smoothed), len(lrs), stopped)


def valley_index(losses: Sequence[float]) -> int:
    """fastai's "valley" (fastai.callback.schedule.valley): the longest strictly decreasing subsequence of
    the losses (`longest[i]`: the longest ending at point i; the first longest wins), `end` its last point
    and `start = end - length` (the point before its first, where it is a contiguous run); the rate is at
    `start + int(length / 3) + int(length / 6)`, about halfway into it. fastai sets `start` inside its inner
    loop, when `longest[i]` first passes the best so far, so its start can lag a later, longer subsequence
    ending at the same point; here it is that subsequence's whole length.

    Why this rule rather than fastai's "steep" (the steepest slope of the loss against log-rate) or
    "minimum" (a tenth of the rate of the lowest loss): both read one or two points of a noisy curve,
    "steep" the pair with the largest drop and "minimum" the lowest point, which sits where the loss is
    about to blow up and moves with every batch's noise; the tenth is a fixed guess of how far back is
    safe. The valley is a property of the whole stretch over which the loss falls, so noise moves it
    little, and its middle is a rate at which the loss still falls fast; it is fastai's default since
    its suggestion functions were added."""
    n = len(losses)
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end, start = i, i - longest[i]
    sections = (end - start) / 3
    return max(0, start + int(sections) + int(sections / 2))


def suggest(curve: Curve) -> tuple[float, int]:
    """(the suggested rate, its index in the curve): `valley_index` of the smoothed loss over fastai's window,
    without its first tenth of the planned steps and its last 5 points (the blow-up), cut at its first
    value that is not finite; a sweep stopped within its first steps is read whole (its finite points)."""
    values = list(curve.smoothed)
    first = curve.steps // 10
    window = _finite_prefix(values[first : max(first, len(values) - 5)])
    if len(window) < 2:
        first, window = 0, _finite_prefix(values)
    if not window:
        raise RunError(f"the learning-rate sweep's first loss is not finite ({curve.stopped}): no rate to suggest")
    index = first + valley_index(window)
    return curve.lrs[index], index


def _finite_prefix(values: list[float]) -> list[float]:
    cut = next((i for i, v in enumerate(values) if not math.isfinite(v)), len(values))
    return values[:cut]


# ---------------------------------------------------------------------------------- sweeping a network


def sweep(
    target: nn.Module,
    optimizer: Optimizer,
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    config: Any,
    device: torch.device,
    progress: Progress = SILENT,
    *,
    weights: torch.Tensor | None = None,
    bf16: bool = False,
    lrs: Sequence[float] | None = None,
) -> Curve:
    """The sweep of `target` (a network, or the head trained on cached features) on a copy of it with a fresh
    optimizer of `optimizer`'s kind and groups; `batches(k)`: the k-th pass over the training batches."""
    lrs = exponential_rates() if lrs is None else lrs
    with kept_random_state():
        torch.random.default_generator.manual_seed(config.seed)  # the copy's dropout: the same sweep every time
        if device.type == "cuda":
            torch.cuda.manual_seed(config.seed)
        memo: dict[int, Any] = {}
        twin = copy.deepcopy(target, memo)
        fresh = _fresh_optimizer(optimizer, memo)
        train_mode(twin, config)
        stream = _cycled(batches)
        progress.task("learning-rate sweep", len(lrs))

        def step(lr: float) -> float:
            for group in fresh.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            x, y = next(stream)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = twin(x)
            loss = classification_loss(logits.float(), y, config.head, config.label_smoothing, weights)
            fresh.zero_grad(set_to_none=True)
            loss.backward()
            fresh.step()
            return loss.item()

        return run_curve(step, lrs, progress)


def _fresh_optimizer(optimizer: Optimizer, memo: dict[int, Any]) -> Optimizer:
    """An optimizer of `optimizer`'s class over the copies (`memo`: deepcopy's, original id -> copy) of its
    parameters, each group with its settings (lr_scale included) and no state; a group none of whose
    parameters was copied (the backbone's, in a sweep of the head on cached features) is left out."""
    groups = []
    for group in optimizer.param_groups:
        params = [memo[id(p)] for p in group["params"] if id(p) in memo]
        if params:
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
    if not groups:
        raise RunError("the learning-rate sweep's optimizer holds none of the swept network's parameters")
    return type(optimizer)(groups)


def _cycled(
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Pass after pass over the batches, for as many steps as the sweep takes."""
    for k in itertools.count():
        empty = True
        for batch in batches(k):
            empty = False
            yield batch
        if empty:
            raise DataError("no training batch to sweep the learning rate on")


@contextlib.contextmanager
def kept_random_state() -> Iterator[None]:
    """Torch's (and CUDA's, where it is in use), numpy's and Python's random states, as they were before the block."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def sweep_run(
    model: nn.Module,
    optimizer: Optimizer,
    train_set: ImageSource,
    frozen: FrozenFeatures | None,
    config: Any,
    epoch: int,
    device: torch.device,
    batches_of: BatchesOf,
    progress: Progress = SILENT,
    lrs: Sequence[float] | None = None,
) -> Curve:
    """The sweep of a run at `epoch`'s phase, trained as that epoch trains (after `transfer.enter_phase`): the
    head on the cached features where the epoch trains on them (--freeze, fine-tuning's head phase), else the
    whole network on the training set's augmented batches (`batches_of`: the training loop's)."""
    if frozen is not None and _on_features(frozen, epoch):
        labels = frozen.train_labels
        classes = labels.shape[1] if labels.ndim == 2 else int(labels.max()) + 1
        weights = sampling.loss_weights(labels, classes, config)

        def features(k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i in sampling.epoch_order(labels, classes, config, k):
                yield frozen.train[i].to(device), labels[i].to(device)

        return sweep(frozen.head, optimizer, features, config, device, progress, weights=weights, lrs=lrs)
    net = distributed.unwrap(model)
    weights = sampling.loss_weights(train_set.labels, len(train_set.classes), config)
    bf16 = uses_bf16(config.precision, device)
    passes = lambda k: batches_of(net, train_set, config, k, device)  # noqa: E731
    return sweep(net, optimizer, passes, config, device, progress, weights=weights, bf16=bf16, lrs=lrs)


def _on_features(frozen: FrozenFeatures, epoch: int) -> bool:
    network = (None, None)
    return frozen.steps(epoch, network) is not network  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- files


def sweep_files(folder: Path, phase: str, figures: Path | None = None) -> tuple[Path, Path]:
    """(the CSV, the figure) of a phase's sweep: lr_find.csv and .png, lr_find-head.csv and so on; the figure
    in `figures` (a run's figures/), else beside the CSV."""
    stem = "lr_find" + (f"-{phase}" if phase else "")
    return folder / f"{stem}.csv", (figures or folder) / f"{stem}.png"


def write_sweep(curve: Curve, suggestion: float, csv: Path, figure: Path, title: str) -> None:
    """The curve as CSV (lr, loss, smoothed_loss; every value as Python writes it, so it reads back exactly)
    and as a figure, log-x, the suggestion marked."""
    from pixlearn.core.imaging import figures

    rundir.write_csv(csv, COLUMNS, list(zip(curve.lrs, curve.losses, curve.smoothed, strict=True)))
    plot = figures.plot_lr_find(curve.lrs, curve.losses, curve.smoothed, suggestion, f"{RULE} {suggestion:.3g}", title)
    figures.save(plot, figure)


def read_curve(csv: Path, steps: int = STEPS) -> Curve:
    """A sweep written by `write_sweep`, back as its curve (`steps`: the sweep's planned steps)."""
    rows = rundir.read_csv(csv)
    try:
        lrs, losses, smoothed = (tuple(float(row[c]) for row in rows) for c in COLUMNS)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{csv}: not a learning-rate sweep (columns {', '.join(COLUMNS)} of numbers)") from exc
    if not lrs:
        raise RunError(f"{csv}: a learning-rate sweep without a step")
    return Curve(lrs, losses, smoothed, max(steps, len(lrs)))


# ---------------------------------------------------------------------------------- --lr auto


class AutoRates:
    """`--lr auto` in a training run, called once per epoch by the loop: the run's options with the epoch's
    phase's rate, found by a sweep at that phase's first epoch (on a copy of the model as it stands then) and
    kept in the run (`sweep_files`); a resumed run reads the sweeps of the phases it had begun back."""

    def __init__(
        self, run: rundir.RunDir, config: Any, data: tuple[ImageSource, FrozenFeatures | None], device: torch.device,
        progress: Progress, resumed: int, batches_of: BatchesOf,
    ) -> None:  # fmt: skip
        self.run, self.config, self.device, self.progress = run, config, device, progress
        self.train_set, self.frozen = data
        self.resumed, self.batches_of = resumed, batches_of
        self.found: dict[str, float] = {}

    def __call__(self, model: nn.Module, optimizer: Optimizer, epoch: int) -> Any:
        phase = transfer_phase(self.config, epoch) or ""
        if phase not in self.found:
            enter_phase(model, optimizer, self.config, epoch)  # the groups' scales as the epoch will train
            self.found[phase] = self._find(phase, model, optimizer, epoch)
        return dataclasses.replace(self.config, lr=self.found[phase])

    def _find(self, phase: str, model: nn.Module, optimizer: Optimizer, epoch: int) -> float:
        csv, figure = sweep_files(self.run.path, phase, self.run.figures)
        first = next(e for e in range(epoch + 1) if (transfer_phase(self.config, e) or "") == phase)
        if first < self.resumed:  # swept before the run was interrupted: the same curve, read back
            curve = read_curve(csv)
        else:
            args = (model, optimizer, self.train_set, self.frozen, self.config, epoch, self.device, self.batches_of)
            curve = distributed.on_main(lambda: sweep_run(*args, self.progress), RunError)
            if distributed.rank() == 0:
                title = f"Learning-rate sweep{f' ({phase} phase)' if phase else ''}"
                write_sweep(curve, suggest(curve)[0], csv, figure, title)
        lr = suggest(curve)[0]
        where = f" ({phase} phase)" if phase else ""
        line = f"--lr auto{where}: {lr:.3g}, by the {RULE} rule on a sweep of {len(curve.lrs)} steps ({csv.name})"
        self.progress.note(line)
        if distributed.rank() == 0:
            self.run.log(line)
        return lr


def auto_rates(
    config: Any, run: rundir.RunDir, data: tuple[ImageSource, FrozenFeatures | None], device: torch.device,
    progress: Progress, resumed: int, batches_of: BatchesOf,
) -> Callable[[nn.Module, Optimizer, int], Any]:  # fmt: skip
    """The loop's per-epoch options: `AutoRates` for `--lr auto`, else the run's options as they are."""
    if config.lr != "auto":
        return lambda _model, _optimizer, _epoch: config
    return AutoRates(run, config, data, device, progress, resumed, batches_of)


def recorded(run: rundir.RunDir, config: Any, history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """metrics.json's `lr_found` of a `--lr auto` run: each phase it trained (history.csv's phases) with its
    rate, read back from its sweep; {} for any other run."""
    if config.lr != "auto" or distributed.rank() != 0:
        return {}
    found = []
    for phase in dict.fromkeys(str(row.get("phase") or "") for row in history):
        csv, _ = sweep_files(run.path, phase, run.figures)
        found.append({"phase": phase, "lr": suggest(read_curve(csv))[0], "rule": RULE, "sweep": csv.name})
    return {"lr_found": found}
