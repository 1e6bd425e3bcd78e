"""Classification verbs: train, evaluate, predict, summary, models, demo."""

from __future__ import annotations

from pathlib import Path

import typer

from pixlearn.cli.common import _escape, command, console, parse_size, table

DATA = "Data"
MODEL = "Model"
OPTIM = "Optimiser"
SCHED = "Schedule"
AUG = "Augmentation"
RUN = "Run"


MAX_PIXELS_HELP = "Refuse images with more pixels than this (decompression-bomb guard) [default: about 89 M]."


def _apply_max_pixels(max_pixels: int | None) -> None:
    from pixlearn.core.images import set_max_pixels

    if max_pixels is not None:
        if max_pixels < 1:
            raise ValueError(f"--max-pixels must be positive, got {max_pixels}")
        set_max_pixels(max_pixels)


def _classifier_names() -> list[str]:
    from pixlearn.models.registry import list_models

    return list_models("classify")


@command(
    "train",
    epilog="Example: pixlearn train data --model seed-cnn --size 150 --color grayscale "
    "--epochs 10 --batch-size 10 --head sigmoid --out runs/city",
)
def train_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(
        ..., help="Folder with train/ and test/ (or one folder to split), or a CSV of path,label."
    ),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Run directory to write.", rich_help_panel=RUN),
    # data
    size: int = typer.Option(
        None,
        help="Side in pixels images are resized to [default: the model's, seed-cnn 150, others 64].",
        rich_help_panel=DATA,
    ),
    color: str = typer.Option("auto", help="grayscale | rgb | auto.", rich_help_panel=DATA),
    fit: str = typer.Option("squash", help="squash | crop | pad, for images of another shape.", rich_help_panel=DATA),
    labels: str = typer.Option(
        "first",
        help="Label from the first folder under the split (first), the folder holding the file (leaf), "
        "or --group rules.",
        rich_help_panel=DATA,
    ),
    group: list[str] = typer.Option(
        None,
        "--group",
        help="LABEL=FOLDER[,FOLDER...]; repeat per label. Implies --labels groups.",
        rich_help_panel=DATA,
    ),
    val_split: float = typer.Option(
        0.2, help="Held-out fraction per class when there is no test/ folder.", rich_help_panel=DATA
    ),
    strict: bool = typer.Option(
        False, help="Stop at the first undecodable file instead of skipping it.", rich_help_panel=DATA
    ),
    stream: bool = typer.Option(
        False,
        help="Folders larger than memory: decode batches as needed in --workers processes, memory stays flat.",
        rich_help_panel=DATA,
    ),
    cache: Path = typer.Option(
        None,
        help="Folder for a memory-mapped uint8 cache of the decoded images, reused by later epochs and runs "
        "(implies --stream).",
        rich_help_panel=DATA,
    ),
    max_pixels: int = typer.Option(
        None,
        help="Refuse images with more pixels than this (decompression-bomb guard) [default: Pillow's, about 89 M].",
        rich_help_panel=DATA,
    ),
    # model
    model: str = typer.Option(
        "resnet-small", help="A registered classifier (see `pixlearn models`).", rich_help_panel=MODEL
    ),
    head: str = typer.Option(
        "softmax",
        help="softmax (cross-entropy) | sigmoid (the seed's sigmoid + binary cross-entropy).",
        rich_help_panel=MODEL,
    ),
    # optimiser
    optimizer: str = typer.Option("adam", help="adam | adamw | sgd.", rich_help_panel=OPTIM),
    lr: float = typer.Option(1e-3, help="Peak learning rate.", rich_help_panel=OPTIM),
    weight_decay: float = typer.Option(0.0, help="Weight decay.", rich_help_panel=OPTIM),
    label_smoothing: float = typer.Option(0.0, help="Label smoothing, 0..1.", rich_help_panel=OPTIM),
    # schedule
    epochs: int = typer.Option(10, help="Passes over the training set.", rich_help_panel=SCHED),
    batch_size: int = typer.Option(32, help="Images per step.", rich_help_panel=SCHED),
    schedule: str = typer.Option("constant", help="constant | cosine | onecycle.", rich_help_panel=SCHED),
    warmup_epochs: float = typer.Option(0.0, help="Linear warm-up, in epochs.", rich_help_panel=SCHED),
    early_stopping: int = typer.Option(
        0, help="Stop after N epochs without a better val_loss (0 = off).", rich_help_panel=SCHED
    ),
    # augmentation
    flip: bool = typer.Option(False, help="Random horizontal flips.", rich_help_panel=AUG),
    shift: float = typer.Option(
        0.0, help="Random shifts up to this fraction of the side, e.g. 0.1.", rich_help_panel=AUG
    ),
    tta: bool = typer.Option(
        False,
        help="Test-time augmentation: score each image and its mirror, averaged, in validation, "
        "evaluation and prediction (saved with the model).",
        rich_help_panel=AUG,
    ),
    # run
    seed: int = typer.Option(
        0, help="Seed for the split, initial weights, batch order and augmentation.", rich_help_panel=RUN
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N.", rich_help_panel=RUN),
    workers: int = typer.Option(
        0,
        help="Decoding workers: processes for 128 files or more, else threads; with --stream, decoding "
        "processes per training process (0 = one per core; threads one more; up to 4 streaming processes).",
        rich_help_panel=RUN,
    ),
    threads: int = typer.Option(
        0,
        help="CPU threads for the network (0 = one per core; 1 is faster while other jobs hold the cores).",
        rich_help_panel=RUN,
    ),
    precision: str = typer.Option(
        "auto", help="auto (bf16 autocast where the CPU has native bf16) | fp32 | bf16.", rich_help_panel=RUN
    ),
    channels_last: bool = typer.Option(
        True, help="Channels-last tensors (faster CPU convolutions).", rich_help_panel=RUN
    ),
    recipe: str = typer.Option(
        None,
        help="A named preset (see pixlearn.recipes.list_recipes(), e.g. fashion-mnist, seed-fast); "
        "options typed beside it override it.",
        rich_help_panel=MODEL,
    ),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint.", rich_help_panel=RUN),
    overwrite: bool = typer.Option(False, help="Replace a finished run in --out.", rich_help_panel=RUN),
) -> None:
    """Train a classifier on a folder tree of images and write a run directory."""
    from pixlearn.classify.folders import parse_groups
    from pixlearn.classify.train import TrainConfig, train
    from pixlearn.core.distributed import is_main_process

    groups = {k: list(v) for k, v in parse_groups(group).items()} if group else {}
    options = dict(
        size=size,
        color=color,
        fit=fit,
        labels="groups" if groups else labels,
        groups=groups,
        val_split=val_split,
        strict=strict,
        stream=stream,
        cache=str(cache) if cache else None,
        max_pixels=max_pixels,
        model=model,
        head=head,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        epochs=epochs,
        batch_size=batch_size,
        schedule=schedule,
        warmup_epochs=warmup_epochs,
        early_stopping=early_stopping,
        flip=flip,
        shift=shift,
        tta=tta,
        seed=seed,
        device=device,
        workers=workers,
        threads=threads,
        precision=precision,
        channels_last=channels_last,
    )
    config = _config_with_recipe(ctx, recipe, options) if recipe else TrainConfig(**options)
    result = train(data, out, config, overwrite=overwrite, resume=resume, progress=True)
    if is_main_process() and result.run.metrics.exists():  # under torchrun, one process prints
        _print_evaluation(result.run.path)  # the data summary was printed before training
        console.print(f"\nRun written to [bold]{result.run.path}[/bold]")


def _config_with_recipe(ctx: typer.Context, name: str, options: dict):
    """The recipe, with only the options typed on the command line laid over it."""
    from pixlearn.classify.recipes import get_recipe

    param = {"groups": "group", "labels": "group" if options.get("groups") else "labels"}

    def typed(key: str) -> bool:
        source = ctx.get_parameter_source(param.get(key, key))
        return source is not None and source.name == "COMMANDLINE"

    return get_recipe(name, **{k: v for k, v in options.items() if typed(k)})


@command("evaluate", epilog="Example: pixlearn evaluate runs/city data/test")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn train`."),
    data: Path = typer.Argument(..., help="Labelled images: a split folder (data/test) or a root holding test/."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write [default: RUN/evaluations/NAME]."),
    mistakes: str = typer.Option("random", help="Gallery of mistakes: random (seeded, as the seed) | confident."),
    strict: bool = typer.Option(False, help="Stop at the first undecodable file."),
    max_pixels: int = typer.Option(None, help=MAX_PIXELS_HELP),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Accuracy, confusion matrix, conditional error rates, per-class scores and galleries."""
    from pixlearn.classify.evaluate import evaluate

    _apply_max_pixels(max_pixels)
    ev = evaluate(run, data, out=out, strict=strict, device=device, gallery_order=mistakes)
    target = out or run / "evaluations" / ((data / "test").name if (data / "test").is_dir() else data.name)
    _print_evaluation(target)
    console.print(f"\nEvaluation of {len(ev.targets)} images written to [bold]{target}[/bold]")


@command("predict", epilog="Example: pixlearn predict runs/city new_images/ --csv predictions.csv")
def predict_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn train`."),
    paths: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    csv: Path = typer.Option(
        Path("predictions.csv"), help="CSV to write: path, label, one probability column per class."
    ),
    gallery: Path = typer.Option(None, help="PNG grid of a seeded sample [default: beside the CSV]."),
    resume: bool = typer.Option(False, help="Keep the rows already in --csv and predict only the rest."),
    strict: bool = typer.Option(False, help="Stop at the first undecodable file."),
    max_pixels: int = typer.Option(None, help=MAX_PIXELS_HELP),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    precision: str = typer.Option(None, help="auto | fp32 | bf16 [default: the run's own, as its evaluation used]."),
) -> None:
    """Predict labels of new images; rows are written as they are computed."""
    from pixlearn.classify.predict import predict

    _apply_max_pixels(max_pixels)
    gallery = gallery or csv.with_suffix(".png")
    result = predict(
        run, paths, csv_path=csv, gallery=gallery, resume=resume, strict=strict, device=device, precision=precision
    )
    counts: dict[str, int] = {}
    for p in result.predictions:
        counts[p.label] = counts.get(p.label, 0) + 1
    console.print(table("Predicted labels", ["label", "images"], [[k, v] for k, v in sorted(counts.items())]))
    for path, reason in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {_escape(path)}: {_escape(reason)}", highlight=False)
    console.print(
        f"{len(result.predictions)} predictions written to [bold]{csv}[/bold], gallery [bold]{gallery}[/bold]"
    )


@command("summary", epilog="Example: pixlearn summary seed-cnn --input 150x150x1 --classes 2")
def summary_cmd(
    model: str = typer.Argument(..., help="A registered model name, or a run directory."),
    input: str = typer.Option("150x150x1", "--input", help="Input shape HxWxC (images) or N (coordinates)."),
    classes: int = typer.Option(2, help="Number of classes (classifiers)."),
) -> None:
    """Print the Keras-style layer table: output shapes and parameter counts."""
    from pixlearn.core.summary import format_summary
    from pixlearn.models.loading import load_model
    from pixlearn.models.registry import create_model, get_entry

    if Path(model).is_dir():
        net, spec = load_model(model)
        if spec.get("task") == "classify":
            shape = (spec["kwargs"]["in_channels"], *spec["input_size"])
        else:
            shape = (spec["kwargs"].get("in_features", 2),)
    else:
        dims = parse_size(input)
        if get_entry(model).task == "classify":
            if len(dims) == 2:
                dims = (*dims, 1)
            h, w, c = dims
            net = create_model(model, in_channels=c, num_classes=classes, input_size=(h, w))
            shape = (c, h, w)
        else:
            net = create_model(model)
            shape = dims
    console.print(format_summary(net, shape), highlight=False, markup=False)


@command("models", epilog="Example: pixlearn models")
def models_cmd() -> None:
    """List every registered model by task."""
    from pixlearn.models.registry import describe_models

    rows = [[e.name, e.task, e.description] for e in describe_models()]
    console.print(table("Registered models", ["name", "task", "description"], rows))


@command("demo", epilog="Example: pixlearn demo --out runs/demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory to write."),
) -> None:
    """Train, evaluate and predict on 200 real face / non-face photos shipped with scikit-image."""
    from pixlearn.classify.demo import run_demo

    result = run_demo(out, progress=True)
    _print_evaluation(result.training.run.path)
    console.print(f"\nPredictions for {len(result.predictions.predictions)} unlabeled images: {result.predictions.csv}")
    report = result.training.run.report
    where = report if report.exists() else result.training.run.path
    console.print(f"\n[bold green]Done.[/bold green] Open [bold]{where}[/bold] to see the results.")


def _print_evaluation(directory: Path) -> None:
    from pixlearn.core.runs import read_json

    ev = read_json(directory / "evaluation.json")
    classes = ev["classes"]
    console.print(f"\naccuracy [bold]{ev['accuracy']:.4f}[/bold] on {ev['images']} images")
    console.print(
        table(
            "Confusion matrix, counts (rows: true, columns: predicted)",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev["confusion_matrix"], strict=True)],
        )
    )
    console.print(
        table(
            "Confusion matrix, share of all images",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev["confusion_proportions"], strict=True)],
        )
    )
    console.print(
        table(
            "Conditional rates P(predicted | true)",
            ["true \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, ev["conditional_error_rates"], strict=True)],
        )
    )
    console.print(
        table(
            "Per class",
            ["class", "precision", "recall", "f1", "support"],
            [[r["class"], r["precision"], r["recall"], r["f1"], r["support"]] for r in ev["per_class"]],
        )
    )
