"""The one way to show user text (file names, class names, labels, URLs) in each medium.

Names come from folders and files a person did not write with pixlearn in mind, so each place
that shows one passes it through the helper for its medium:

- `log_text`: plain text (log.txt, the report's HTML): control characters, line and paragraph
  separators and bidi overrides shown escaped (`\\x1b`, `\\n`, `\\u202e`), so a name can neither
  forge a line nor show itself reversed; file-name bytes that are not UTF-8 as `\\xNN`.
- `terminal_text`: `log_text` plus Rich markup escaping, for everything the CLI prints.
- `figure_text`: `log_text` with `$` escaped, so matplotlib never reads a name as math text.
- `csv_cell` / `from_csv_cell`: a cell that a spreadsheet cannot run as a formula (OWASP: a quote
  before a leading `= + - @`, tab or carriage return; a leading quote is doubled, so every value
  reads back exactly).

    >>> log_text("a\\nb\\u202ec\\x1b[2J")
    'a\\\\nb\\\\u202ec\\\\x1b[2J'
    >>> terminal_text("[bold red]x")
    '\\\\[bold red]x'
    >>> figure_text("$\\\\evil$")
    '\\\\$\\\\evil\\\\$'
    >>> csv_cell("=1+1"), csv_cell("'quoted"), csv_cell(-2), csv_cell("plain")
    ("'=1+1", "''quoted", -2, 'plain')
    >>> from_csv_cell("'=1+1"), from_csv_cell("''quoted"), from_csv_cell("plain")
    ('=1+1', "'quoted", 'plain')
"""

from __future__ import annotations

import numbers
import re
from typing import Any

from rich.markup import escape as _markup_escape

# C0 and C1 controls (DEL included), the line and paragraph separators, and the bidi controls:
# the Arabic letter mark, LRM / RLM, the embeddings and overrides U+202A-202E, the isolates U+2066-2069.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# OWASP CSV injection: cells starting with these run as formulas in spreadsheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def printable(text: str) -> str:
    """`text` safe to write as UTF-8: bytes of a file name that are not UTF-8 (which Python keeps
    as surrogate escapes) become `\\xNN`, so a strange name never stops a CSV or the log.

    >>> printable("caf\\udce9.png")
    'caf\\\\xe9.png'
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log_text(value: Any) -> str:
    """`value` as one line of plain text: controls and bidi characters escaped, non-UTF-8 bytes as \\xNN."""
    return _UNSAFE.sub(_escaped, printable(str(value)))


def terminal_text(value: Any) -> str:
    """`value` for Rich to print literally: `log_text`, then Rich markup escaped.

    A trailing backslash is shown as `\\x5c`: Rich reads backslashes before a tag that follows
    (`[bold]NAME[/bold]`) as escapes, so the text prints the same alone and inside markup.
    """
    text = log_text(value)
    if text.endswith("\\"):
        text = text[:-1] + "\\x5c"
    return _markup_escape(text)


def figure_text(value: Any) -> str:
    """`value` for matplotlib to draw literally: `log_text` with `$` escaped (no math text)."""
    return log_text(value).replace("$", "\\$")


def csv_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula; numbers (and None) are left as they are."""
    if value is None or isinstance(value, numbers.Number):
        return value
    text = str(value)
    return _QUOTE + text if text.startswith((*FORMULA_STARTS, _QUOTE)) else text


def from_csv_cell(text: Any) -> Any:
    """The value a `csv_cell` was written from (anything that is not a string is returned as is)."""
    if isinstance(text, str) and text.startswith(_QUOTE):
        return text[1:]
    return text
