"""The hostile corpus's tally: each hostile test module records the hostile inputs it builds and
tries (`tried(kind, n)`); the test run ends with one line giving the total per kind (conftest.py).

Where every command is run against each input the tests also assert: no traceback (exit code 0 or
a one-line `error:` with exit 2), no hang (a watchdog fails the test), nothing already written lost.
"""

from __future__ import annotations

COUNTS: dict[str, int] = {}


def tried(kind: str, n: int = 1) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + n


def summary() -> str:
    total = sum(COUNTS.values())
    parts = ", ".join(f"{kind} {n}" for kind, n in sorted(COUNTS.items()))
    return f"hostile inputs tried: {total:,} ({parts})"
