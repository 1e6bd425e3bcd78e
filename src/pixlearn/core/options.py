"""One source per option: a config dataclass field carries its type, default, help and range.

`TrainConfig` and `FitConfig` declare every option with `option(...)`; the type annotation gives
the choices (`Literal[...]`) and whether None is allowed. From that one declaration:

- `check_options(config)` validates every field before any file is read (choices, ranges, types),
  raising ConfigError with "did you mean" for a near miss;
- `cli_parameters(cls)` builds the command-line options (flag, default, help with the choices,
  help panel), so the CLI cannot disagree with the API.

The options several verbs share are declared once, here, so that a flag means the same thing in
every verb (same name, type, choices in the same order, default and help):

- run options: `seed_option`, `device_option`, `threads_option`, `workers_option`, `precision_option`;
- decoding options: `size_option`, `color_option`, `fit_option`, `max_pixels_option`, `strict_option`.

A new verb's config (lr-find, serve, ...) declares its field with the factory, e.g.
`device: str = device_option()`; a verb whose options are not a config dataclass takes them from
`SharedOptions` (`with_options(SharedOptions, only=("device", "strict"))` in the CLI). Only `size` takes
a per-verb default text (its default rightly differs by verb), and `color_option(alpha=False)` keeps the
one list of choices while refusing rgba, with the reason, in a verb that has no alpha channel.
`tests/cli/test_same_flags.py` walks every command and fails on a flag that differs between verbs.

    >>> from dataclasses import dataclass
    >>> from typing import Literal
    >>> @dataclass
    ... class Demo:
    ...     color: Literal["grayscale", "rgb"] = option("rgb", "Colour mode.")
    ...     epochs: int = option(10, "Passes over the data.", minimum=1)
    >>> check_options(Demo(color="greyscale"))
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ConfigError: color (--color): 'greyscale' is not one of ...; did you mean 'grayscale'?
    >>> check_options(Demo(epochs=0))
    Traceback (most recent call last):
    ...
    pixlearn.core.errors.ConfigError: epochs (--epochs): must be at least 1, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pixlearn.core.errors import ConfigError

META_KEY = "pixlearn.option"


@dataclass(frozen=True)
class OptionInfo:
    """What a field says about itself beyond its type and default."""

    help: str
    panel: str | None = None  # the --help group (Data, Model, Optimiser, ...)
    minimum: float | None = None  # value >= minimum
    maximum: float | None = None  # value <= maximum
    above: float | None = None  # value > above
    below: float | None = None  # value < below
    flag: str | None = None  # the command-line name when it is not --field-name
    parse: Callable[[str], Any] | None = None  # command-line text -> value, for types the CLI cannot take as is
    default_text: str | None = None  # what --help shows as the default where the field's default is None
    cli: bool = True  # False: API only, or a command-line option built by hand (e.g. repeated --group)
    refused: tuple[tuple[Any, str], ...] = ()  # (value, why) pairs this field refuses although its type lists them


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    **info: Any,
) -> Any:
    """A dataclass field with its help text and checks; `info` takes OptionInfo's fields."""
    metadata = {META_KEY: OptionInfo(help, **info)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls: type) -> list[tuple[dataclasses.Field, OptionInfo, Any]]:
    """(field, its OptionInfo, its resolved type) for every declared option of a config class."""
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata[META_KEY], hints[f.name]) for f in dataclasses.fields(cls) if META_KEY in f.metadata]


def flag_of(f: dataclasses.Field, info: OptionInfo) -> str:
    return info.flag or "--" + f.name.replace("_", "-")


def label(f: dataclasses.Field, info: OptionInfo) -> str:
    """How messages name an option: the API field and the command-line flag, for either audience."""
    return f"{f.name} ({flag_of(f, info)})"


def _allows_none(kind: Any) -> bool:
    return get_origin(kind) in (typing.Union, types.UnionType) and type(None) in get_args(kind)


def _without_none(kind: Any) -> Any:
    if not _allows_none(kind):
        return kind
    rest = [a for a in get_args(kind) if a is not type(None)]
    return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007 - built at run time


def choices_of(kind: Any) -> tuple[Any, ...] | None:
    """The allowed values of a Literal type (through Optional), else None."""
    kind = _without_none(kind)
    return get_args(kind) if get_origin(kind) is Literal else None


def check_options(config: Any) -> None:
    """Raise ConfigError for the first option whose value is outside its type, choices or range."""
    for f, info, kind in option_fields(type(config)):
        value = getattr(config, f.name)
        if value is None:
            if not _allows_none(kind):
                raise ConfigError(f"{label(f, info)}: a value is required")
            continue
        _check_value(f, info, kind, value)
        for refused, why in info.refused:
            if value == refused:
                raise ConfigError(f"{label(f, info)}: {value!r} {why}")


def _check_value(f: dataclasses.Field, info: OptionInfo, kind: Any, value: Any) -> None:
    name = label(f, info)
    choices = choices_of(kind)
    if choices is not None:
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.4)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}{hint}")
        return
    base = _without_none(kind)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return
    if base in (int, float):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (base is int and not isinstance(value, int)):
            raise ConfigError(f"{name}: expected {'an integer' if base is int else 'a number'}, got {value!r}")
        _check_range(name, info, value)
    elif not _conforms(value, base):  # text, lists, objects: a config.json edited by hand, the API
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{name}: expected {_type_text(base)}, got {shown}")
    else:  # the range holds for each number: a side, or both of a (width, height) pair
        for number in _numbers(value):
            _check_range(name, info, number)


def _numbers(value: Any) -> list[float]:
    """The numbers a value of a union or tuple type holds: itself, or the items of a list or tuple."""
    items = value if isinstance(value, list | tuple) else [value]
    return [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def _conforms(value: Any, kind: Any) -> bool:
    """Whether `value` has the structure of the type `kind` (str, list[str], dict[str, X], tuples, unions)."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is Literal:
        return value in args
    if origin is list:
        return isinstance(value, list | tuple) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        pairs = value.items() if isinstance(value, dict) else None
        return pairs is not None and all(_conforms(k, args[0]) and _conforms(v, args[1]) for k, v in pairs)
    if origin is tuple:
        return isinstance(value, list | tuple) and len(value) == len(args) and all(map(_conforms, value, args))
    if kind in (int, float):
        return isinstance(value, kind if kind is int else int | float) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True  # Any and the like


def _type_text(kind: Any) -> str:
    origin, args = get_origin(kind), get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Literal:  # a word a number option also takes (--lr auto)
        return " or ".join(map(str, args))
    if origin is list:
        return f"a list of {_type_text(args[0])}"
    if origin is dict:
        return f"an object whose values are {_type_text(args[1])}"
    if origin is tuple:
        return f"[{', '.join(_type_text(a) for a in args)}]"
    return {str: "text", int: "an integer", float: "a number", bool: "true or false"}.get(kind, str(kind))


def _check_range(name: str, info: OptionInfo, value: float) -> None:
    if value != value:  # NaN compares false with every bound
        raise ConfigError(f"{name}: must be a number, got {value}")
    if value in (math.inf, -math.inf):  # no option means "without end" by infinity: sizes would overflow
        raise ConfigError(f"{name}: must be a finite number, got {value}")
    if info.minimum is not None and value < info.minimum:
        raise ConfigError(f"{name}: must be at least {info.minimum:g}, got {value:g}")
    if info.maximum is not None and value > info.maximum:
        raise ConfigError(f"{name}: must be at most {info.maximum:g}, got {value:g}")
    if info.above is not None and not value > info.above:
        raise ConfigError(f"{name}: must be more than {info.above:g}, got {value:g}")
    if info.below is not None and not value < info.below:
        raise ConfigError(f"{name}: must be less than {info.below:g}, got {value:g}")


# ---------------------------------------------------------------------------------- sizes

_SIZE = re.compile(r"\s*(\d+)\s*(?:x\s*(\d+)\s*)?", re.ASCII | re.IGNORECASE)


def parse_size(text: str | int, name: str = "size (--size)") -> tuple[int, int]:
    """A size in pixels as people write it, `WIDTHxHEIGHT` or one side (a square) -> (width, height).

    The one reader of a size: `--size` of train, fit, compare, table, render and check (which keeps to a
    square), and `summary --input` (which adds a channel count). Each config keeps (width, height) or a
    side and converts it to the (height, width) of arrays at one place of its own
    (`TrainConfig.input_size`, `field.image`).

        >>> parse_size("256x192"), parse_size("64"), parse_size(64)
        ((256, 192), (64, 64), (64, 64))
        >>> parse_size("12y9")
        Traceback (most recent call last):
        ...
        pixlearn.core.errors.ConfigError: size (--size): expected WIDTHxHEIGHT such as 256x192, ...; got '12y9'
    """
    match = _SIZE.fullmatch(str(text))
    if match is None:
        raise ConfigError(f"{name}: expected WIDTHxHEIGHT such as 256x192, or one side such as 256; got {text!r}")
    width = int(match.group(1))
    return width, int(match.group(2) or width)


def number_or(word: str, name: str) -> Callable[[str], float | str]:
    """The command-line reader of a number option that also takes one word (`--lr auto`); the range is
    checked with the others (`check_options`).

        >>> read = number_or("auto", "lr")
        >>> read("3e-4"), read("AUTO")
        (0.0003, 'auto')
        >>> read("fast")
        Traceback (most recent call last):
        ...
        pixlearn.core.errors.ConfigError: lr (--lr): expected a number such as 3e-4, or auto; got 'fast'
    """

    def read(text: str) -> float | str:
        if text.strip().lower() == word:
            return word
        try:
            return float(text)
        except ValueError:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{name} ({flag}): expected a number such as 3e-4, or {word}; got {text!r}") from None

    return read


# ---------------------------------------------------------------------------------- shared options

# Every verb's options fall in these --help panels; the shared ones in Data (how images are read) and Run.
DATA, RUN = "Data", "Run"
MAX_THREADS = 4096  # every --threads option's bound: torch's count is a C int, a larger one is refused, not overflowed
MAX_SEED = 2**32 - 1  # numpy refuses negative seeds; the per-epoch seeds (seed x 1,000,003 + epoch) stay in 64 bits

Color = Literal["auto", "grayscale", "rgb", "rgba"]
FitMode = Literal["squash", "crop", "pad"]
Precision = Literal["auto", "fp32", "bf16"]

SIZE_HELP = "Resize images to WIDTHxHEIGHT pixels (64x32: 64 wide, 32 high), or to a square of one side."
NO_ALPHA = "keeps an alpha channel only in fit, compare, table and render; use rgb"


def size_option(default: Any, default_text: str, **info: Any) -> Any:
    """`--size`: one help, read by `parse_size`; the default rightly differs by verb, so each says its own."""
    parse = info.pop("parse", parse_size)
    return option(default, SIZE_HELP, panel=DATA, parse=parse, default_text=default_text, **info)


def color_option(alpha: bool = True) -> Any:
    """`--color`: one list of choices everywhere; a verb without alpha refuses rgba with the reason."""
    refused = () if alpha else (("rgba", NO_ALPHA),)
    return option(
        "auto", "Colour mode; auto keeps grey images grey (and alpha where the verb keeps it), else rgb.",
        panel=DATA, refused=refused,
    )  # fmt: skip


def fit_option() -> Any:
    """`--fit`: how an image of another shape than --size is fitted to it."""
    return option("squash", "How images of another shape are fitted to --size.", panel=DATA)


def max_pixels_option() -> Any:
    """`--max-pixels`: the decompression-bomb guard."""
    return option(
        None, "Refuse images with more pixels than this (decompression-bomb guard).", panel=DATA, minimum=1,
        default_text="Pillow's, about 89 M",
    )  # fmt: skip


def strict_option() -> Any:
    """`--strict`: stop at an undecodable file instead of skipping it."""
    return option(False, "Stop at the first undecodable file instead of skipping it.", panel=DATA)


def seed_option() -> Any:
    """`--seed`: every random choice of the verb."""
    return option(
        0, "Seed of every random choice (split, initial weights, batch order, augmentation, folds): the same "
        "seed repeats the run.", panel=RUN, minimum=0, maximum=MAX_SEED,
    )  # fmt: skip


def device_option() -> Any:
    """`--device`: auto everywhere."""
    return option("auto", "auto (CUDA when present), cpu, cuda or cuda:N.", panel=RUN)


def threads_option() -> Any:
    """`--threads`: 0 lets pixlearn choose (`core.devices.choose_threads`)."""
    return option(
        0, "CPU threads for the network (0 = one per core that other work leaves free; one per core under "
        "torchrun or OMP_NUM_THREADS).", panel=RUN, minimum=0, maximum=MAX_THREADS,
    )  # fmt: skip


def workers_option() -> Any:
    """`--workers`: image-decoding workers."""
    return option(
        0, "Image-decoding workers (0 = one per core): processes for 128 files or more, else threads; with "
        "--stream, decoding processes per training process (up to 4).", panel=RUN, minimum=0,
    )  # fmt: skip


def precision_option() -> Any:
    """`--precision`: auto everywhere; for a trained run, auto is the precision it trained with."""
    return option(
        "auto", "Network precision; auto is bf16 where the device computes it natively, else fp32 (a trained "
        "run: the precision it trained with).", panel=RUN,
    )  # fmt: skip


@dataclass
class SharedOptions:
    """The shared options as one config, for a verb whose own options are not a config dataclass:
    `with_options(SharedOptions, only=("device", "strict"))` gives it exactly these declarations."""

    size: tuple[int, int] | None = size_option(None, "the image's own")
    color: Color = color_option()
    fit: FitMode = fit_option()
    max_pixels: int | None = max_pixels_option()
    strict: bool = strict_option()
    seed: int = seed_option()
    device: str = device_option()
    threads: int = threads_option()
    workers: int = workers_option()
    precision: Precision = precision_option()


# ---------------------------------------------------------------------------------- the command line


def help_text(f: dataclasses.Field, info: OptionInfo, kind: Any) -> str:
    """The option's help, its choices and its default, as --help shows them."""
    text = info.help
    choices = choices_of(kind)
    if choices is not None:
        text += f" [{' | '.join(map(str, choices))}]"
    shown = info.default_text
    if shown is None and f.default is not dataclasses.MISSING and f.default is not None:
        shown = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    if shown is not None:
        text += f" [default: {shown}]"
    return text


def cli_type(kind: Any, info: OptionInfo) -> type:
    """The type the command line parses the option as: str for choices and hand-parsed text."""
    if info.parse is not None or choices_of(kind) is not None:
        return str
    base = _without_none(kind)
    if base in (bool, int, float, str):
        return base
    return str


def cli_parameters(cls: type, exclude: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """Keyword parameters for a Typer command, one per option of `cls` (its flag, default and help)."""
    import typer  # the CLI's library: imported only when a command is being built

    params = []
    for f, info, kind in option_fields(cls):
        if not info.cli or f.name in exclude:
            continue
        kind_cli = cli_type(kind, info)
        default = None if info.parse is not None else f.default
        if default is dataclasses.MISSING:
            default = None
        decls = [flag_of(f, info)]
        if kind_cli is bool:
            decls = [f"{flag_of(f, info)}/--no-{flag_of(f, info)[2:]}"]
        opt = typer.Option(
            default, *decls, help=help_text(f, info, kind), rich_help_panel=info.panel, show_default=False
        )
        annotation = kind_cli if default is not None or kind_cli is bool else kind_cli | None
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=annotation))
    return params


def from_cli(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Command-line values of `cls`'s options turned into field values (through each `parse`)."""
    out = {}
    for f, info, _ in option_fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        if info.parse is not None and value is None:
            continue  # not typed (a parsed option's command-line default is None): the field's own default
        out[f.name] = info.parse(value) if info.parse is not None else value
    return out
