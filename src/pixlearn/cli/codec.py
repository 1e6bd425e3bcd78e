"""Codec verbs: compress an image into a .pxl file of a given size, and decompress it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pixlearn.cli.application import _escape, command, console, with_options
from pixlearn.field.codec.compression import CompressConfig


@command(
    "compress",
    epilog="Example: pixlearn compress photo.png -o photo.pxl --bpp 0.5  (or --kb 20; --model gaussians)",
)
@with_options(CompressConfig)
def compress_cmd(
    image: str = typer.Argument(..., help="Image file or http(s) URL."),
    out: Path = typer.Option(..., "--out", "-o", help="The .pxl file to write."),
    **options: Any,
) -> None:
    """Code an image as a quantised field (latent grids or --model gaussians) in at most --bpp or --kb."""
    from pixlearn.field.codec.compression import compress

    info = compress(image, out, CompressConfig(**options))
    console.print(
        f"{info.width}x{info.height} -> {info.bytes:,} bytes ({info.bpp:.4f} bpp), "
        f"PSNR {info.psnr:.2f} dB, {info.seconds:.1f} s: [bold]{_escape(str(out))}[/bold]",
        highlight=False,
    )


@command("decompress", epilog="Example: pixlearn decompress photo.pxl -o photo.png")
def decompress_cmd(
    file: Path = typer.Argument(..., help="A .pxl file written by `pixlearn compress`."),
    out: Path = typer.Option(..., "--out", "-o", help="The PNG file to write."),
) -> None:
    """Decode a .pxl file to a PNG (the same pixels, bit for bit, on any thread count)."""
    from pixlearn.field.codec.compression import decompress

    result = decompress(file, out)
    console.print(f"{result.width}x{result.height} image written to [bold]{_escape(str(out))}[/bold]")
