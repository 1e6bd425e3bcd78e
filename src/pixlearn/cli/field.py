"""Image-as-a-function verbs: fit, render, compare, table."""

from __future__ import annotations

from pathlib import Path

import typer

from pixlearn.cli.common import command, console, parse_size, table

DATA = "Data"
MODEL = "Model"
LENGTH = "Length (the first limit reached stops)"
OPTIM = "Optimiser"
RUN = "Run"


def _size(text: str | None) -> tuple[int, int] | None:
    """`256` or `256x192` (width x height) -> (width, height)."""
    if text is None:
        return None
    dims = parse_size(text)
    if len(dims) == 1:
        return dims[0], dims[0]
    if len(dims) != 2:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 256x192, got {text!r}")
    return dims[0], dims[1]


def _batch(text: str | None) -> int | None:
    if text is None:
        return None
    if text.lower() == "full":
        return 0
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"expected a number of pixels or 'full', got {text!r}") from None


def _config(**options):
    from pixlearn.field.config import FitConfig

    options["size"] = _size(options["size"])
    options["batch"] = _batch(options["batch"])
    return FitConfig(**options)


@command(
    "fit",
    epilog="Example: pixlearn fit photo.jpg --model siren --time 30s --out runs/siren  "
    "(the seed exactly: --model seed-deep, 100 epochs of batch 128 on raw pixel coordinates)",
)
def fit_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    model: str = typer.Option("siren", help="A registered field model (see `pixlearn models`).", rich_help_panel=MODEL),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory [default: runs/MODEL].", rich_help_panel=RUN),
    epochs: int = typer.Option(
        None, help="Shuffled passes over the pixels (the seed's epochs).", rich_help_panel=LENGTH
    ),
    steps: int = typer.Option(None, help="Optimiser steps.", rich_help_panel=LENGTH),
    time: str = typer.Option(None, "--time", help="Training-time budget: 30s, 2m, 1h.", rich_help_panel=LENGTH),
    batch: str = typer.Option(
        None, help="Pixels per step, or 'full' (every pixel each step) [default: the model's].", rich_help_panel=OPTIM
    ),
    lr: float = typer.Option(None, help="Adam learning rate [default: the model's].", rich_help_panel=OPTIM),
    schedule: str = typer.Option(
        None, help="constant | cosine (down to 1%) [default: the model's].", rich_help_panel=OPTIM
    ),
    coords: str = typer.Option(
        "auto", help="auto | normalized ([-1, 1]) | pixel (the seed's 1-based indices).", rich_help_panel=DATA
    ),
    color: str = typer.Option("auto", help="auto | grayscale | rgb | rgba.", rich_help_panel=DATA),
    size: str = typer.Option(None, help="Resize first: 256 or WIDTHxHEIGHT.", rich_help_panel=DATA),
    heldout: bool = typer.Option(
        False, help="Train on every other pixel; report PSNR on the unseen ones.", rich_help_panel=DATA
    ),
    seed: int = typer.Option(0, help="Seed of the initialisation and batch order.", rich_help_panel=RUN),
    device: str = typer.Option("auto", help="auto | cpu | cuda.", rich_help_panel=RUN),
    threads: int = typer.Option(0, help="CPU threads; 0 = auto (1 unless the machine is idle).", rich_help_panel=RUN),
    overwrite: bool = typer.Option(False, help="Replace a finished run in --out.", rich_help_panel=RUN),
) -> None:
    """Learn an image as a function (x, y) -> colour and write a run directory."""
    from pixlearn.field.fit import fit_image
    from pixlearn.field.render import PRINTED_WEIGHTS, format_weights

    config = _config(
        model=model,
        epochs=epochs,
        steps=steps,
        time=time,
        batch=batch,
        lr=lr,
        schedule=schedule,
        coords=coords,
        color=color,
        size=size,
        heldout=heldout,
        seed=seed,
        device=device,
        threads=threads,
    )
    result = fit_image(image, out or Path("runs") / model, config, progress=True, overwrite=overwrite)
    _print_metrics([result.metrics])
    if result.metrics["params"] <= PRINTED_WEIGHTS:
        console.print(format_weights(result.model), highlight=False, markup=False)
    console.print(f"\nRun written to [bold]{result.run.path}[/bold]")


@command("render", epilog="Example: pixlearn render runs/siren --scale 4 --out big.png")
def render_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn fit`."),
    scale: float = typer.Option(None, help="Output size as a multiple of the fitted image [default: 1]."),
    size: str = typer.Option(None, help="Output size WIDTHxHEIGHT instead of --scale."),
    out: Path = typer.Option(Path("render.png"), "--out", "-o", help="PNG file to write."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda."),
) -> None:
    """Evaluate a fitted model on any pixel grid (in chunks, so memory stays bounded)."""
    from pixlearn.field.render import render

    image = render(run, scale=scale, size=_size(size), out=out, device=device)
    console.print(f"{image.shape[1]}x{image.shape[0]} image written to [bold]{out}[/bold]")


@command(
    "compare",
    epilog="Example: pixlearn compare photo.jpg --models seed-linear,seed-small,seed-deep,siren,fourier,hashgrid "
    "--time 20s --out runs/compare",
)
def compare_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    models: str = typer.Option(
        "seed-linear,seed-small,seed-deep,siren,fourier,hashgrid", help="Comma-separated field models."
    ),
    time: str = typer.Option(
        None, "--time", help="Training-time budget per model: 30s, 2m [default: each model's preset length]."
    ),
    steps: int = typer.Option(None, help="Steps per model instead of a time budget."),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Directory to write."),
    color: str = typer.Option("auto", help="auto | grayscale | rgb | rgba."),
    size: str = typer.Option(None, help="Resize first: 256 or WIDTHxHEIGHT."),
    heldout: bool = typer.Option(False, help="Train on every other pixel; report PSNR on the unseen ones."),
    seed: int = typer.Option(0, help="Seed of the initialisation and batch order."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    overwrite: bool = typer.Option(False, help="Replace a finished comparison in --out."),
) -> None:
    """Fit several models on one image with the same budget: one table, one grid figure."""
    from pixlearn.field.compare import compare

    names = [m.strip() for m in models.split(",") if m.strip()]
    config = _config(
        model=names[0] if names else "siren",
        steps=steps,
        time=time,
        batch=None,
        color=color,
        size=size,
        heldout=heldout,
        seed=seed,
        device=device,
    )
    rows = compare(image, names, out, config=config, progress=True, overwrite=overwrite)
    _print_metrics(rows)
    console.print(f"\nComparison written to [bold]{out}[/bold] (figures/compare_grid.png, compare.csv)")


@command("table", epilog="Example: pixlearn table photo.jpg --csv pixels.csv  (or --npy pixels.npy)")
def table_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    csv: Path = typer.Option(None, help="Write the table as CSV: x, y, one column per channel in [0, 1]."),
    npy: Path = typer.Option(None, help="Write the table as a numpy .npy array."),
    color: str = typer.Option("auto", help="auto | grayscale | rgb | rgba."),
    size: str = typer.Option(None, help="Resize first: 256 or WIDTHxHEIGHT."),
) -> None:
    """Print the image's size (the seed's dim(im)) and write it as a coordinate table (as.data.frame)."""
    from pixlearn.field.coords import image_to_table, save_table, table_header
    from pixlearn.field.image import load_field_image

    picture = load_field_image(image, color, _size(size))
    console.print(
        f"{picture.width} x {picture.height} pixels, {picture.frames} frame(s), {picture.channels} channel(s) "
        f"({picture.mode})"
    )
    data = image_to_table(picture.pixels)
    head = [[int(r[0]), int(r[1]), *[round(float(v), 7) for v in r[2:]]] for r in data[:6]]
    console.print(table("head", table_header(picture.channels), head))
    for path in (p for p in (csv, npy) if p is not None):
        save_table(data, path)
        console.print(f"{len(data):,} rows written to [bold]{path}[/bold]")


def _print_metrics(rows: list[dict]) -> None:
    columns = ["model", "params", "bytes", "seconds", "steps", "psnr", "ssim"]
    if any("test_psnr" in r for r in rows):
        columns += ["test_psnr", "test_ssim"]
    console.print(table("Fit", columns, [[r.get(c, "") for c in columns] for r in rows]))
