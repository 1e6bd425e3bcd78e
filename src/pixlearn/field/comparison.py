"""Several field models fitted to one image under the same budget: one table and one grid figure.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from pixlearn.field.comparison import compare
    >>> from pixlearn.field.config import CompareConfig, FitConfig
    >>> tmp = tempfile.TemporaryDirectory()
    >>> image = (np.indices((16, 16)).sum(0) * 8).astype(np.uint8)   # grey: one output channel
    >>> config = CompareConfig(models=["seed-linear", "seed-small"], fit=FitConfig(steps=20))
    >>> result = compare(image, Path(tmp.name) / "cmp", config)
    >>> [(r.model, r.params, r.steps) for r in result.rows]
    [('seed-linear', 3, 20), ('seed-small', 151, 20)]

Layout of the compare directory (the seed's progression, gradient -> bird, extended):

    compare.json, compare.csv     one row per model: model, params, size, lr, batch, schedule, threads,
                                  seconds, steps, psnr (the mean over seeds, psnr_sd their spread), ssim, ...
    figures/compare_grid.png      the original and each reconstruction titled with model, params, PSNR,
                                  each error map below it, and the error maps' colour scale
    models/NAME/                  each model's own fit run directory (see outputs.write_outputs), seed 0
    seeds/NAME-seedK/             the other seeds' fits (--seeds K)
    config.json, log.txt
    metrics.json                  written last: the best model and its figures
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixlearn.core.errors import ConfigError
from pixlearn.core.imaging import figures
from pixlearn.core.progress import Progress, make_progress
from pixlearn.core.storage import rundir
from pixlearn.core.storage.field_records import CompareMetrics, CompareRow, FitMetrics
from pixlearn.core.storage.records import RunConfig
from pixlearn.field.config import CompareConfig, FitConfig
from pixlearn.field.fit import fit_reported
from pixlearn.field.image import load_field_image
from pixlearn.models.registry import get_entry, sized_kwargs
from pixlearn.report.page import write_report

COLUMNS = (
    "model",
    "params",
    "size",
    "lr",
    "batch",
    "schedule",
    "threads",
    "seconds",
    "steps",
    "psnr",
    "psnr_sd",
    "ssim",
    "test_psnr",
    "test_psnr_sd",
    "test_ssim",
    "seeds",
)


@dataclass(frozen=True)
class CompareResult:
    """What `compare` wrote: the comparison's directory, one row per model (compare.json's records) and
    the best model's name (by held-out PSNR where there is one)."""

    run: Path
    rows: tuple[CompareRow, ...]
    best: str


def compare(
    source: str | os.PathLike | bytes | np.ndarray,
    out: str | os.PathLike | None = None,
    config: CompareConfig = CompareConfig(),  # noqa: B008 - never changed: the verbs only read a config
    progress: bool | None = None,
    *,
    overwrite: bool = False,
) -> CompareResult:
    """Fit each of `config.models` on `source` with the same options (`config.fit`, its `time` or `steps`
    the budget) and write the comparison to `out` (None: runs/compare).

    Fit options left at None take each model's own CPU preset (learning rate, batch, schedule, coordinates,
    length; field/config.py PRESETS), which the table states. `config` also says how the models are made
    comparable: equal time (the default), equal parameters (`equal_params`), several seeds (`seeds`).
    `progress`: None shows it when stderr is a terminal, True always, False never (`core.progress`).
    """
    config.check()
    models = list(config.models)
    if not models:
        raise ConfigError("models (--models): compare needs at least one model")
    for name in models:
        get_entry(name, "field")  # an unknown name fails before anything is trained
    base = config.fit
    if not config.equal_time:
        base = dataclasses.replace(base, time=None, steps=None, epochs=None)
    run = rundir.RunDir(out if out is not None else Path("runs") / "compare")
    with run.lock():  # one writer at a time (core.locks); each model's fit locks its own folder
        reporter = make_progress(progress)
        return _compare_into(run.prepare(overwrite=overwrite), source, models, base, config, reporter, overwrite)


def model_config(base: FitConfig, name: str, channels: int, fairness: CompareConfig) -> tuple[FitConfig, str]:
    """One model's fit options and how its size was set: its size argument scaled to `equal_params`,
    or "fixed" for a model with no size setting (the seed presets), or "default"."""
    config = dataclasses.replace(base, model=name, size=None, model_kwargs=dict(base.model_kwargs))
    if fairness.equal_params is None:
        return config, "default"
    sized = sized_kwargs(name, fairness.equal_params, out_features=channels, **config.model_kwargs)
    if sized is None:
        return config, "fixed"
    kwargs, _ = sized
    kwargs.pop("out_features")
    knob = get_entry(name).size_arg
    return dataclasses.replace(config, model_kwargs=kwargs), f"{knob}={kwargs[knob]}"


def _compare_into(
    run: rundir.RunDir,
    source: str | os.PathLike | bytes | np.ndarray,
    models: Sequence[str],
    base: FitConfig,
    fairness: CompareConfig,
    reporter: Progress,
    overwrite: bool,
) -> CompareResult:
    image = load_field_image(source, base.color, base.size)
    fair = {k: v for k, v in dataclasses.asdict(fairness).items() if k not in ("models", "fit")}
    settings = {"models": list(models), "fit": dataclasses.asdict(base), "compare": fair}
    RunConfig(settings).write(run.config)
    run.log(f"comparing {', '.join(models)} on {image.source} ({image.width}x{image.height})")
    rows, reconstructions = [], []
    with reporter:
        for name in models:
            config, size = model_config(base, name, image.channels, fairness)
            results = []
            for k in range(fairness.seeds):
                where = run.path / "models" / name if k == 0 else run.path / "seeds" / f"{name}-seed{k}"
                seeded = dataclasses.replace(config, seed=config.seed + k)
                results.append(fit_reported(image.pixels, where, seeded, reporter, overwrite))
            rows.append(summary_row([r.metrics for r in results], config.resolved(), size))
            reconstructions.append(results[0].reconstruction)
            run.log(f"{name}: PSNR {rows[-1]['psnr']:.2f} dB, {rows[-1]['params']:,} parameters")
    for row in rows:
        row["source"] = image.source
    records = [CompareRow.from_dict(r, run.path / CompareRow.FILE) for r in rows]
    CompareRow.write_list(run.path / CompareRow.FILE, records)
    header = [c for c in COLUMNS if any(c in r for r in rows)]
    rundir.write_csv(run.path / "compare.csv", header, [[r.get(c, "") for c in header] for r in rows])
    figures.save(compare_grid(image.pixels, rows, reconstructions), run.figure("compare_grid.png"))
    best = max(rows, key=lambda r: r.get("test_psnr", r["psnr"]))
    CompareMetrics(models=tuple(r.model for r in records), best=best["model"], rows=tuple(records)).write(run.metrics)
    write_report(run.path)
    return CompareResult(run.path, tuple(records), best["model"])


def summary_row(metrics: Sequence[FitMetrics], config: FitConfig, size: str) -> dict[str, Any]:
    """One table row: the settings the model trained with and its figures; with several seeds the
    PSNR's mean and standard deviation (`psnr_sd`), the rest from the first seed."""
    first = metrics[0].content()
    row = {c: first[c] for c in COLUMNS if c in first}
    row.update(size=size, lr=config.lr, batch="full" if not config.batch else config.batch)
    row.update(schedule=config.schedule, threads=metrics[0].threads, seeds=len(metrics))
    for key in ("psnr", "test_psnr", "ssim", "test_ssim"):
        values = [value for m in metrics if (value := getattr(m, key)) is not None]
        if values:
            row[key] = statistics.fmean(values)
            if key in ("psnr", "test_psnr") and len(values) > 1:
                row[f"{key}_sd"] = statistics.stdev(values)
    return row


def compare_grid(original: np.ndarray, rows: Sequence[dict[str, Any]], reconstructions: Sequence[np.ndarray]):
    """The original then each reconstruction, titled with model, parameters and PSNR; each model's
    error map below its reconstruction, on one colour scale drawn beneath the original."""
    titles = [(r["model"], f"{r['params']:,} params, {r['psnr']:.1f} dB") for r in rows]
    return figures.comparison_figure(original, list(reconstructions), titles)
