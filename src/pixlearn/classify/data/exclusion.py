"""`train --exclude FILE.csv`: leave the files a CSV lists (a `path` column, or a check's pairs) out of a run.

Made for a check's `label_issues.csv`, `image_issues.csv` (or a hand-edited copy), but any CSV with
a `path` column works; a header alone excludes nothing. A check's `duplicates.csv` (`path_a`,
`path_b`) leaves out the second file of each pair, the copy: of a leak (a test image with a copy in
the training split) the training copy, so the test split stays as it was; of a group of copies all
but one. A pair one of whose files is already left out leaves nothing more out. A listed path
matches a file of the data when both name the same file: as written (relative to the working
folder) or relative to the CSV's own folder. Excluded files leave every split and are listed, with
the CSV named, among the skipped files of the data summary. Cells are read back as `text.csv_cell`
wrote them (a leading quote guarding a formula is dropped).

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

from pixlearn.classify.data.csv_files import CsvTable, open_csv
from pixlearn.classify.data.folders import Splits
from pixlearn.core.errors import DataError
from pixlearn.core.text import from_csv_cell

PAIR_COLUMNS = ("path_a", "path_b")  # a check's duplicates.csv: path_b is the copy


def listed_paths(path: str | os.PathLike) -> tuple[set[Path], int]:
    """The resolved files a CSV lists to leave out (each as written and relative to the CSV's folder),
    and the number of rows naming one: its `path` column, or the copies of its `path_a`/`path_b` pairs."""
    path = Path(path)
    with open_csv(path) as table:
        if "path" in table.columns:
            cells = [from_csv_cell(cells["path"]) for _, cells in table.rows if cells.get("path")]
            return {file for cell in cells for file in _candidates(path, cell)}, len(cells)
        if set(PAIR_COLUMNS) <= set(table.columns):
            return _copies(path, table)
    raise DataError(
        f"{path}: an --exclude CSV needs a path column, or path_a and path_b as a check's duplicates.csv "
        f"has them (found {table.columns or 'no header'})"
    )


def _candidates(csv_path: Path, cell: str) -> set[Path]:
    given = Path(cell)
    return {given.resolve()} if given.is_absolute() else {given.resolve(), (csv_path.parent / given).resolve()}


def _copies(csv_path: Path, table: CsvTable) -> tuple[set[Path], int]:
    """path_b of each pair neither of whose files is left out already (one of each group of copies stays)."""
    gone: set[Path] = set()
    rows = 0
    for _, cells in table.rows:
        first, copy = (from_csv_cell(cells.get(column) or "") for column in PAIR_COLUMNS)
        if not first or not copy:
            continue
        first_files, copy_files = _candidates(csv_path, first), _candidates(csv_path, copy)
        if gone.isdisjoint(first_files) and gone.isdisjoint(copy_files):
            gone |= copy_files
            rows += 1
    return gone, rows


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

    val = None if splits.val is None else keep(splits.val)
    return dataclasses.replace(splits, train=keep(splits.train), test=keep(splits.test), val=val,
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
