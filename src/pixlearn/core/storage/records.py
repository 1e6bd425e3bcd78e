"""Typed records of a run's files: each JSON file (and each row of a history.csv) one frozen
dataclass, written and read through `Record` alone, as `spec.ModelSpec` is model.json's.

A record's fields are its file's keys, each with its type and, where the key is optional, its
default: files written before a key existed load with that default (set here, in the record, and
nowhere else), and keys a record does not know (a file of a newer pixlearn) are kept in `extra` and
written back. A value of the wrong type is a RunError naming the file and the key. A record with a
FORMAT writes it as `"format": "NAME/VERSION"`; files written before that key existed read as
version 1, and a newer version than this pixlearn reads is refused, as model.json's is. JSON has no
NaN: a number that is not finite is no value. An optional number's (a held-out SSIM of too few
pixels) is written as its None is; a required number's is written as null (`rundir.strict_json`: a
reliability bin without images) and read back as NaN, so a file reads back as the record that wrote it.

    >>> @dataclass(frozen=True)
    ... class Example(Record):
    ...     FILE = "example.json"
    ...     name: str
    ...     steps: int | None = None
    >>> Example.from_dict({"name": "siren", "colour": "rgb"})
    Example(name='siren', steps=None)
    >>> Example.from_dict({"name": "siren", "colour": "rgb"}).content()
    {'name': 'siren', 'colour': 'rgb'}
    >>> Example.from_dict({"name": "siren", "steps": "20"})
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.RunError: example.json: steps must be an integer or null, got '20'

Records of the classification job are in `classify_records.py`, of the image fit in `field_records.py`;
config.json's is `RunConfig` below (its job's options dataclass checks the options themselves).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import numbers
import os
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin, get_type_hints

from pixlearn.core.errors import RunError
from pixlearn.core.storage.files import check_regular_file
from pixlearn.core.storage.rundir import read_csv, read_json, write_csv, write_json
from pixlearn.core.text import from_csv_cell

MAX_RECORD_BYTES = 64 << 20  # a record's file, refused unread above this (evaluation.json allows more)
NONE_KEY = "none"  # field metadata: how None is written: left out ("omit", the default), "null" or "{}"


def optional(key: str | None = None, none: Literal["omit", "null", "{}"] = "omit", default: Any = None) -> Any:
    """A field whose JSON key is no Python name (`key`: `class`), or whose None is written as null or as
    {} (`none`; "{}" also reads {} back as None); a field declared `x: int | None = None` is left out."""
    metadata = {NONE_KEY: none, **({"key": key} if key else {})}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def keyed(key: str) -> Any:
    """A required field whose JSON key is not a Python name (`class`)."""
    return field(metadata={"key": key})


@dataclass(frozen=True)
class Record:
    """One JSON object of a run's files; subclasses are frozen dataclasses whose fields are its keys."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)  # keys this version does not know

    FILE: ClassVar[str] = ""  # its file's name in a run directory ("" for a part of another record)
    FORMAT: ClassVar[str] = ""  # written as "format": "FORMAT/VERSION" ("" for none)
    VERSION: ClassVar[int] = 1  # raise when older pixlearn would misread new files; readers accept 1..VERSION
    MAX_BYTES: ClassVar[int] = MAX_RECORD_BYTES

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "") -> Self:
        """The record of one JSON object as written by any version (checked; `source` names it in errors)."""
        return cls._parse(data, str(source or cls.FILE or cls.__name__), "")

    @classmethod
    def _parse(cls, data: Any, source: str, where: str) -> Self:
        if not isinstance(data, dict):
            raise RunError(f"{source}: {where or 'the file'} must be a JSON object, got {_shown(data)}")
        values = dict(data)
        if cls.FORMAT and not where:
            _check_format(cls, values.pop("format", None), source)
        hints, kwargs = _hints(cls), {}
        for f in _fields(cls):
            key = f.metadata.get("key", f.name)
            path = cls._where(where, key)
            if key not in values:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RunError(f"{source}: {path} is missing")
                continue
            value = values.pop(key)
            empty = value == {} and f.metadata.get(NONE_KEY) == "{}"
            kwargs[f.name] = None if empty else convert(value, hints[f.name], path, source)
        return cls(**kwargs, extra=values)

    @staticmethod
    def _where(where: str, key: str) -> str:
        """How an error names the key `key` of the part at `where` (per_class[0].precision)."""
        return f"{where}.{key}" if where else key

    def content(self) -> dict[str, Any]:
        """The JSON object as written, without its format: known keys, then the unknown ones kept."""
        out: dict[str, Any] = {}
        hints = _hints(type(self))
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value) and _optional_number(hints[f.name]):
                value = None  # no value: JSON has no NaN
            if value is None:
                none = f.metadata.get(NONE_KEY, "omit")
                if none == "omit":
                    continue
                value = {} if none == "{}" else None
            out[f.metadata.get("key", f.name)] = plain(value)
        return out | {k: v for k, v in self.extra.items() if k not in out}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written, `format` first where the record has one."""
        return ({"format": f"{self.FORMAT}/{self.VERSION}"} if self.FORMAT else {}) | self.content()

    @classmethod
    def path_in(cls, where: str | os.PathLike) -> Path:
        """`where` itself when it names the file, else the record's file in the directory `where`."""
        path = Path(where)
        if not cls.FILE:  # a file of no fixed name (the decode cache's index)
            return path
        return path / cls.FILE if path.is_dir() or path.suffix.lower() != Path(cls.FILE).suffix else path

    @classmethod
    def read(cls, where: str | os.PathLike) -> Self:
        """The record in `where` (its file, or the directory holding it); RunError says what is wrong."""
        path = cls.path_in(where)
        return cls.from_dict(read_bounded(path, dict, cls.MAX_BYTES), path)

    @classmethod
    def read_if_present(cls, where: str | os.PathLike) -> Self | None:
        """`read`, or None where the file does not exist (an interrupted run, an older one)."""
        path = cls.path_in(where)
        return cls.read(path) if path.exists() else None

    def write(self, where: str | os.PathLike) -> Path:
        """Write the file atomically (`rundir.write_json`) into the directory `where` (or as `where`)."""
        path = self.path_in(where)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def read_list(cls, where: str | os.PathLike) -> list[Self]:
        """A file holding a JSON list of these records (compare.json)."""
        path = cls.path_in(where)
        items = read_bounded(path, list, cls.MAX_BYTES)
        return [cls._parse(item, str(path), f"[{i}]") for i, item in enumerate(items)]

    @classmethod
    def write_list(cls, where: str | os.PathLike, records: Sequence[Self]) -> Path:
        path = cls.path_in(where)
        write_json(path, [r.content() for r in records])
        return path


@dataclass(frozen=True)
class CsvRow(Record):
    """One row of a CSV file of the run (history.csv): a column per field, a blank cell for None."""

    # columns written only where some row has a value (the held-out PSNR of a held-out fit)
    OPTIONAL_COLUMNS: ClassVar[frozenset[str]] = frozenset()

    @staticmethod
    def _where(where: str, key: str) -> str:
        return f"{where}, column {key}"  # line 3, column loss

    @classmethod
    def columns(cls) -> tuple[str, ...]:
        """The file's columns, in order (optional ones included)."""
        return _names(cls)

    @classmethod
    def read_rows(cls, where: str | os.PathLike) -> list[Self]:
        """Every row of the file (RunError for a cell of the wrong type, naming the file, line and column)."""
        path = cls.path_in(where)
        return [cls._from_cells(row, str(path), i + 2) for i, row in enumerate(read_csv(path))]

    @classmethod
    def _from_cells(cls, row: dict[Any, Any], source: str, line: int) -> Self:
        if None in row:  # csv.DictReader's place for cells beyond the header
            raise RunError(f"{source}: line {line} has more cells than the header")
        hints, names, values = _hints(cls), _names(cls), {}
        for key, text in row.items():
            text = "" if text is None else from_csv_cell(text)  # None: a short row's missing cells
            values[key] = cell_value(text, hints[key]) if key in names else text
        return cls._parse(values, source, f"line {line}")

    @classmethod
    def write_rows(cls, where: str | os.PathLike, rows: Sequence[Self]) -> Path:
        """Write the file atomically: the record's columns (optional ones where a row has a value), then
        any unknown ones the rows kept."""
        path = cls.path_in(where)
        names = list(_names(cls))
        columns = [n for n in names if n not in cls.OPTIONAL_COLUMNS or any(getattr(r, n) is not None for r in rows)]
        columns += list(dict.fromkeys(k for r in rows for k in r.extra if k not in names))
        cells = [[_cell(r, c) for c in columns] for r in rows]
        write_csv(path, columns, cells)
        return path


def _cell(row: CsvRow, column: str) -> Any:
    value = getattr(row, column) if column in _names(type(row)) else row.extra.get(column)
    return "" if value is None else value


@dataclass(frozen=True)
class RunConfig(Record):
    """config.json: the resolved options of the run, as its job's options dataclass wrote them. Its keys
    are that dataclass's fields (classify.config.TrainConfig, field.config.FitConfig, compare's settings),
    checked by it (`classify.config.read_config`); here the file is read as the object it is."""

    FILE = "config.json"

    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _parse(cls, data: Any, source: str, where: str) -> Self:
        if not isinstance(data, dict):
            raise RunError(f"{source}: the file must be a JSON object, got {_shown(data)}")
        return cls(dict(data))

    def content(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def model(self) -> str | None:
        """The registered model the options name (a training run's and a fit's), where it is text."""
        name = self.options.get("model")
        return name if isinstance(name, str) else None


# ---------------------------------------------------------------------------------- values


def read_bounded(path: Path, kind: type[dict] | type[list], limit: int) -> Any:
    """The JSON file at `path` (`rundir.read_json`), refused unread over `limit` bytes."""
    info = check_regular_file(path)
    if info is not None and info.st_size > limit:
        raise RunError(f"{path}: {info.st_size:,} bytes, over the limit of {limit:,} bytes for this file")
    return read_json(path, kind)


def convert(value: Any, hint: Any, where: str, source: str) -> Any:
    """`value` as the type `hint` says (lists as tuples, objects of a record as that record), or a
    RunError naming `source` and `where` in it."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            with contextlib.suppress(RunError):  # not this alternative: try the next
                return convert(value, option, where, source)
        raise _wrong(value, hint, where, source)
    if origin is tuple and isinstance(value, list | tuple):
        if args[-1:] == (...,) and args[0] in (int, float, str) and all(_is(v, args[0]) for v in value):
            return tuple(value)  # long lists of numbers (a confusion matrix's rows): no call per value
        items = args[:1] * len(value) if args[-1:] == (...,) else args
        if len(items) != len(value):
            raise _wrong(value, hint, where, source)
        return tuple(convert(v, h, f"{where}[{i}]", source) for i, (v, h) in enumerate(zip(value, items, strict=True)))
    if origin is dict and isinstance(value, dict):
        return {k: convert(v, args[1], f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Record) and isinstance(value, dict):
        return hint._parse(value, source, where)
    if value is None and hint is float:  # the writer's "no value" for a number that was NaN (rundir.strict_json)
        return math.nan
    if _is(value, hint):
        return value
    raise _wrong(value, hint, where, source)


def _optional_number(hint: Any) -> bool:
    """Whether a field of this type is a number or None (`float | None`)."""
    args = get_args(hint)
    return get_origin(hint) in (Union, types.UnionType) and float in args and type(None) in args


def _is(value: Any, hint: Any) -> bool:
    if get_origin(hint) is Literal:
        return value in get_args(hint)
    if hint in (int, float) and isinstance(value, bool):
        return False
    if not isinstance(hint, type):
        return False
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(hint, hint))


def cell_value(text: str, hint: Any) -> Any:
    """A CSV cell as the value `hint` expects: text, None for a blank, else a number where it is one."""
    options = [a for a in (get_args(hint) or (hint,)) if a is not type(None)]
    if str in options or hint is Any or get_origin(hint) is Literal:
        return text
    if text == "":
        return None
    try:
        return int(text) if int in options and float not in options else float(text)
    except ValueError:
        return text  # refused with its column's name by `convert`


def plain(value: Any) -> Any:
    """A record's value as JSON data: parts as objects, tuples as lists."""
    if isinstance(value, Record):
        return value.content()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _wrong(value: Any, hint: Any, where: str, source: str) -> RunError:
    return RunError(f"{source}: {where} must be {_expected(hint)}, got {_shown(value)}")


def _expected(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return "a list" if args[-1:] == (...,) else f"a list of {len(args)} values"
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "null"}
    return names.get(hint, "an object")


def _shown(value: Any) -> str:
    shown = repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _check_format(record: type[Record], text: Any, source: str) -> None:
    if text is None:  # written before records had a format: version 1
        return
    match = re.fullmatch(rf"{re.escape(record.FORMAT)}/(\d+)", str(text))
    if not match:
        raise RunError(f"{source}: not a {record.FORMAT} file (expected format {record.FORMAT}/N, got {_shown(text)})")
    if not 1 <= int(match.group(1)) <= record.VERSION:
        raise RunError(
            f"{source}: written by a newer pixlearn ({record.FORMAT} version {match.group(1)}; this version "
            f"reads up to {record.VERSION}); upgrade pixlearn to read it"
        )


@functools.cache
def _fields(record: type[Record]) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(record) if f.name != "extra")


@functools.cache
def _names(record: type[Record]) -> tuple[str, ...]:
    return tuple(f.name for f in _fields(record))


@functools.cache
def _hints(record: type[Record]) -> dict[str, Any]:
    return get_type_hints(record)
