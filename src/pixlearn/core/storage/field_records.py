"""The records of an image fit's files and of a comparison's: metrics.json, history.csv's rows,
weights.json, compare.json's rows and a comparison's metrics.json.

Each is a `records.Record`: written by `field.fit` / `field.outputs` / `field.comparison`, read by
the report. An optional key's default is the one here; a key a record does not know is kept (`extra`).

    >>> metrics = FitMetrics.from_dict({"model": "seed-small", "psnr": 15.47, "params": 151})
    >>> metrics.psnr, metrics.test_psnr, metrics.content()
    (15.47, None, {'model': 'seed-small', 'psnr': 15.47, 'params': 151})
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from pixlearn.core.errors import RunError
from pixlearn.core.storage.records import CsvRow, Record
from pixlearn.core.storage.rundir import strict_json, write_text


@dataclass(frozen=True, kw_only=True)
class FitMetrics(Record):
    """metrics.json of a fit, written last (its presence marks the fit complete): the quality of the
    fitted image, the model's size, and where the time went (`field.timing`)."""

    FILE = "metrics.json"
    FORMAT = "pixlearn-fit-metrics"

    model: str
    psnr: float  # dB, over every training pixel, from the float outputs
    ssim: float | None = None
    params: int | None = None
    bytes: int | None = None  # the weights as stored
    seconds: float | None = None  # of the training loop
    step_seconds: float | None = None
    eval_seconds: float | None = None
    steps: int | None = None
    pixels: int | None = None
    width: int | None = None
    height: int | None = None
    channels: int | None = None
    ssim_method: str | None = None  # how SSIM was measured on a large image (over tiles)
    # held-out fits (--heldout): the unseen pixels'
    test_psnr: float | None = None
    test_ssim: float | None = None
    test_ssim_method: str | None = None
    train_pixels: int | None = None
    test_pixels: int | None = None
    threads: int | None = None
    render_precision: str | None = None
    render_estimate_seconds: float | None = None
    phases: dict[str, float] | None = None  # seconds per phase up to this file (the report's are in log.txt)
    wall_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class StepRow(CsvRow):
    """One row of a fit's history.csv: a measurement while training."""

    FILE = "history.csv"
    OPTIONAL_COLUMNS = frozenset({"test_psnr"})

    step: int
    seconds: float | None = None  # on the budget's clock
    loss: float | None = None  # the mean since the row before
    psnr: float | None = None  # on a fixed sample of the training pixels
    test_psnr: float | None = None  # held-out fits: on the unseen pixels


@dataclass(frozen=True, kw_only=True)
class CompareRow(Record):
    """One model of a comparison: compare.json holds a list of these (compare.csv the same rows), and
    the comparison's metrics.json repeats them."""

    FILE = "compare.json"

    model: str
    params: int | None = None
    threads: int | None = None
    seconds: float | None = None
    steps: int | None = None
    psnr: float | None = None  # with several seeds, their mean (psnr_sd: the standard deviation)
    psnr_sd: float | None = None
    ssim: float | None = None
    test_psnr: float | None = None
    test_psnr_sd: float | None = None
    test_ssim: float | None = None
    size: str | None = None  # the model's size: its preset, or the knob that matched the parameters
    lr: float | None = None
    batch: int | str | None = None  # pixels per step, or "full"
    schedule: str | None = None
    seeds: int | None = None
    source: str | None = None  # the image


@dataclass(frozen=True, kw_only=True)
class CompareMetrics(Record):
    """metrics.json of a comparison, written last: the models, the best one and every row."""

    FILE = "metrics.json"
    FORMAT = "pixlearn-compare"

    models: tuple[str, ...]
    best: str
    rows: tuple[CompareRow, ...] = ()


@dataclass(frozen=True, kw_only=True)
class TensorValues(Record):
    shape: tuple[int, ...] = ()
    values: Any = None  # nested lists of numbers, as the shape says


@dataclass(frozen=True)
class ReadableWeights(Record):
    """weights.json: every array of a fitted model by name, its shape and values (the seed prints
    `model$get_weights()`; weights.npz holds the same arrays). An entry that is no object is read as
    its values alone."""

    FILE = "weights.json"

    tensors: dict[str, TensorValues]

    @classmethod
    def _parse(cls, data: Any, source: str, where: str) -> Self:
        if not isinstance(data, dict):
            raise RunError(f"{source}: the file must be a JSON object of arrays by name")
        return cls(
            {
                name: TensorValues._parse(v, source, name) if isinstance(v, dict) else TensorValues(values=v)
                for name, v in data.items()
            }
        )

    def content(self) -> dict[str, Any]:
        return {name: tensor.content() for name, tensor in self.tensors.items()}

    def write(self, where: str | os.PathLike) -> Path:
        """Write the file atomically, one line per array: json's indented output goes through its
        pure-Python encoder (slow for the hash grid's arrays), each line here through the C encoder."""
        path = self.path_in(where)
        lines = [f"  {strict_json(name)}: {strict_json(tensor.content())}" for name, tensor in self.tensors.items()]
        write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")
        return path
