"""check.html: the findings of `pixlearn check` on one offline page, thumbnails side by side, the worst first.

Built from the check directory's files alone (check.json, duplicates.csv, label_issues.csv,
image_issues.csv, skipped.csv, log.txt) with the report's blocks, so `pixlearn report DIR`
rebuilds it; images are embedded as small thumbnails (a file gone since the check is named instead).

    >>> from pixlearn.report.check_page import is_check_dir
    >>> is_check_dir("runs/demo")
    False
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pixlearn.core import runs
from pixlearn.core.errors import PixlearnError
from pixlearn.report import html as h
from pixlearn.report.common import (
    gather_log,
    guarded,
    limited,
    read_csv_if_present,
    read_object,
    render_log,
    render_problems,
)
from pixlearn.report.html import Section

CHECK_FILE = "check.json"
PAGE = "check.html"
THUMB = 112  # thumbnail side on the page, pixels
MAX_CARDS = 60  # findings shown with thumbnails per section; the tables list more
ISSUE_CARDS = 24  # thumbnails per kind of odd image


def is_check_dir(directory: str | os.PathLike) -> bool:
    """Whether `directory` holds a check (check.json), not a run."""
    return (Path(directory) / CHECK_FILE).is_file()


def write_check_page(directory: str | os.PathLike) -> Path:
    """Write DIR/check.html (atomically) from the check directory's files; return its path."""
    path = Path(directory)
    runs.RunDir(path).check_not_being_written()
    text = render_check_page(path)
    runs.write_text(path / PAGE, text)
    return path / PAGE


def render_check_page(path: Path) -> str:
    problems: list[str] = []
    summary = read_object(path / CHECK_FILE, problems)
    if summary is None:
        raise runs.RunError(f"{path}: not a check directory (no readable {CHECK_FILE}: {'; '.join(problems)})")
    rows = {name: _rows(path / f"{name}.csv", problems) for name in ("duplicates", "label_issues", "image_issues")}
    skipped = _rows(path / "skipped.csv", problems)
    parts = [
        guarded(problems, path / CHECK_FILE, lambda: render_overview(summary)),
        guarded(problems, path / "duplicates.csv", lambda: render_duplicates(rows["duplicates"])),
        guarded(problems, path / "label_issues.csv", lambda: render_label_issues(rows["label_issues"])),
        guarded(problems, path / "image_issues.csv", lambda: render_image_issues(rows["image_issues"], summary)),
        render_skipped(skipped),
    ]
    log = render_log(gather_log(runs.RunDir(path)))
    parts = [p for p in [*parts, render_problems(problems), log] if p is not None]
    return h.page(
        f"pixlearn check: {path.name or path}",
        f"Data check of {summary.get('data', '?')}",
        _headline(summary),
        parts,
        f"Written by pixlearn from the files in {path}.",
    )


def _rows(path: Path, problems: list[str]) -> list[dict[str, str]]:
    return guarded(problems, path, lambda: read_csv_if_present(path) or [], [])


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    dups = summary.get("duplicates", {})
    return {
        "images": h.fmt(sum(summary.get("images", {}).values())),
        "train/test leaks": h.fmt(dups.get("leaks", 0)),
        "exact duplicates": h.fmt(dups.get("exact", 0)),
        "near duplicates": h.fmt(dups.get("near-hash", 0) + dups.get("near-embedding", 0)),
        "likely label errors": h.fmt(summary.get("label_issues", 0)),
        "odd images": h.fmt(sum(summary.get("image_issues", {}).values())),
        "skipped": h.fmt(summary.get("skipped", 0)),
    }


def thumb(path: str, caption: str) -> str:
    """A small embedded thumbnail of an image file with a caption, or a note where it cannot be read."""
    try:
        uri, width, height = h.thumbnail_uri(path, THUMB)
    except PixlearnError as exc:
        return h.note(f"{path}: {exc}")
    except OSError as exc:
        return h.note(f"{path}: cannot be read ({exc})")
    return h.figure(uri, width, height, f"{caption}: {path}", caption, pixelated=max(width, height) < 256)


def render_overview(summary: dict[str, Any]) -> Section:
    balance = summary["balance"]
    splits = list(balance["per_split"])
    rows = [[c, *[balance["per_split"][s][c] for s in splits], balance["total"][c]] for c in summary["classes"]]
    body = [
        h.key_values(
            {
                "data": summary["data"],
                "features": summary["features"],
                "decoded as": summary["size"],
                "colour": summary["color"],
                "seconds per phase": summary.get("seconds", {}),
            },
            "What was checked",
        ),
        h.table(["class", *splits, "all"], rows, caption="Images per class and split"),
        h.paragraph(
            f"The largest class has {balance['ratio']:g} times the images of the smallest."
            + (f" Rare classes (under a fifth of the median): {', '.join(balance['rare'])}." if balance["rare"] else "")
        ),
        h.details("Options", h.key_values(summary["config"])),
    ]
    return Section("overview", "Overview", "\n".join(body))


def render_duplicates(rows: list[dict[str, str]]) -> Section:
    leaks = [r for r in rows if r["same_split"] == "False"]
    lead = h.paragraph(
        f"{len(rows):,} pairs of duplicate images, {len(leaks):,} of them between splits (a test image with a "
        "copy in the training set inflates every test figure). Leaks first, then the most similar; "
        "exact: the same decoded pixels; near-hash: perceptual hashes a few bits apart; near-embedding: "
        "pretrained embeddings almost parallel."
    )
    cards = [
        h.grid([thumb(r["path_a"], r.get("split_a", "a")), thumb(r["path_b"], r.get("split_b", "b"))], "cards")
        + h.paragraph(f"{r['kind']}, similarity {float(r['similarity']):.3f}", "note")
        for r in rows[:MAX_CARDS]
    ]
    shown, more = limited(rows, "pairs", 500)
    table = h.table(
        ["image a", "image b", "kind", "similarity", "same split"],
        [[r["path_a"], r["path_b"], r["kind"], float(r["similarity"]), r["same_split"]] for r in shown],
    )
    return Section("duplicates", "Duplicates and leaks", "\n".join([lead, h.grid(cards), table, more]))


def render_label_issues(rows: list[dict[str, str]]) -> Section:
    lead = h.paragraph(
        f"{len(rows):,} images whose label is probably wrong: scored by heads that never saw them "
        "(k-fold), ranked by cleanlab's confident learning, the least believable label first. "
        "score: the heads' probability of the given label."
    )
    cards = [
        thumb(r["path"], f"#{r['rank']} {r['given']} -> {r['suggested']} ({float(r['score']):.2f})")
        for r in rows[:MAX_CARDS]
    ]
    shown, more = limited(rows, "label issues", 500)
    table = h.table(
        ["rank", "image", "given", "suggested", "score"],
        [[int(r["rank"]), r["path"], r["given"], r["suggested"], float(r["score"])] for r in shown],
    )
    return Section("labels", "Likely label errors", "\n".join([lead, h.grid(cards, "cards"), table, more]))


def render_image_issues(rows: list[dict[str, str]], summary: dict[str, Any]) -> Section:
    counts = summary.get("image_issues", {})
    body = [
        h.paragraph("Odd images, the most extreme first: " + ", ".join(f"{k} {n:,}" for k, n in counts.items()) + ".")
    ]
    for issue in counts:
        of_kind = [r for r in rows if r["issue"] == issue]
        if of_kind:
            body.append(h.heading(f"{issue} ({len(of_kind):,})"))
            cards = [thumb(r["path"], f"{issue} {float(r['value']):.3g}") for r in of_kind[:ISSUE_CARDS]]
            body.append(h.grid(cards, "cards"))
    return Section("images", "Odd images", "\n".join(body))


def render_skipped(rows: list[dict[str, str]]) -> Section | None:
    if not rows:
        return None
    shown, more = limited(rows, "files")
    table = h.table(["file", "reason"], [[r["path"], r["reason"]] for r in shown])
    return Section("skipped", "Files that could not be used", h.note(f"{len(rows):,} files.") + table + more)
