"""The check verb: duplicates, train/test leaks, likely label errors and odd images in a folder tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pixlearn.classify.audit.inspection import CheckConfig
from pixlearn.classify.config import RUN
from pixlearn.classify.data.folders import parse_groups
from pixlearn.cli.application import _escape, command, console, group_option, table, with_options


@command("check", epilog="Example: pixlearn check data --out checks/data  (then: pixlearn train data --exclude "
         "checks/data/label_issues.csv)")  # fmt: skip
@with_options(CheckConfig, exclude=("groups",))
def check_cmd(
    data: Path = typer.Argument(
        ...,
        help="Folder with train/ and test/ (or one folder), or a CSV of path,label (path,labels with --multi-label).",
    ),
    out: Path = typer.Option(
        Path("checks/data"), "--out", "-o", help="Check directory to write [default: checks/data].", rich_help_panel=RUN
    ),
    group: list[str] = group_option(),
    overwrite: bool = typer.Option(False, help="Replace a check already in --out.", rich_help_panel=RUN),
    **options: Any,
) -> None:
    """Find duplicate images, test images leaking from the training set, likely label errors and odd
    images; nothing under DATA is moved or deleted."""
    from pixlearn.classify.audit.inspection import check

    options["groups"] = {k: list(v) for k, v in parse_groups(group).items()} if group else {}
    result = check(data, out, CheckConfig(**options), overwrite=overwrite, progress=True)
    s = result.summary
    rows = [
        ["train/test leaks", s.duplicates.leaks],
        ["exact duplicates", s.duplicates.exact],
        ["near-hash duplicates", s.duplicates.near_hash],
        ["near-embedding duplicates", s.duplicates.near_embedding],
        *_label_rows(s.label_issues, s.label_issue_kinds),
        *[[f"{issue} images", n] for issue, n in s.image_issues.items() if n],
        ["files skipped", s.skipped],
    ]
    console.print(table(f"Check of {sum(s.images.values())} images", ["finding", "count"], rows))
    for path, reason in result.skipped[:10]:
        console.print(f"[yellow]skipped[/yellow] {_escape(path)}: {_escape(reason)}", highlight=False)
    console.print(f"\nCheck written to [bold]{_escape(str(result.directory))}[/bold] (open check.html); "
                  f"{s.seconds['total']:.1f} s")  # fmt: skip


def _label_rows(count: int, kinds: dict[str, int]) -> list[list[Any]]:
    """The label errors' row of the table: images, or with many labels per image (image, label) pairs by kind."""
    if not kinds:
        return [["likely label errors", count]]
    return [[f"likely label errors (image, label): {kind}", n] for kind, n in kinds.items()]
