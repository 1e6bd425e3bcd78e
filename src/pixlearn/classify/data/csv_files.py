"""The CSV files a person hands pixlearn (a label CSV, an `--exclude` list), read as spreadsheets write them.

A byte-order mark (Excel's "CSV UTF-8") and spaces around column names are dropped; a NUL byte or text
that is not UTF-8 is a DataError naming the file and the line. A label CSV's rows are checked as they
are read: a blank path or label, a file listed twice, and a run of files that do not exist each stop
the read with the line that shows it, before any image is decoded.

    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "a.png").write_bytes(b"")
    >>> _ = (folder / "labels.csv").write_text("\\ufeffpath,label\\na.png,cat\\n", encoding="utf-8")
    >>> [(row.file.name, row.label) for row in labelled_rows(folder / "labels.csv")]
    [('a.png', 'cat')]
    >>> _ = (folder / "many.csv").write_text("path,labels,split\\na.png,cat|dog,val\\n", encoding="utf-8")
    >>> labelled_rows(folder / "many.csv", separator="|")[0][1:]
    (('cat', 'dog'), 'val')
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pixlearn.classify.data.label_sets import split_labels
from pixlearn.core.errors import DataError
from pixlearn.core.storage.files import data_error, open_data_file, os_reason

LABEL_COLUMNS = ("path", "label")
LABEL_SET_COLUMNS = ("path", "labels")
# The optional `split` column's words, as the split folders' names (folders.SPLIT_NAMES)
SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}  # fmt: skip
# Files a label CSV may name that do not exist before it is refused: a few are skipped and named, as
# any unreadable image is; more mean the paths were written from another folder, and saying so at
# once beats decoding a million rows first.
MISSING_LIMIT = 10
_MISSING = (errno.ENOENT, errno.ENOTDIR)


@dataclass(frozen=True)
class CsvTable:
    """An open CSV: its column names, and its rows as (line, cells), each checked as it is read."""

    columns: list[str]
    rows: Iterator[tuple[int, dict[str, str]]]


@contextlib.contextmanager
def open_csv(path: Path) -> Iterator[CsvTable]:
    """Open a person's CSV (a regular file only, through core.files) for reading its rows once."""
    with open_data_file(path, "r", error=data_error, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        with _read_errors(path, reader):
            columns = [name.strip() for name in reader.fieldnames or []]
        _refuse_nul(path, 1, columns)
        reader.fieldnames = columns
        yield CsvTable(columns, _rows(path, reader))


def _rows(path: Path, reader: csv.DictReader) -> Iterator[tuple[int, dict[str, str]]]:
    with _read_errors(path, reader):
        for cells in reader:
            _refuse_nul(path, reader.line_num, cells.values())
            yield reader.line_num, cells


@contextlib.contextmanager
def _read_errors(path: Path, reader: csv.DictReader) -> Iterator[None]:
    try:
        yield
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a valid UTF-8 CSV file (line {reader.line_num + 1}: {exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({os_reason(exc)})") from exc


def _refuse_nul(path: Path, line: int, cells: Iterable[str | list[str] | None]) -> None:
    # Python's csv module reads NUL bytes as text; a path holding one cannot even be looked up.
    for cell in cells:
        text = "".join(cell) if isinstance(cell, list) else cell  # cells past the header come as a list
        if isinstance(text, str) and "\x00" in text:
            raise DataError(f"{path}:{line}: a NUL byte in a cell; this is not a plain-text CSV file")


# ---------------------------------------------------------------------------------- label CSVs


class LabelRow(NamedTuple):
    """One row of a label CSV: the file, its label (a tuple of labels with many per image) and the
    split its `split` cell names (train, val or test; "" without the column)."""

    file: Path
    label: str | tuple[str, ...]
    split: str


def labelled_rows(path: Path, separator: str | None = None) -> list[LabelRow]:
    """The rows of a `path,label` CSV, or with `separator` (many labels per image) of a `path,labels` CSV
    whose cells join an image's labels by it (an empty cell: none of the classes); relative paths are
    relative to the CSV's folder; an optional `split` column (train, val, test) assigns each row a split.

    A blank path or (single) label is a DataError naming the line (a row left half filled in is a mistake
    to fix, not an image to drop unseen); so is a file listed twice, under two labels (it has one) or
    under one (it could land in both training and validation); and MISSING_LIMIT files that do not
    exist. Fewer missing files are returned and skipped by the decoder, which names each. Without
    `separator`, a `labels` column or a label holding `|` is refused with the option that reads it."""
    rows: list[LabelRow] = []
    first: dict[object, tuple[int, object]] = {}  # a file's identity -> (line, label) of its first row
    missing: list[tuple[int, str]] = []
    with open_csv(path) as table:
        column = _label_column(path, table.columns, separator)
        for line, cells in table.rows:
            given, label = cells["path"] or "", _row_label(path, line, cells[column] or "", separator)
            if not given.strip() or label == "":
                raise DataError(f"{path}:{line}: empty {'path' if not given.strip() else 'label'}")
            file = Path(given) if Path(given).is_absolute() else path.parent / given
            identity = _identity(file)
            if identity is None:
                missing.append((line, given))
                if len(missing) == MISSING_LIMIT:
                    raise _missing_files(path, missing)
                identity = os.path.normpath(file)
            earlier = first.setdefault(identity, (line, label))
            if earlier[0] != line:
                raise _listed_twice(path, line, given, earlier, label)
            rows.append(LabelRow(file, label, _split(path, line, cells.get("split"))))
    return rows


def _label_column(path: Path, columns: list[str], separator: str | None) -> str:
    if separator is not None:
        if not set(LABEL_SET_COLUMNS) <= set(columns):
            raise DataError(f"{path}: with --multi-label, a label CSV needs the columns path,labels (found {columns})")
        return "labels"
    if set(LABEL_SET_COLUMNS) <= set(columns) and "label" not in columns:
        raise DataError(f"{path}: a `labels` column holds many labels per image; add --multi-label")
    if not set(LABEL_COLUMNS) <= set(columns):
        raise DataError(f"{path}: a label CSV needs the columns path,label (found {columns})")
    return "label"


def _row_label(path: Path, line: int, cell: str, separator: str | None) -> str | tuple[str, ...]:
    if separator is not None:
        return split_labels(cell, separator)
    label = cell.strip()
    if "|" in label:
        raise DataError(
            f"{path}:{line}: the label {label!r} holds '|', which joins many labels per image: add "
            "--multi-label (and --label-sep to choose another separator)"
        )
    return label


def _split(path: Path, line: int, cell: str | None) -> str:
    word = (cell or "").strip().lower()
    if word and word not in SPLIT_WORDS:
        raise DataError(f"{path}:{line}: split {cell!r} is not one of train, val, test")
    return SPLIT_WORDS.get(word, "")


def _identity(file: Path) -> object:
    """The file's (device, inode), its normalised path where it cannot be looked up, or None where it
    does not exist."""
    try:
        info = os.stat(file)
    except OSError as exc:
        return None if exc.errno in _MISSING else os.path.normpath(file)  # the decoder names any other reason
    return info.st_dev, info.st_ino


def _listed_twice(path: Path, line: int, given: str, earlier: tuple[int, object], label: object) -> DataError:
    first_line, first_label = earlier
    if first_label != label:
        return DataError(
            f"{path}:{line}: {given!r} is listed under two labels, {first_label!r} (line {first_line}) "
            f"and {label!r}; a file has one label"
        )
    return DataError(
        f"{path}:{line}: {given!r} is listed again (first on line {first_line}); a file listed twice "
        "could be used both to train and to validate"
    )


def _missing_files(path: Path, missing: list[tuple[int, str]]) -> DataError:
    shown = ", ".join(f"line {line}: {given!r}" for line, given in missing[:3])
    return DataError(
        f"{path}: {len(missing)} of the files it lists do not exist by line {missing[-1][0]} ({shown}, ...); "
        f"stopped there. Relative paths are read from the CSV's folder, {path.resolve().parent}"
    )
