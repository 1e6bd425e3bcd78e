"""Measured timings live in bench/README.md, not in the code's comments and docstrings, where they go
stale: a comment on a speed trick says what it saves and why it is safe, and names the section of
bench/README.md that measures it (`bench/README.md, "<heading>"`, the heading exactly).

What counts as a timing: a number with a unit of time written apart from it ("0.3 s", "1.3-1.5 s"),
with "ms", "µs", "seconds" or "minutes", or "Nx faster / slower". Not: an option's value as typed
("--time 30s", "2m"), a struct format ("4s"), doctest lines and their expected output, the quoted
heading of a bench/README.md section. A line may keep a duration that is not a measurement with the
marker `timing-ok:` and its reason; at most a handful do.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pixlearn"
BENCH_README = ROOT / "bench" / "README.md"

TIMING = re.compile(
    r"\d(\.\d+)?\s*(ms|µs|us|seconds?|minutes?|min)\b"  # 2.9 ms, 30 seconds, 10 min
    r"|\d(\.\d+)?\s+s\b"  # 0.3 s, 1.3-1.5 s; not "30s" (an option's value) nor "4s" (a struct format)
    r"|\d+(\.\d+)?x (faster|slower)"
)
REFERENCE = re.compile(r'bench/README\.md, "([^"\n]*)"')
MARKER = "timing-ok:"
MAX_MARKED = 5


def prose_lines(source: str) -> list[tuple[int, str]]:
    """(line number, text) of every comment and triple-quoted string line, doctest lines and their
    expected output left out."""
    lines: list[tuple[int, str]] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            lines.append((token.start[0], token.string))
        elif token.type == tokenize.STRING and re.match(r"[rbuRBU]*('''|\"\"\")", token.string):
            in_example = False
            for offset, line in enumerate(token.string.splitlines()):
                stripped = line.strip()
                if stripped.startswith((">>>", "...")):
                    in_example = True
                elif not stripped:
                    in_example = False
                if not in_example:
                    lines.append((token.start[0] + offset, line))
    return lines


def timings(source: str) -> list[tuple[int, str]]:
    """The comment and docstring lines of `source` that quote a measured timing (unmarked)."""
    found = []
    for number, line in prose_lines(source):
        if MARKER not in line and TIMING.search(REFERENCE.sub("", line)):
            found.append((number, line.strip()))
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_comment_or_docstring_quotes_a_timing() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line}"
        for path in sources()
        for number, line in timings(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "move these figures to bench/README.md and name its section:\n" + "\n".join(found)


def test_only_a_handful_of_durations_are_marked_as_no_timing() -> None:
    marked = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources()
        for number, line in prose_lines(path.read_text(encoding="utf-8"))
        if MARKER in line
    ]
    assert len(marked) <= MAX_MARKED, marked


def test_every_section_the_code_names_is_a_heading_of_the_bench_readme() -> None:
    headings = {line.lstrip("#").strip() for line in BENCH_README.read_text(encoding="utf-8").splitlines()}
    unknown = []
    for path in sources():
        # a heading may wrap onto the next comment or docstring line: joined again before the lookup
        for quoted in re.findall(r'bench/README\.md, "([^"]*)"', path.read_text(encoding="utf-8")):
            heading = re.sub(r"\s*\n\s*(#\s*)?", " ", quoted)
            if heading not in headings:
                unknown.append(f"{path.relative_to(ROOT)}: {heading!r}")
    assert unknown == []


@pytest.mark.parametrize(
    ("line", "flagged"),
    [
        ("# 0.3-0.5 s of each command", True),
        ("# took 2.9 ms against 1.2 ms", True),
        ("# about 30 ms for a pool of two", True),
        ("# ~3x faster than level 6", True),
        ("# 10-25x slower on a CPU", True),
        ("# 534-555 s of training", True),
        ("# a 16-MP map in 0.1 s", True),
        ("# 2 seconds an epoch", True),
        ("# `--time 30s`, `2m`, `1.5h`", False),
        ("# magic 4s", False),
        ("# a 10-minute budget, the 1-minute load average", False),
        ('# (bench/README.md, "The README\'s compare, 10 s per model")', False),
        ("# a 10 s budget  # timing-ok: the protocol's budget, not a measurement", False),
    ],
)
def test_the_detector_flags_timings_and_nothing_else(line: str, flagged: bool) -> None:
    assert bool(timings(line + "\n")) is flagged


def test_the_detector_reads_docstrings_but_not_their_examples() -> None:
    source = (
        'def f():\n    """Renders in 1.35 s where it took 4.6 s.\n\n    >>> f()\n    took 0.1s\n    '
        '3.0 s\n\n    Text again: 2 ms.\n    """\n    x = "a 5 s string"  # 7 s\n'
    )
    assert [number for number, _ in timings(source)] == [2, 8, 10]  # the example's output left out; code strings too
