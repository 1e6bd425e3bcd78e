"""Training a classifier on a folder of images: the one loop every registered classifier uses.

    >>> from pixlearn.classify.training.loop import TrainConfig, train
    >>> result = train("data", "runs/city", TrainConfig(model="seed-cnn", size=150, epochs=10,
    ...                batch_size=10, color="grayscale", head="sigmoid"))      # doctest: +SKIP
    >>> result.history[-1].val_accuracy                                       # doctest: +SKIP
    0.94

Shape of a run: check the output folder, find and label the files, decode them once into
uint8 tensors, then per epoch `train_one_epoch` and `validate` (each returns a metric dict),
write history and a checkpoint, and at the end the model, its evaluation and its figures.
Works unchanged under torchrun: each process takes its DistributedSampler share of every epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.data import exclusion
from pixlearn.classify.data.decoding import (
    DecodeOptions,
    ImageSource,
    describe_data,
    label_counts,
    load_images,
    resolve_color,
    summarize_sets,
)
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.classify.data.splits import evaluated_on, plan_validation
from pixlearn.classify.data.streaming import open_stream
from pixlearn.classify.evaluation import multilabel, thresholds
from pixlearn.classify.evaluation.scores import confusion_counts, scores_from_confusion
from pixlearn.classify.inference.forward import predict_logits, to_input
from pixlearn.classify.inference.heads import classification_loss
from pixlearn.classify.training import lr_find, resuming, sampling, stopping, transfer
from pixlearn.classify.training.inputs import augment, epoch_batches, photo_options, read_cut
from pixlearn.classify.training.steps import optimise
from pixlearn.core import distributed, optim
from pixlearn.core.devices import choose_threads, freed_memory_kept, thread_count, uses_bf16
from pixlearn.core.errors import DataError, RunError
from pixlearn.core.imaging.images import pixel_limit
from pixlearn.core.progress import Progress, make_progress
from pixlearn.core.schedules import warmup_cosine
from pixlearn.core.storage import checkpoints, rundir, weights
from pixlearn.core.storage.classify_records import DataSummary, EpochRow, TrainingMetrics
from pixlearn.core.storage.records import RunConfig
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.registry import create_model


@dataclass(frozen=True)
class TrainResult:
    """What `train` wrote: the run directory, the trained model and its spec, history.csv's rows (one per
    epoch) and metrics.json's record (the last epoch's figures, what was fitted and the final evaluation)."""

    run: rundir.RunDir
    model: nn.Module
    spec: ModelSpec
    history: list[EpochRow]
    metrics: TrainingMetrics


class TrainingInterrupted(RuntimeError):
    """Ctrl-C during training; the last finished epoch is saved and can be resumed."""


def lr_at(step: int, total: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Learning rate at optimiser step `step` of `total`: a pure function, so resuming needs no state.
    Each phase of fine-tuning has a schedule of its own (`transfer.phase_steps`)."""
    step, total = transfer.phase_steps(config, step, total, steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle" and warmup == 0:
        warmup = max(1, int(0.25 * total))
    return warmup_cosine(step, total, config.lr, warmup=warmup, decay=config.schedule != "constant")


def build_model(spec: ModelSpec, config: TrainConfig, device: torch.device) -> tuple[nn.Module, optim.Optimizer]:
    """The seeded network of `spec` with its start weights, on the device, and its optimizer (train, lr-find)."""
    torch.manual_seed(config.seed)
    model = transfer.started(create_model(config.model, **spec.kwargs), config).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, make_optimizer(model, config)


def make_optimizer(model: nn.Module, config: TrainConfig) -> optim.Optimizer:
    """torch's Adam, AdamW or Nesterov SGD steps (`core.optim`: without torch.optim's wrapper, whose first
    use imports torch._dynamo)."""
    params, lr = transfer.trainable_groups(model, config), 0.0 if config.lr == "auto" else config.lr  # auto: per step
    if config.optimizer == "adam":
        return optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def _reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Sum per-process totals over all processes (a no-op in a single process)."""
    if distributed.world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ---------------------------------------------------------------------------------- epochs


def train_one_epoch(
    model: nn.Module,
    data: ImageSource,
    optimizer: optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    progress: Progress,
) -> dict[str, float]:
    """One pass over this process's share of the training set; returns loss and accuracy."""
    transfer.train_mode(model, config)
    steps_per_epoch = math.ceil(math.ceil(len(data) / distributed.world_size()) / config.batch_size)
    bf16 = uses_bf16(config.precision, device)
    weights = sampling.loss_weights(data.labels, len(data.classes), config)  # --balance weights

    def forward(x: torch.Tensor) -> torch.Tensor:
        # bf16 autocast runs convolutions and matmuls in bfloat16 (AMX / AVX512-BF16 on CPU: see
        # bench/README.md for the measured gain); weights, gradients and the loss stay float32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x)

    batches = training_batches(model, data, config, epoch, device)
    sums = optimise(batches, forward, optimizer, config, epoch, steps_per_epoch, lr_at, weights, progress)
    loss_sum, correct, seen = _reduce_sums(sums, device)
    return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1)}


def training_batches(
    model: nn.Module, data: ImageSource, config: TrainConfig, epoch: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's batches of an epoch on the device, augmented and normalised (the lr sweep's too)."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    # Rows and columns the network never reads are cut after augmentation (seed-cnn at 150x150
    # reads 109x109): the same loss and gradients for about half the convolution work (test;
    # bench/README.md). Validation's inference copy cuts them too (batches.inference_model).
    cut = read_cut(model, data.images.shape[-2:])
    order = sampling.epoch_order(data.labels, len(data.classes), config, epoch)  # --balance sampler draws
    for images, labels in data.batches(order):
        x = to_input(images, device, config.channels_last)
        x = augment(x, generator, config.flip, config.shift, config.erase, *photo_options(config))
        x = transfer.normalised(x, config)  # after augmentation; as spec.normalize in inference
        if cut is not None:
            x = x[..., : cut[0], : cut[1]]
        yield x, labels.to(device, non_blocking=True)


def validate(model: nn.Module, data: ImageSource, config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Loss and accuracy on the held-out set (each process scores its share; totals are summed)."""
    if len(data) == 0:
        return {}
    rank, world = distributed.rank(), distributed.world_size()
    share = data.subset(torch.arange(rank, len(data), world))  # a StreamingSet's subset stays undecoded
    logits = predict_logits(model, share.images, device, config.tta, *transfer.inference_options(config, device))
    labels = share.labels
    if labels.ndim == 2:  # many labels per image: ranking needs every image's scores, so they are gathered
        return multilabel.validation_figures(*distributed.gathered(logits.float().cpu(), labels))
    loss = classification_loss(logits, labels, config.head).item() * len(share)
    correct = (logits.argmax(1) == labels).sum().item()
    counts = confusion_counts(logits.argmax(1), labels, logits.shape[1]).flatten().tolist()
    loss, correct, n, *counts = _reduce_sums([loss, correct, float(len(share)), *counts], device)
    scores = scores_from_confusion(torch.tensor(counts).reshape(logits.shape[1], -1).numpy())
    return {"val_loss": loss / n, "val_accuracy": correct / n, **{f"val_{k}": v for k, v in scores.items()}}


# ---------------------------------------------------------------------------------- the run


def load_training_data(
    data: str | Path, config: TrainConfig, progress: Progress
) -> tuple[ImageSource, ImageSource, ImageSource, dict]:
    """Find, label and decode the train, validation and test images (`validation.plan_validation`: with
    --val-split 0 the test set validates); returns them and the data summary."""
    separator = config.label_sep if config.multi_label else None
    rule = LabelRule(config.labels, {k: tuple(v) for k, v in config.groups.items()}, separator)
    splits = exclusion.excluded(find_splits(data, rule, config.val_split, config.seed), config.exclude)
    plan = plan_validation(splits, config.val_split, config.seed)
    color = resolve_color([s.path for s in splits.train], config.color)  # type: ignore[arg-type]
    height, width = config.input_size()
    options = DecodeOptions(color, (height, width), config.fit)  # type: ignore[arg-type]
    sets = {}
    for name, samples in plan.sets().items():
        progress.task(f"decode {name}", len(samples))
        if config.stream or config.cache:
            sets[name] = open_stream(
                samples, options, splits.classes, config.strict, config.workers, config.cache, progress
            )
            continue
        sets[name] = load_images(samples, options, splits.classes, config.strict, config.workers or None, progress)
    _check_every_class_decoded(data, sets["train"], len(plan.train))
    summary = summarize_sets(sets, splits.unlabeled)
    summary.update({"source": splits.source, "validation": plan.describe(config.val_every), "color": color})
    summary |= {"size": [height, width], "fit": config.fit, "input": transfer.input_notes(config, color)}
    return sets["train"], sets.get("val", sets.get("test")), sets.get("test", sets.get("val")), summary


def _check_every_class_decoded(data: str | Path, train_set: ImageSource, listed: int) -> None:
    # A class whose every file was skipped would leave a model that cannot learn it; say why they were skipped.
    examples = "; ".join(f"{p}: {r}" for p, r in train_set.skipped[:3])
    if len(train_set) == 0:
        raise DataError(f"{data}: none of the {listed} training images could be decoded (e.g. {examples})")
    counts = label_counts(train_set.labels, len(train_set.classes)).tolist()
    lost = [c for c, n in zip(train_set.classes, counts, strict=True) if n == 0]
    if lost:
        raise DataError(f"{data}: no training image of class(es) {', '.join(lost)} could be decoded (e.g. {examples})")


def model_spec(config: TrainConfig, summary: dict, in_channels: int) -> ModelSpec:
    """Everything needed to rebuild the model and feed it images like those it was trained on."""
    return ModelSpec.classifier(
        config.model,
        summary["classes"],
        config.input_size(),
        summary["color"],
        fit=config.fit,
        head=config.head,
        tta=config.tta,
        tta_shift=config.tta_shift,
        precision=config.precision,
        multi_label=config.multi_label,
        **transfer.spec_fields(config),
    )


def train(
    data: str | Path,
    out: str | Path | None = None,
    config: TrainConfig = TrainConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
) -> TrainResult:
    """Train a classifier on the images under `data`, writing the run directory `out`.

    progress: None shows it when stderr is a terminal (live bars) and nothing otherwise; True
    always, as a log where stderr is no terminal (one line per epoch and per phase); False never.

    Under torchrun every process calls this: they join one process group for the run, each
    trains on its share of every epoch, and rank 0 alone writes the run directory.
    """
    config = (config or TrainConfig()).resolved()  # every option checked before a file is read
    out = Path("runs") / config.model if out is None else out
    with distributed.session(config.device):
        return _train(data, out, config, overwrite, resume, progress)


def _train(
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    overwrite: bool,
    resume: bool,
    progress: bool | None,
) -> TrainResult:
    run = rundir.RunDir(out)
    started = time.perf_counter()  # the command's wall time up to metrics.json (run_seconds)
    with contextlib.ExitStack() as held:
        # Rank 0 takes the run's write lock (held to the end) and prepares --out; every rank learns
        # whether it could, so none waits on a rank that stopped.
        distributed.on_main(lambda: _claim(run, held, overwrite, resume), RunError)
        if resume and run.config.exists():
            config = resuming.resumed_config(run, config)
        device = distributed.process_device(config.device)
        # Decided once, from the cores other work leaves free, and recorded in config.json: a run keeps
        # one count (it changes the order of float sums), so a rerun with it repeats exactly
        # (devices.choose_threads). Under torchrun the ranks do not guess apart: one per core or --threads.
        adapt = device.type == "cpu" and distributed.world_size() == 1
        threads = choose_threads(config.threads, adapt) if device.type == "cpu" else torch.get_num_threads()
        config = dataclasses.replace(config, threads=threads)
        with freed_memory_kept(), pixel_limit(config.max_pixels), thread_count(threads):
            model, spec, history, sets = _run_epochs(data, run, config, device, resume, progress)
            run_figures = {"epochs_run": len(history), **(history[-1] if history else {}), **transfer.recorded(spec)}
            # The other ranks wait here, so they return only once the run directory is complete.
            try:
                finish = lambda: _finish_run(run, model, spec, history, run_figures, *sets, device, config, started)  # noqa: E731
                metrics, spec = distributed.on_main(finish, RunError)  # spec: with what was fitted at the end
            except KeyboardInterrupt:  # every epoch is checkpointed: --resume writes the final outputs again
                raise _interrupted(run, "while writing the final outputs") from None
    return TrainResult(run, model, spec, resuming.history_rows(run, history), metrics)


def _claim(run: rundir.RunDir, held: contextlib.ExitStack, overwrite: bool, resume: bool) -> None:
    """Rank 0: hold the run's write lock until `held` closes, then check and create the directory."""
    held.enter_context(run.lock())
    run.prepare(overwrite=overwrite, resume=resume)


def _run_epochs(
    data: str | Path, run: rundir.RunDir, config: TrainConfig, device: torch.device, resume: bool, progress: bool | None
) -> tuple[nn.Module, ModelSpec, list[dict[str, float]], tuple[ImageSource, ImageSource, ImageSource]]:
    """Decode the data, build (or resume) the model and train it for the configured epochs."""
    is_main = distributed.rank() == 0
    with make_progress(progress if is_main else False) as bar:
        train_set, val_set, test_set, summary = load_training_data(data, config, bar)
        if resume:
            resuming.check_same_classes(run, summary["classes"])
        thresholds.check_rule(config, summary["classes"])  # --target-recall's class, before any epoch
        if is_main:
            _write_data_summary(run, summary, config)
            for line in describe_data(summary).splitlines():  # the data summary comes before any training
                bar.note(line)
        spec = model_spec(config, summary, train_set.images.shape[1])
        model, optimizer = build_model(spec, config, device)
        history: list[dict[str, float]] = []
        if resume and run.checkpoint.exists():  # its JSON copy may be missing: the tensor file is the checkpoint
            state = checkpoints.load_checkpoint(run, model, optimizer)
            history = resuming.resumed_history(state, run, config)
            if is_main:  # history.csv may hold an epoch the checkpoint missed (a crash between the two)
                resuming.write_history(run, history)
            bar.note(f"resuming {run.path} after epoch {len(history)}")
        frozen = transfer.frozen_features(model, spec, config, run, (train_set, val_set), device, bar, lr_at)
        trained = _wrap_distributed(model, device)
        try:
            sets = (train_set, val_set)
            history = _fit_epochs(trained, model, optimizer, sets, config, device, run, history, bar, frozen)
        except KeyboardInterrupt:  # between epochs (writing the checkpoint, the log): the checkpoint tells
            raise _interrupted(run, "between epochs") from None
    return model, spec, history, (train_set, val_set, test_set)


def _finish_run(
    run: rundir.RunDir,
    model: nn.Module,
    spec: ModelSpec,
    history: list[dict[str, float]],
    metrics: dict[str, Any],
    train_set: ImageSource,
    val_set: ImageSource,
    test_set: ImageSource,
    device: torch.device,
    config: TrainConfig,
    started: float,
) -> tuple[TrainingMetrics, ModelSpec]:
    """Rank 0's last step: the model (the best epoch's with early stopping), what `thresholds.fitted_spec`
    fits on the validation split (temperature, threshold), its evaluation on the test set (the validation
    split without one) and figures, metrics.json last; its record and the spec saved."""
    from pixlearn.classify.evaluation.interpretation import evaluate_set, write_evaluation
    from pixlearn.models.saliency import GradCam
    from pixlearn.report.page import write_report

    metrics = {**metrics, **stopping.final_weights(run, model, history, config.early_stopping, config.monitor)}
    metrics |= evaluated_on(DataSummary.read(run.data_summary)) | lr_find.recorded(run, config, history)
    spec, fitted = thresholds.fitted_spec(model, spec, val_set, config, device, metrics.get("evaluated_on", "test"))
    metrics |= fitted
    weights.save_model(model, spec, run.path)
    final_set = test_set if len(test_set) else train_set
    explainer = GradCam.for_spec(model, spec) if config.explain else None
    if spec.multi_label:
        metrics |= _multi_label_evaluation(model, spec, final_set, device, run, history, explainer)
    else:
        evaluation = evaluate_set(model, spec, final_set, device)
        write_evaluation(evaluation, run.path, history=history, train_set=train_set, explainer=explainer)
        metrics = {**metrics, "test_accuracy": evaluation.accuracy, "test_images": len(evaluation.targets)}
        metrics |= {f"test_{k}": v for k, v in evaluation.balanced_scores().items()}  # every class alike
        if metrics.get("evaluated_on") != "validation":  # without test/, these would be the val_ figures again
            metrics |= {f"test_{k}": v for k, v in evaluation.temperature_effect().items()}  # held out of the fit
    # this command's wall time: decoding, epochs, the calibration fit and the final evaluation (not the report)
    metrics["run_seconds"] = round(time.perf_counter() - started, 3)
    record = TrainingMetrics.from_dict(metrics, run.metrics)
    record.write(run.metrics)
    if record.calibration_warning:
        run.log(f"warning: {record.calibration_warning}")
    run.log(f"finished: {metrics}")
    write_report(run.path)
    return record, spec


def _multi_label_evaluation(
    model: nn.Module, spec: ModelSpec, data: ImageSource, device: torch.device, run: rundir.RunDir,
    history: list[dict[str, float]], explainer: Any,
) -> dict[str, Any]:  # fmt: skip
    """The final evaluation of a multi-label run, written into the run; metrics.json's test_ figures."""
    from pixlearn.classify.evaluation.multilabel_files import MultiLabelEvaluation, write_multi_label_evaluation

    evaluation = MultiLabelEvaluation.from_model(model, spec, data, device)
    found = write_multi_label_evaluation(evaluation, run.path, history=history, explainer=explainer)
    return {"test_images": found.images, "test_accuracy": 1.0 - found.hamming_loss, "test_macro_f1": found.macro_f1,
            "test_map_macro": found.map_macro, "test_map_micro": found.map_micro,
            "test_subset_accuracy": found.subset_accuracy, "test_hamming_loss": found.hamming_loss}  # fmt: skip


def _fit_epochs(
    trained: nn.Module,
    model: nn.Module,
    optimizer: optim.Optimizer,
    sets: tuple[ImageSource, ImageSource],
    config: TrainConfig,
    device: torch.device,
    run: rundir.RunDir,
    history: list[dict[str, float]],
    bar: Progress,
    frozen: transfer.FrozenFeatures | None,
) -> list[dict[str, float]]:
    """The epochs from `len(history)` on: `train_one_epoch` and `validate`, or in the epochs of --freeze and
    of fine-tuning's head phase (`frozen`, the run's cached features) the head's epochs on those features."""
    train_set, val_set = sets
    network = (train_one_epoch, validate)
    is_main = distributed.rank() == 0
    rates = lr_find.auto_rates(config, run, (train_set, frozen), device, bar, len(history), training_batches)
    for epoch in range(len(history), config.epochs):
        if (stop := stopping.stop_now(history, config.early_stopping, config.monitor)) is not None:
            bar.note(stop)
            if is_main:
                run.log(stop)
            break
        # Reseeding per epoch makes dropout and augmentation depend only on (seed, epoch),
        # so a resumed run repeats an uninterrupted one exactly.
        torch.manual_seed(config.seed * 7919 + epoch)
        epoch_config = rates(model, optimizer, epoch)  # --lr auto: the phase's rate, a sweep at its start
        distributed.record_shard(epoch, lambda e=epoch: _epoch_paths(train_set, config, e))
        started = time.perf_counter()
        bar.task(f"epoch {epoch + 1}/{config.epochs}", math.ceil(len(train_set) / distributed.world_size()))
        fit, check = frozen.steps(epoch, network) if frozen is not None else network
        try:
            row: dict[str, Any] = {"epoch": epoch + 1, **transfer.enter_phase(model, optimizer, config, epoch)}
            row |= fit(trained, train_set, optimizer, epoch_config, epoch, device, bar)
            if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
                row |= check(model, val_set, config, device)
        except KeyboardInterrupt:
            raise _interrupted(run, f"during epoch {epoch + 1}") from None
        row["lr"] = optimizer.param_groups[0]["lr"]
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        bar.note(_epoch_line(row, config.epochs))
        if is_main:
            resuming.write_history(run, history)
            if config.early_stopping:  # before the checkpoint: a resumed run finds the best weights
                stopping.save_if_best(run, model, history, config.monitor)
            state = {"history": history, "config": dataclasses.asdict(config)}
            checkpoints.save_checkpoint(run, model, optimizer, state)
            run.log(_epoch_line(row, config.epochs))
    return history


def _epoch_paths(data: ImageSource, config: TrainConfig, epoch: int) -> list[str]:
    return [data.paths[i] for b in epoch_batches(len(data), config.batch_size, epoch, config.seed) for i in b.tolist()]


def _interrupted(run: rundir.RunDir, when: str) -> TrainingInterrupted:
    """The error for Ctrl-C, saying what the checkpoint on disk holds (written atomically, so it is whole)."""
    saved = checkpoints.saved_epochs(run)
    if saved:
        message = (
            f"interrupted {when}; the checkpoint of epoch {saved} is kept in {run.path}. "
            f"Resume with: pixlearn train DATA --out {run.path} --resume"
        )
    else:
        message = f"interrupted {when}, before any checkpoint was written: nothing to resume; run again"
    if distributed.rank() == 0:
        run.log(message)
    return TrainingInterrupted(message)


def _epoch_line(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    parts += [f"{k} {row[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in row]
    return "  ".join(parts) + f"  ({row['seconds']:.1f}s)"


def _wrap_distributed(model: nn.Module, device: torch.device) -> nn.Module:
    if distributed.world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _write_data_summary(run: rundir.RunDir, summary: dict, config: TrainConfig) -> None:
    RunConfig(dataclasses.asdict(config)).write(run.config)
    DataSummary.from_dict(summary, run.data_summary).write(run.data_summary)
    rundir.write_csv(
        run.skipped, ["split", "path", "reason"], [[s["split"], s["path"], s["reason"]] for s in summary["skipped"]]
    )
    run.log(f"data: {summary['images']} images, classes {summary['classes']}, {len(summary['skipped'])} skipped")
    for s in summary["skipped"]:
        run.log(f"skipped {s['path']}: {s['reason']}")
    for s in summary.get("notes", []):
        run.log(f"note {s['path']}: {s['note']}")
