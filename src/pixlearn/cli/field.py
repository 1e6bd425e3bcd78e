"""Image-as-a-function verbs: fit, render, compare, table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from pixlearn.cli.application import _escape, command, console, table, with_options
from pixlearn.field.config import DEFAULT_MODEL, RUN, CompareConfig, FitConfig, RenderConfig


@command(
    "fit",
    epilog="Example: pixlearn fit photo.jpg --model siren --time 30s --out runs/siren  "
    "(the seed exactly: --model seed-deep, 100 epochs of batch 128 on raw pixel coordinates)",
)
@with_options(FitConfig)
def fit_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    out: Path = typer.Option(None, "--out", "-o", help="Run directory [default: runs/MODEL].", rich_help_panel=RUN),
    overwrite: bool = typer.Option(False, help="Replace a finished run in --out.", rich_help_panel=RUN),
    **options: Any,
) -> None:
    """Learn an image as a function (x, y) -> colour and write a run directory."""
    from pixlearn.field.fit import fit_image
    from pixlearn.field.rendering.renderer import PRINTED_WEIGHTS, format_weights
    from pixlearn.field.timing import phases_line

    config = FitConfig(**options)
    result = fit_image(image, out or Path("runs") / config.model, config, progress=True, overwrite=overwrite)
    _print_metrics([result.metrics.content()])
    if result.metrics.params is not None and result.metrics.params <= PRINTED_WEIGHTS:
        console.print(format_weights(result.model), highlight=False, markup=False)
    line = phases_line(result.metrics, result.timing, config.budget_seconds)
    console.print(line, highlight=False, markup=False, soft_wrap=True)
    console.print(f"\nRun written to [bold]{_escape(str(result.run.path))}[/bold]")


@command("render", epilog="Example: pixlearn render runs/siren --scale 4 --out big.png")
@with_options(RenderConfig)
def render_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn fit`."),
    out: Path = typer.Option(Path("render.png"), "--out", "-o", help="PNG file to write [default: render.png]."),
    **options: Any,
) -> None:
    """Evaluate a fitted model on any pixel grid (in chunks, so memory stays bounded)."""
    from pixlearn.field.rendering.renderer import render

    result = render(run, out, RenderConfig(**options))
    console.print(f"{result.width}x{result.height} image written to [bold]{_escape(out)}[/bold]")


@command(
    "compare",
    epilog="Example: pixlearn compare photo.jpg --models seed-linear,seed-small,seed-deep,siren,fourier,hashgrid "
    "--time 20s --out runs/compare",
)
@with_options(CompareConfig)
@with_options(FitConfig, only=("time", "steps", "color", "size", "heldout", "seed", "device", "threads"))
def compare_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    models: str = typer.Option(
        "seed-linear,seed-small,seed-deep,siren,fourier,hashgrid", help="Comma-separated field models."
    ),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="Directory to write [default: runs/compare]."),
    overwrite: bool = typer.Option(False, help="Replace a finished comparison in --out."),
    **options: Any,
) -> None:
    """Fit several models on one image with the same budget (--time or --steps per model, else each
    model's preset length), each with its own CPU preset (stated in the table): one table, one grid figure."""
    from pixlearn.field.comparison import compare

    names = [m.strip() for m in models.split(",") if m.strip()]
    fair = {f.name for f in dataclasses.fields(CompareConfig)}
    fairness = {k: options.pop(k) for k in list(options) if k in fair}
    fit = FitConfig(model=names[0] if names else DEFAULT_MODEL, **options)
    result = compare(image, out, CompareConfig(models=names, fit=fit, **fairness), progress=True, overwrite=overwrite)
    rows = [{k: v for k, v in r.to_dict().items() if v is not None} for r in result.rows]
    _print_metrics(rows, COMPARE_COLUMNS, "Compare (each model's CPU preset: lr, batch, schedule, threads)")
    console.print(f"\nComparison written to [bold]{_escape(str(out))}[/bold] (figures/compare_grid.png, compare.csv)")


@command("table", epilog="Example: pixlearn table photo.jpg --csv pixels.csv  (or --npy pixels.npy)")
@with_options(FitConfig, only=("color", "size"))
def table_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    csv: Path = typer.Option(
        None, help="Write the table as CSV: x, y, one column per channel in [0, 1] [default: none]."
    ),
    npy: Path = typer.Option(None, help="Write the table as a numpy .npy array."),
    **options: Any,
) -> None:
    """Print the image's size (the seed's dim(im)) and write it as a coordinate table (as.data.frame)."""
    from pixlearn.core.options import check_options
    from pixlearn.field.coords import image_to_table, save_table, table_header
    from pixlearn.field.image import load_field_image

    config = FitConfig(**options)
    check_options(config)
    picture = load_field_image(image, config.color, config.size)
    console.print(
        f"{picture.width} x {picture.height} pixels, {picture.frames} frame(s), {picture.channels} channel(s) "
        f"({picture.mode})"
    )
    data = image_to_table(picture.pixels)
    head = [[int(r[0]), int(r[1]), *[round(float(v), 7) for v in r[2:]]] for r in data[:6]]
    console.print(table("head", table_header(picture.channels), head))
    for path in (p for p in (csv, npy) if p is not None):
        save_table(data, path)
        console.print(f"{len(data):,} rows written to [bold]{_escape(path)}[/bold]")


COMPARE_COLUMNS = ("model", "params", "size", "lr", "batch", "schedule", "threads", "seconds", "steps", "psnr")


def _print_metrics(
    rows: list[dict],
    first: tuple[str, ...] = ("model", "params", "bytes", "seconds", "steps", "psnr"),
    title: str = "Fit",
) -> None:
    columns = list(first)
    columns += [c for c in ("psnr_sd", "ssim", "test_psnr", "test_psnr_sd", "test_ssim") if any(c in r for r in rows)]
    console.print(table(title, columns, [[r.get(c, "") for c in columns] for r in rows]))
