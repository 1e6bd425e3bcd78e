"""`lr_find` (`pixlearn lr-find`): the learning-rate sweep of a training configuration on its data, as a
run would start it, written to OUT as lr_find.csv and lr_find.png.

The data are found, split and decoded as `train` does; the network is built (and its starting weights
loaded) as `train` builds it; the sweep (`training.lr_find`) runs on the training split. A network
trained from pretrained weights has two phases, and `phase` picks the one swept: "head" (the backbone
frozen, the head on the cached features, as --freeze and fine-tuning's head phase train it) or "full"
(the whole network, each stage of the backbone at its own scale of the rate); by default the head with
--freeze, else the whole network.

    >>> from pixlearn.classify.training.range_test import lr_find
    >>> result = lr_find("data", "runs/lr-find", TrainConfig(model="seed-cnn", size=64))   # doctest: +SKIP
    >>> result.suggestion, result.rule                                                     # doctest: +SKIP
    (0.0012, 'valley')
"""

from __future__ import annotations

from pathlib import Path

import torch

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training import transfer
from pixlearn.classify.training.loop import build_model, load_training_data, lr_at, model_spec, training_batches
from pixlearn.classify.training.lr_find import (
    END_LR,
    RULE,
    START_LR,
    STEPS,
    Curve,
    LrFindResult,
    exponential_rates,
    kept_random_state,
    suggest,
    sweep_files,
    sweep_run,
    write_sweep,
)
from pixlearn.core.devices import choose_threads, freed_memory_kept, resolve_device, thread_count
from pixlearn.core.errors import ConfigError
from pixlearn.core.imaging.images import pixel_limit
from pixlearn.core.progress import Progress, make_progress
from pixlearn.core.storage import rundir

PHASES = ("head", "full")


def lr_find(
    data: str | Path,
    out: str | Path | None = None,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    phase: str | None = None,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = STEPS,
) -> LrFindResult:
    """Sweep the learning rate of training `config` on the images under `data`; write OUT/lr_find.csv (lr,
    loss, smoothed_loss) and OUT/lr_find.png (the curve, log-x, the suggestion marked).

    phase: with --pretrained or --weights, "head" or "full" (None: head with --freeze, else full).
    start_lr, end_lr, steps: the sweep's rates, exponential from the first to the last.
    progress: None shows it when stderr is a terminal; True always; False never.
    """
    config = (config or TrainConfig()).resolved()  # every option checked before a file is read
    phase, epoch = sweep_phase(config, phase)
    lrs = exponential_rates(start_lr, end_lr, steps)
    out = Path("runs") / "lr-find" if out is None else Path(out)
    device = resolve_device(config.device)
    threads = choose_threads(config.threads, adapt_to_load=True) if device.type == "cpu" else torch.get_num_threads()
    with freed_memory_kept(), pixel_limit(config.max_pixels), thread_count(threads), make_progress(progress) as bar:
        curve = _swept(data, out, config, epoch, lrs, device, bar)
    suggestion = suggest(curve)[0]
    csv, figure = sweep_files(out, "")
    title = f"Learning-rate sweep of {config.model}" + (f" ({phase} phase)" if phase else "")
    write_sweep(curve, suggestion, csv, figure, title)
    return LrFindResult(suggestion, RULE, curve.lrs, curve.losses, curve.smoothed, phase, curve.stopped, csv, figure)


def sweep_phase(config: TrainConfig, phase: str | None) -> tuple[str, int]:
    """(the phase swept, "" for a network trained in one; an epoch of it, from 0), checked against `config`."""
    if not transfer.is_transfer(config):
        if phase is not None:
            raise ConfigError("phase (--phase): head and full are the phases of --pretrained and --weights runs")
        return "", 0
    phase = phase or ("head" if config.freeze else "full")
    if phase not in PHASES:
        raise ConfigError(f"phase (--phase): {phase!r} is not one of {', '.join(PHASES)}")
    if phase == "full" and config.freeze:
        raise ConfigError("phase (--phase) full: --freeze keeps the backbone fixed; drop --freeze to sweep it too")
    if phase == "head" and not (config.freeze or config.head_epochs):
        raise ConfigError("phase (--phase) head: --head-epochs 0 leaves fine-tuning no head phase")
    return phase, 0 if phase == "head" else config.head_epochs or 0


def _swept(
    data: str | Path, out: Path, config: TrainConfig, epoch: int, lrs: list[float], device: torch.device, bar: Progress
) -> Curve:
    """Decode the data, build the network as `train` does, set it up for `epoch`'s phase and sweep; the
    caller's random states are kept (the network is built from the run's seed, as training builds it)."""
    with kept_random_state():
        train_set, val_set, _, summary = load_training_data(data, config, bar)
        spec = model_spec(config, summary, train_set.images.shape[1])
        model, optimizer = build_model(spec, config, device)
        transfer.enter_phase(model, optimizer, config, epoch)
        # --freeze's and the head phase's cached features: in OUT, and in --feature-cache for later runs
        sets = (train_set, val_set)
        frozen = transfer.frozen_features(model, spec, config, rundir.RunDir(out), sets, device, bar, lr_at)
        return sweep_run(model, optimizer, train_set, frozen, config, epoch, device, training_batches, bar, lrs)
