"""Several field models fitted to one image under the same budget: one table and one grid figure.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from pixlearn.field.comparison import compare
    >>> from pixlearn.field.config import FitConfig
    >>> tmp = tempfile.TemporaryDirectory()
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # grey: one output channel
    >>> rows = compare(image, ["seed-linear", "seed-small"], Path(tmp.name) / "cmp", config=FitConfig(steps=20))
    >>> [(r["model"], r["params"], r["steps"]) for r in rows]
    [('seed-linear', 3, 20), ('seed-small', 151, 20)]

Layout of the compare directory (the seed's progression, gradient -> bird, extended):

    compare.json, compare.csv     one row per model: model, params, bytes, seconds, steps, psnr, ssim, ...
    figures/compare_grid.png      the original, then each reconstruction titled with model, params, PSNR
    models/NAME/                  each model's own fit run directory (see fit.write_outputs)
    config.json, log.txt
    metrics.json                  written last: the best model and its figures
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pixlearn.core import figures, runs
from pixlearn.core.errors import ConfigError
from pixlearn.core.progress import Silent, make_progress
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from pixlearn.field.image import load_field_image
from pixlearn.models.registry import get_entry
from pixlearn.report.page import write_report

COLUMNS = ("model", "params", "bytes", "seconds", "steps", "psnr", "ssim", "test_psnr", "test_ssim")


def compare(
    source: str | os.PathLike | bytes | np.ndarray,
    models: Sequence[str],
    out: str | os.PathLike,
    time: str | float | None = None,
    config: FitConfig | None = None,
    progress: bool | Silent = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Fit each model on `source` with the same options (`config`, `time` budget) and write the comparison.

    Options left at None take each model's own preset (learning rate, batch, coordinates, length).
    """
    if not models:
        raise ConfigError("compare needs at least one model")
    for name in models:
        get_entry(name, "field")  # an unknown name fails before anything is trained
    base = dataclasses.replace(config or FitConfig(), time=time if time is not None else (config and config.time))
    run = runs.RunDir(out)
    with run.lock():  # one writer at a time (core.locks); each model's fit locks its own folder
        return _compare_into(run.prepare(overwrite=overwrite), source, models, base, progress, overwrite)


def _compare_into(
    run: runs.RunDir,
    source: str | os.PathLike | bytes | np.ndarray,
    models: Sequence[str],
    base: FitConfig,
    progress: bool | Silent,
    overwrite: bool,
) -> list[dict[str, Any]]:
    image = load_field_image(source, base.color, base.size)
    runs.write_json(run.config, {"models": list(models), "fit": dataclasses.asdict(base)})
    run.log(f"comparing {', '.join(models)} on {image.source} ({image.width}x{image.height})")
    reporter = progress if isinstance(progress, Silent) else make_progress(progress)
    rows, reconstructions = [], []
    with reporter:
        for name in models:
            result = fit_image(
                image.pixels,
                run.path / "models" / name,
                dataclasses.replace(base, model=name, size=None),
                progress=reporter,
                overwrite=overwrite,
            )
            rows.append({c: result.metrics.get(c) for c in COLUMNS if c in result.metrics})
            reconstructions.append(result.reconstruction)
            run.log(f"{name}: PSNR {result.metrics['psnr']:.2f} dB, {result.metrics['params']:,} parameters")
    for row in rows:
        row["source"] = image.source
    runs.write_json(run.path / "compare.json", rows)
    header = [c for c in COLUMNS if any(c in r for r in rows)]
    runs.write_csv(run.path / "compare.csv", header, [[r.get(c, "") for c in header] for r in rows])
    figures.save(compare_grid(image.pixels, rows, reconstructions), run.figure("compare_grid.png"))
    best = max(rows, key=lambda r: r.get("test_psnr", r["psnr"]))
    runs.write_json(run.metrics, {"models": [r["model"] for r in rows], "best": best["model"], "rows": rows})
    write_report(run.path)
    return rows


def compare_grid(original: np.ndarray, rows: Sequence[dict[str, Any]], reconstructions: Sequence[np.ndarray]):
    """The original then each reconstruction, titled with model, parameters and PSNR."""
    titles = ["original"] + [(r["model"], f"{r['params']:,} params, {r['psnr']:.1f} dB") for r in rows]
    return figures.image_grid(np.stack([original, *reconstructions]), titles, ncols=min(4, len(rows) + 1))
