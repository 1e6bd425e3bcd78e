"""Classification verbs: train, lr-find, evaluate, predict, summary, models, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pixlearn.classify.config import FALLBACK_SIZE, MODEL, RUN, EvaluateConfig, PredictConfig, TrainConfig
from pixlearn.classify.data.folders import parse_groups
from pixlearn.classify.training.recipes import get_recipe, list_recipes
from pixlearn.cli.application import (
    _escape,
    command,
    console,
    group_option,
    table,
    typed_on_command_line,
    with_options,
)
from pixlearn.core.errors import ConfigError
from pixlearn.core.options import parse_size
from pixlearn.core.storage.spec import CHANNELS, MAX_CLASSES, MAX_FIELD_CHANNELS, MAX_INPUT_SIDE


@command(
    "train",
    epilog="Example: pixlearn train data --model seed-cnn --size 150 --color grayscale "
    "--epochs 10 --batch-size 10 --head sigmoid --out runs/city",
)
@with_options(TrainConfig, exclude=("groups",))
def train_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(
        ..., help="Folder with train/ and test/ (or one folder to split), or a CSV of path,label."
    ),
    out: Path = typer.Option(
        Path("runs/train"), "--out", "-o", help="Run directory to write [default: runs/train].", rich_help_panel=RUN
    ),
    group: list[str] = group_option(),
    recipe: str = typer.Option(
        None,
        help=f"A named preset ({', '.join(list_recipes())}); options typed beside it override it.",
        rich_help_panel=MODEL,
    ),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint.", rich_help_panel=RUN),
    overwrite: bool = typer.Option(False, help="Replace a finished run in --out.", rich_help_panel=RUN),
    **options: Any,
) -> None:
    """Train a classifier on a folder tree of images and write a run directory."""
    from pixlearn.classify.training.loop import train
    from pixlearn.core.distributed import is_main_process

    config = _train_config(ctx, options, group, recipe)
    result = train(data, out, config, overwrite=overwrite, resume=resume, progress=True)
    if is_main_process() and result.run.metrics.exists():  # under torchrun, one process prints
        _print_evaluation(result.run.path, result.spec.multi_label)  # the data summary was printed before training
        if warning := result.metrics.calibration_warning:
            console.print(f"[yellow]warning[/yellow]: {_escape(warning)}")
        console.print(f"\nRun written to [bold]{_escape(str(result.run.path))}[/bold]")
        _print_csv_note(result.spec.head)


def _train_config(ctx: typer.Context, options: dict[str, Any], group: list[str], recipe: str | None) -> TrainConfig:
    """The TrainConfig of `train`'s (and `lr-find`'s) options: the --group rules, and a --recipe's preset
    under the options typed beside it."""
    options["groups"] = {k: list(v) for k, v in parse_groups(group).items()} if group else {}
    if recipe:
        typed = {k: v for k, v in options.items() if typed_on_command_line(ctx, "group" if k == "groups" else k)}
        return get_recipe(recipe, **typed)
    return TrainConfig(**options)


# What only a training run uses (its schedule, validation, decisions): the sweep takes train's other options.
NOT_SWEPT = ("groups", "lr", "epochs", "schedule", "warmup_epochs", "early_stopping", "val_every", "monitor",
             "calibrate", "target_recall", "equal_error", "abstain_below", "tta", "tta_shift", "explain")  # fmt: skip


@command("lr-find", epilog="Example: pixlearn lr-find data --model resnet-small --size 64 --out runs/lr-find")
@with_options(TrainConfig, exclude=NOT_SWEPT)
def lr_find_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(
        ..., help="Folder with train/ and test/ (or one folder to split), or a CSV of path,label."
    ),
    out: Path = typer.Option(
        Path("runs/lr-find"),
        "--out",
        "-o",
        help="Folder to write lr_find.csv and lr_find.png into [default: runs/lr-find].",
        rich_help_panel=RUN,
    ),
    group: list[str] = group_option(),
    recipe: str = typer.Option(
        None,
        help=f"A named preset ({', '.join(list_recipes())}); options typed beside it override it.",
        rich_help_panel=MODEL,
    ),
    phase: str = typer.Option(
        None,
        help="With --pretrained or --weights: sweep the head alone (backbone frozen, on cached features) or "
        "the whole network [head | full] [default: head with --freeze, else full].",
        rich_help_panel=MODEL,
    ),
    **options: Any,
) -> None:
    """Sweep the learning rate (fastai's lr_find) on the training split; print the rate the curve suggests."""
    from pixlearn.classify.training.lr_find import RULE_TEXT
    from pixlearn.classify.training.range_test import lr_find

    result = lr_find(data, out, _train_config(ctx, options, group, recipe), progress=True, phase=phase)
    where = f" ({result.phase} phase)" if result.phase else ""
    console.print(f"suggested learning rate{where}: [bold]{result.suggestion:.3g}[/bold]")
    console.print(f"rule: {result.rule}, {RULE_TEXT}", highlight=False)
    swept = f"swept {len(result.lrs)} steps from {result.lrs[0]:.2g} to {result.lrs[-1]:.3g}"
    console.print(swept + (f"; stopped early: {result.stopped}" if result.stopped else ""), highlight=False)
    console.print(f"curve written to [bold]{_escape(result.csv)}[/bold] and [bold]{_escape(result.figure)}[/bold]")


@command("evaluate", epilog="Example: pixlearn evaluate runs/city data/test")
@with_options(EvaluateConfig)
def evaluate_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn train`."),
    data: Path = typer.Argument(
        ..., help="Labelled images: a split folder (data/test), a root holding test/, or a label CSV."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write [default: RUN/evaluations/NAME]."),
    **options: Any,
) -> None:
    """Accuracy, confusion matrix, conditional error rates, per-class scores and galleries."""
    from pixlearn.classify.evaluation.interpretation import evaluate

    result = evaluate(run, data, out, EvaluateConfig(**options))
    _print_evaluation(result.directory, not hasattr(result.metrics, "confusion_matrix"))
    images = result.metrics.images
    console.print(f"\nEvaluation of {images} images written to [bold]{_escape(str(result.directory))}[/bold]")


@command("predict", epilog="Example: pixlearn predict runs/city new_images/ --csv predictions.csv")
@with_options(PredictConfig)
def predict_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn train`."),
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    csv: Path = typer.Option(
        Path("predictions.csv"),
        help="CSV to write: path, label, abstained (with --abstain-below), one probability column per class "
        "(with --head sigmoid each is its own output: they need not sum to 1) [default: predictions.csv].",
    ),
    gallery: Path = typer.Option(None, help="PNG grid of a seeded sample [default: beside the CSV]."),
    resume: bool = typer.Option(False, help="Keep the rows already in --csv and predict only the rest."),
    **options: Any,
) -> None:
    """Predict labels of new images; rows are written as they are computed."""
    from pixlearn.classify.inference.prediction import predict

    gallery = gallery or csv.with_suffix(".png")
    result = predict(run, paths, csv, PredictConfig(**options), gallery=gallery, resume=resume)
    counts: dict[str, int] = {}
    for p in result.predictions:
        counts[p.label] = counts.get(p.label, 0) + 1
    console.print(table("Predicted labels", ["label", "images"], [[k, v] for k, v in sorted(counts.items())]))
    for path, reason in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {_escape(path)}: {_escape(reason)}", highlight=False)
    console.print(
        f"{len(result.predictions)} predictions written to [bold]{_escape(csv)}[/bold], "
        f"gallery [bold]{_escape(gallery)}[/bold]"
    )
    _print_decision_notes(run, result.predictions)


def _print_label_sets(directory: Path) -> None:
    """A multi-label evaluation: the set's figures, then the per-label table (best average precision first)."""
    from pixlearn.core.storage.classify_records import MultiLabelEvaluationRecord

    ev = MultiLabelEvaluationRecord.read(directory / MultiLabelEvaluationRecord.FILE)
    console.print(
        f"\nmAP [bold]{ev.map_macro:.4f}[/bold] (macro; micro {ev.map_micro:.4f}), subset accuracy "
        f"{ev.subset_accuracy:.4f}, Hamming loss {ev.hamming_loss:.4f} on {ev.images} images; labels per image "
        f"{ev.cardinality_given:.2f} given, {ev.cardinality_predicted:.2f} predicted"
    )
    thresholds = dict(zip(ev.classes, ev.thresholds or [0.5] * len(ev.classes), strict=True))
    rows = [[r.label, *(f"{v:.4f}" for v in (r.average_precision, r.precision, r.recall, r.f1)), r.support,
             f"{thresholds[r.label]:.4f}"] for r in ev.per_label]  # fmt: skip
    console.print(table("Per label", ["label", "AP", "precision", "recall", "F1", "support", "threshold"], rows))


def _print_csv_note(head: str) -> None:
    """Beside the announced files: what predictions.csv's probabilities mean for the sigmoid head."""
    from pixlearn.classify.inference.wording import head_note

    if note := head_note(head):
        console.print(f"note: {note} (predictions.csv's note column)", highlight=False)


def _print_decision_notes(run: Path, predictions: list) -> None:
    """The run's threshold, how many images abstained, and what a sigmoid head's probabilities mean."""
    from pixlearn.classify.inference.wording import head_note
    from pixlearn.core.storage.weights import read_spec

    spec = read_spec(run)
    if spec.threshold:
        t = spec.threshold
        console.print(f"labels: {_escape(t['class'])} where its probability >= {t['value']:.4f} ({_escape(t['rule'])})")
    abstained = sum(p.abstained for p in predictions)
    if abstained:
        console.print(f"{abstained} of {len(predictions)} images abstained (top probability below the threshold)")
    if head_note(spec.head):
        console.print(f"note: {head_note(spec.head)}")


@command(
    "summary",
    epilog="Example: pixlearn summary seed-cnn --input 150x150x1 --classes 2  "
    "(or: pixlearn summary siren --channels 3)",
)
def summary_cmd(
    model: str = typer.Argument(..., help="A registered model name, or a run directory."),
    input: str = typer.Option(
        None,
        "--input",
        help="Input shape: WIDTHxHEIGHTxCHANNELS or WIDTHxHEIGHT for classifiers [default: the model's size, "
        "1 channel]; 2 for field models.",
    ),
    classes: int = typer.Option(2, help="Classifiers: number of classes."),
    channels: int = typer.Option(3, help="Field models: colour channels out (1 grey, 3 RGB, 4 RGBA)."),
) -> None:
    """Print the Keras-style layer table: output shapes and parameter counts."""
    import torch

    from pixlearn.core.summary import format_summary
    from pixlearn.models.loading import load_model
    from pixlearn.models.registry import create_model, get_entry

    if Path(model).is_dir():
        net, spec = load_model(model)
        shape = spec.input_shape()
    elif get_entry(model).task == "classify":
        entry = get_entry(model)
        h, w, c = _image_shape(input, entry.default_size or FALLBACK_SIZE)
        entry.check_input_size(min(h, w))
        if not 2 <= classes <= MAX_CLASSES:
            raise ConfigError(f"--classes: a classifier has 2 to {MAX_CLASSES:,} classes, got {classes}")
        with torch.device("meta"):  # shapes and counts alone: no weights or activations are allocated
            net = create_model(model, in_channels=c, num_classes=classes, input_size=(h, w))
        shape = (c, h, w)
    else:
        if input is not None and input.strip() != "2":
            raise ConfigError(f"--input: {model} takes (x, y) coordinates, an input of 2; got {input!r}")
        if not 1 <= channels <= MAX_FIELD_CHANNELS:
            raise ConfigError(f"--channels: a field model outputs 1 to {MAX_FIELD_CHANNELS} channels, got {channels}")
        net = create_model(model, "field", in_features=2, out_features=channels)
        shape = (2,)
    console.print(format_summary(net, shape), highlight=False, markup=False)


def _image_shape(text: str | None, side: int) -> tuple[int, int, int]:
    """`160x120x1` (width x height x channels), `160x120` or `160` (1 channel) -> (height, width, channels);
    None -> side x side x 1. The size is read by the one `parse_size`."""
    if text is None:
        return side, side, 1
    parts = text.lower().split("x")
    channels = parts.pop().strip() if len(parts) == 3 else "1"
    try:
        width, height = parse_size("x".join(parts), "--input")
    except ConfigError:
        width = height = 0
    if not (channels.isascii() and channels.isdigit()) or min(width, height, int(channels or 0)) < 1:
        raise ConfigError(f"--input: expected WIDTHxHEIGHTxCHANNELS such as 150x150x1, or WIDTHxHEIGHT; got {text!r}")
    if max(width, height) > MAX_INPUT_SIDE:  # the limit training and model.json keep to
        raise ConfigError(f"--input: {width}x{height} is over the limit of {MAX_INPUT_SIDE:,} pixels a side")
    if int(channels) not in CHANNELS.values():
        raise ConfigError(f"--input: a classifier takes 1 (grayscale) or 3 (rgb) channels, got {channels}")
    return height, width, int(channels)


@command("models", epilog="Example: pixlearn models")
def models_cmd() -> None:
    """List every registered model by task."""
    from pixlearn.models.registry import describe_models

    rows = [[e.name, e.task, e.description] for e in describe_models()]
    console.print(table("Registered models", ["name", "task", "description"], rows))


@command("demo", epilog="Example: pixlearn demo --out runs/demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory to write [default: runs/demo]."),
) -> None:
    """Train, evaluate and predict on the 1,797 real handwritten digits shipped with scikit-learn."""
    from pixlearn.classify.demo import run_demo

    result = run_demo(out, progress=True)
    _print_evaluation(result.training.run.path)
    count = len(result.predictions.predictions)
    console.print(f"\nPredictions for {count} unlabeled images: {_escape(result.predictions.csv)}")
    report = result.training.run.report
    where = report if report.exists() else result.training.run.path
    console.print(f"\n[bold green]Done.[/bold green] Open [bold]{_escape(where)}[/bold] to see the results.")


def _print_evaluation(directory: Path, multi_label: bool = False) -> None:
    from pixlearn.core.storage.classify_records import EvaluationRecord

    if multi_label:
        _print_label_sets(directory)
        return
    ev = EvaluationRecord.read(directory / EvaluationRecord.FILE)
    classes = list(ev.classes)
    console.print(f"\naccuracy [bold]{ev.accuracy:.4f}[/bold] on {ev.images} images")
    if ev.balanced_accuracy is not None and ev.calibration is not None:  # evaluations written before these lack them
        console.print(
            f"balanced accuracy {ev.balanced_accuracy:.4f}, macro-F1 {ev.macro_f1:.4f}, "
            f"ECE {ev.ece:.4f} (15 bins), NLL {ev.nll:.4f}; labels: {_escape(ev.decision)}"
        )
        console.print(f"ECE {_escape(ev.calibration.note)}")
    if ev.temperature:
        from pixlearn.report.calibration_part import temperature_text

        console.print(f"temperature (logits / T): {_escape(temperature_text(ev.temperature, classes))}")
    if effect := ev.temperature_effect:
        console.print(
            f"temperature scaling on these {ev.images} images: NLL {effect.nll_before:.4f} -> "
            f"{effect.nll_after:.4f}, ECE {effect.ece_before:.4f} -> {effect.ece_after:.4f}"
        )
    if a := ev.abstention:
        kept = f"{a.accuracy_on_kept:.4f}" if a.accuracy_on_kept is not None else "undefined (none kept)"
        console.print(
            f"abstaining below {a.abstain_below:g}: coverage {a.coverage:.2%} ({a.abstained} abstained), "
            f"accuracy on the rest {kept}"
        )
    console.print(
        table(
            "Confusion matrix, counts (rows: true, columns: predicted)",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev.confusion_matrix, strict=True)],
        )
    )
    console.print(
        table(
            "Confusion matrix, share of all images",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev.confusion_proportions, strict=True)],
        )
    )
    console.print(
        table(
            "Conditional rates P(predicted | true)",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev.conditional_error_rates, strict=True)],
        )
    )
    console.print(
        table(
            "Per class",
            ["class", "precision", "recall", "f1", "support"],
            [[r.name, r.precision, r.recall, r.f1, r.support] for r in ev.per_class],
        )
    )
