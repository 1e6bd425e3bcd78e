"""The export verb: a trained classifier as a file another runtime reads (ONNX), checked before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pixlearn.classify.config import ExportConfig
from pixlearn.cli.application import _escape, command, console, with_options


@command("export", epilog="Example: pixlearn export runs/city --format onnx")
@with_options(ExportConfig)
def export_cmd(
    run: Path = typer.Argument(..., help="A run directory written by `pixlearn train`."),
    images: list[Path] = typer.Option(
        None, "--images", help="Images or folders to check the file on [default: the run's test images]."
    ),
    **options: Any,
) -> None:
    """Write RUN/model.onnx (images in [0, 1] -> the run's probabilities) and check it with onnxruntime."""
    from pixlearn.classify.inference.onnx import TOLERANCE, export

    result = export(run, config=ExportConfig(**options), images=images or None)
    console.print(
        f"onnxruntime against pixlearn (fp32) on {result.images} images ({_escape(result.source)}): largest "
        f"absolute difference {result.max_difference:.2e} (limit {TOLERANCE:g})",
        highlight=False,
    )
    console.print(f"Model written to [bold]{_escape(str(result.path))}[/bold]")
