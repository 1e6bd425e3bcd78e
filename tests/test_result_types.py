"""The front door's results are typed (issue 28): what a verb returns names its figures as attributes of
records (`result.metrics.test_accuracy`, `result.history[-1].val_loss`), never as keys of a plain dict, so
no result dataclass has a field annotated as a bare dict, a dict of Any or a list of dicts, but the few
listed below with their reason.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Any, Union, get_args, get_origin, get_type_hints

import pixlearn
from pixlearn.core.storage.classify_records import EpochRow, TrainingMetrics

# (result, field): why it stays plain rows
PLAIN_ROWS = {
    ("CheckResult", "duplicates"): "duplicates.csv's rows by column, as the CSV holds them (paths as found)",
    ("CheckResult", "label_issues"): "label_issues.csv's rows by column, as the CSV holds them",
    ("CheckResult", "image_issues"): "image_issues.csv's rows by column, as the CSV holds them",
}


def untyped(hint: Any) -> bool:
    """Whether an annotation leaves its figures untyped: `dict`, `dict[str, Any]`, a dict of such
    values, or a list, tuple or sequence of dicts (of any kind), alone or in a union."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is dict:
        return True
    if origin is dict:
        return not args or args[1] is Any or untyped(args[1])
    if origin in (Union, types.UnionType):
        return any(untyped(a) for a in args)
    if origin in (list, tuple, Sequence):
        return any(a is dict or get_origin(a) is dict or untyped(a) for a in args if a is not Ellipsis)
    return False


def results() -> dict[str, type]:
    """Every result dataclass the front door exports, by name."""
    return {name: getattr(pixlearn, name) for name in pixlearn.__all__ if name.endswith("Result")}


def untyped_fields() -> set[tuple[str, str]]:
    found = set()
    for name, result in results().items():
        hints = get_type_hints(result)
        found |= {(name, f.name) for f in dataclasses.fields(result) if untyped(hints[f.name])}
    return found


def test_every_result_is_a_dataclass_of_typed_fields() -> None:
    assert len(results()) >= 10 and all(dataclasses.is_dataclass(r) for r in results().values())
    assert untyped_fields() - set(PLAIN_ROWS) == set()
    assert set(PLAIN_ROWS) <= untyped_fields()  # an exception no longer needed is taken off the list


def test_the_rule_sees_a_plain_dict_and_a_list_of_dicts() -> None:
    for plain in (dict, dict[str, Any], list[dict[str, float]], list[dict], dict[str, Any] | None,
                  tuple[dict[str, Any], ...], dict[str, dict[str, Any]]):  # fmt: skip
        assert untyped(plain), plain
    for typed in (TrainingMetrics, list[EpochRow], dict[str, float], tuple[str, ...], TrainingMetrics | None):
        assert not untyped(typed), typed
