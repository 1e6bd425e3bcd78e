"""`train --exclude FILE.csv`: leave the files a CSV lists (any CSV with a `path` column) out of a run.

Made for a check's `label_issues.csv`, `image_issues.csv` (or a hand-edited copy), but any CSV with
a `path` column works. A listed path matches a file of the data when both name the same file:
as written (relative to the working folder) or relative to the CSV's own folder. Excluded files
leave every split and are listed, with the CSV named, among the skipped files of the data summary.
Cells are read back as `text.csv_cell` wrote them (a leading quote guarding a formula is dropped).

    >>> from pixlearn.classify.data.folders import Sample, Splits
    >>> splits = Splits([Sample(Path("a.png"), "x"), Sample(Path("b.png"), "y")], [], ["x", "y"], [], "split")
    >>> kept = drop_listed(splits, {Path("b.png").resolve()}, "bad.csv")
    >>> [str(s.path) for s in kept.train], kept.unlabeled
    (['a.png'], [('b.png', 'excluded: listed in bad.csv')])
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from pixlearn.classify.data.folders import Splits
from pixlearn.core.errors import DataError
from pixlearn.core.storage.files import data_error
from pixlearn.core.storage.rundir import read_csv
from pixlearn.core.text import from_csv_cell


def listed_paths(path: str | os.PathLike) -> tuple[set[Path], int]:
    """The resolved files a CSV's `path` column names (each as written and relative to the CSV's folder),
    and the number of rows naming one."""
    path = Path(path)
    rows = read_csv(path, error=data_error)
    if not rows or "path" not in rows[0]:
        found = list(rows[0]) if rows else "no rows"
        raise DataError(f"{path}: an --exclude CSV needs a path column and a row (found {found})")
    cells = [from_csv_cell(row["path"]) for row in rows if row.get("path")]
    out = set()
    for cell in cells:
        given = Path(cell)
        out.add(given.resolve())
        if not given.is_absolute():
            out.add((path.parent / given).resolve())
    return out, len(cells)


def drop_listed(splits: Splits, listed: set[Path], source: str) -> Splits:
    """`splits` without the samples whose resolved path is in `listed`; those appended to `unlabeled`."""
    reason = f"excluded: listed in {source}"
    gone: list[tuple[str, str]] = []

    def keep(samples: list) -> list:
        kept = []
        for s in samples:
            if Path(s.path).resolve() in listed:
                gone.append((str(s.path), reason))
            else:
                kept.append(s)
        return kept

    return dataclasses.replace(splits, train=keep(splits.train), test=keep(splits.test),
                               unlabeled=[*splits.unlabeled, *gone])  # fmt: skip


def excluded(splits: Splits, csv_path: str | os.PathLike | None) -> Splits:
    """The splits without the files `csv_path` lists (unchanged for None). A CSV with rows of which
    none names a file of the data is a DataError: its paths were almost certainly written from
    another working folder."""
    if csv_path is None:
        return splits
    listed, rows = listed_paths(csv_path)
    kept = drop_listed(splits, listed, str(csv_path))
    if listed and len(kept.unlabeled) == len(splits.unlabeled):
        raise DataError(
            f"{csv_path}: none of its {rows} paths names a file of the data (as written, or relative to "
            "the CSV's folder)"
        )
    return kept
