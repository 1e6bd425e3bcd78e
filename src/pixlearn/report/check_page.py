"""check.html: the findings of `pixlearn check` on one offline page, thumbnails side by side, the worst first.

Built from the check directory's files alone (check.json, duplicates.csv, label_issues.csv,
image_issues.csv, skipped.csv, log.txt) with the report's blocks, so `pixlearn report DIR`
rebuilds it; images are embedded as small thumbnails (a file gone since the check is named instead).
Only files under the folder the check recorded (check.json's `data`, or the folder of a label CSV it
read) are embedded, as every report page embeds (`html.embed_refusal`): a CSV naming a file outside it,
or a URL, shows the name as text.

    >>> from pixlearn.report.check_page import is_check_dir
    >>> is_check_dir("runs/demo")
    False
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pixlearn.core.errors import ImageError, PixlearnError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import CheckSummary
from pixlearn.report import html as h
from pixlearn.report.html import Section
from pixlearn.report.parts import (
    gather_log,
    guarded,
    limited,
    read_csv_if_present,
    read_record,
    render_log,
    render_problems,
)

CHECK_FILE = CheckSummary.FILE
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
    rundir.RunDir(path).check_not_being_written()
    text = render_check_page(path)
    rundir.write_text(path / PAGE, text)
    return path / PAGE


def render_check_page(path: Path) -> str:
    problems: list[str] = []
    summary = read_record(CheckSummary, path / CHECK_FILE, problems)
    if summary is None:
        raise rundir.RunError(f"{path}: not a check directory (no readable {CHECK_FILE}: {'; '.join(problems)})")
    rows = {name: _rows(path / f"{name}.csv", problems) for name in ("duplicates", "label_issues", "image_issues")}
    skipped = _rows(path / "skipped.csv", problems)
    parts = [
        guarded(problems, path / CHECK_FILE, lambda: render_overview(summary)),
        guarded(problems, path / "duplicates.csv", lambda: render_duplicates(rows["duplicates"], summary.data)),
        guarded(problems, path / "label_issues.csv", lambda: render_label_issues(rows["label_issues"], summary)),
        guarded(problems, path / "image_issues.csv", lambda: render_image_issues(rows["image_issues"], summary)),
        render_skipped(skipped),
    ]
    log = render_log(gather_log(rundir.RunDir(path)))
    parts = [p for p in [*parts, render_problems(problems), log] if p is not None]
    return h.page(
        f"pixlearn check: {path.name or path}",
        f"Data check of {summary.data}",
        _headline(summary),
        parts,
        f"Written by pixlearn from the files in {path}.",
    )


def _rows(path: Path, problems: list[str]) -> list[dict[str, str]]:
    return guarded(problems, path, lambda: read_csv_if_present(path) or [], [])


def _headline(summary: CheckSummary) -> dict[str, Any]:
    dups = summary.duplicates
    errors = "likely label errors (image, label)" if multi_label(summary) else "likely label errors"
    return {
        "images": h.fmt(sum(summary.images.values())),
        "train/test leaks": h.fmt(dups.leaks),
        "exact duplicates": h.fmt(dups.exact),
        "near duplicates": h.fmt(dups.near_hash + dups.near_embedding),
        errors: h.fmt(summary.label_issues),
        "odd images": h.fmt(sum(summary.image_issues.values())),
        "skipped": h.fmt(summary.skipped),
    }


def multi_label(summary: CheckSummary) -> bool:
    """Whether the check read many labels per image (label_issues.csv then lists (image, label) pairs): only
    such a check counts its issues by kind."""
    return bool(summary.label_issue_kinds)


def embed_root(data: str) -> str:
    """The folder whose files the page may embed: the checked folder, or a label CSV's (its paths' base).

    >>> embed_root("data/labels.csv"), embed_root("data")
    ('data', 'data')
    """
    return str(Path(data).parent) if Path(data).suffix.lower() == ".csv" else data


def thumb(path: str, caption: str, root: str) -> str:
    """A small embedded thumbnail of an image file under the checked folder (or label CSV) `root` with a
    caption, or a note where it cannot be read or may not be embedded (`html.embed_refusal`)."""
    try:
        uri, width, height = h.thumbnail_uri(path, embed_root(root), THUMB)
    except ImageError as exc:
        return h.note(f"{path}: {exc.reason}")
    except PixlearnError as exc:
        return h.note(f"{path}: {exc}")
    except OSError as exc:
        return h.note(f"{path}: cannot be read ({exc})")
    return h.figure(uri, width, height, f"{caption}: {path}", caption, pixelated=max(width, height) < 256)


def render_overview(summary: CheckSummary) -> Section:
    balance = summary.balance
    splits = list(balance.per_split)
    rows = [[c, *[balance.per_split[s][c] for s in splits], balance.total[c]] for c in summary.classes]
    noun = "label" if multi_label(summary) else "class"
    rare = f" Rare {noun}s (under a fifth of the median): {', '.join(balance.rare)}." if balance.rare else ""
    body = [
        h.key_values(
            {
                "data": summary.data,
                "features": summary.features,
                "decoded as": list(summary.size),
                "colour": summary.color,
                "seconds per phase": summary.seconds,
            },
            "What was checked",
        ),
        h.table([noun, *splits, "all"], rows, caption=f"Images per {noun} and split"),
        h.paragraph(f"The largest {noun} has {balance.ratio:g} times the images of the smallest." + rare),
        h.details("Options", h.key_values(summary.config)),
    ]
    return Section("overview", "Overview", "\n".join(body))


def render_duplicates(rows: list[dict[str, str]], root: str) -> Section:
    leaks = [r for r in rows if r["same_split"] == "False"]
    lead = h.paragraph(
        f"{len(rows):,} pairs of duplicate images, {len(leaks):,} of them between splits (a test image with a "
        "copy in the training set inflates every test figure). Leaks first, then the most similar; "
        "exact: the same decoded pixels; near-hash: perceptual hashes a few bits apart; near-embedding: "
        "pretrained embeddings almost parallel."
    )
    cards = [
        h.grid([thumb(r["path_a"], r["split_a"], root), thumb(r["path_b"], r["split_b"], root)], "cards")
        + h.paragraph(f"{r['kind']}, similarity {float(r['similarity']):.3f}", "note")
        for r in rows[:MAX_CARDS]
    ]
    shown, more = limited(rows, "pairs", 500)
    table = h.table(
        ["image a", "image b", "kind", "similarity", "same split"],
        [[r["path_a"], r["path_b"], r["kind"], float(r["similarity"]), r["same_split"]] for r in shown],
    )
    return Section("duplicates", "Duplicates and leaks", "\n".join([lead, h.grid(cards), table, more]))


def render_label_issues(rows: list[dict[str, str]], summary: CheckSummary) -> Section:
    root = summary.data
    if multi_label(summary):
        return render_label_set_issues(rows, summary)
    lead = h.paragraph(
        f"{len(rows):,} images whose label is probably wrong: scored by heads that never saw them "
        "(k-fold), ranked by cleanlab's confident learning, the least believable label first. "
        "score: the heads' probability of the given label."
    )
    cards = [
        thumb(r["path"], f"#{r['rank']} {r['given']} -> {r['suggested']} ({float(r['score']):.2f})", root)
        for r in rows[:MAX_CARDS]
    ]
    shown, more = limited(rows, "label issues", 500)
    table = h.table(
        ["rank", "image", "given", "suggested", "score"],
        [[int(r["rank"]), r["path"], r["given"], r["suggested"], float(r["score"])] for r in shown],
    )
    return Section("labels", "Likely label errors", "\n".join([lead, h.grid(cards, "cards"), table, more]))


def render_label_set_issues(rows: list[dict[str, str]], summary: CheckSummary) -> Section:
    """label_issues.csv of a check with many labels per image: one row per doubtful (image, label) pair."""
    missing = sum(r["kind"] == "missing" for r in rows)
    lead = h.paragraph(
        f"{len(rows):,} (image, label) pairs whose given yes-or-no is probably wrong ({missing:,} "
        f"missing: the label is absent but likely present; {len(rows) - missing:,} wrong: given but likely "
        "absent): scored by a head with a sigmoid per label that never saw the image (k-fold), ranked by "
        "cleanlab's confident learning per label, the least believable first. probability: the heads' "
        "probability that the image has the label."
    )
    cards = [
        thumb(r["path"], f"#{r['rank']} {r['label']} {r['kind']} ({float(r['probability']):.2f})", summary.data)
        for r in rows[:MAX_CARDS]
    ]
    shown, more = limited(rows, "label issues", 500)
    table = h.table(
        ["rank", "image", "label", "kind", "probability"],
        [[int(r["rank"]), r["path"], r["label"], r["kind"], float(r["probability"])] for r in shown],
    )
    return Section("labels", "Likely label errors", "\n".join([lead, h.grid(cards, "cards"), table, more]))


def render_image_issues(rows: list[dict[str, str]], summary: CheckSummary) -> Section:
    counts = summary.image_issues
    body = [
        h.paragraph("Odd images, the most extreme first: " + ", ".join(f"{k} {n:,}" for k, n in counts.items()) + ".")
    ]
    for issue in counts:
        of_kind = [r for r in rows if r["issue"] == issue]
        if of_kind:
            body.append(h.heading(f"{issue} ({len(of_kind):,})"))
            cards = [thumb(r["path"], f"{issue} {float(r['value']):.3g}", summary.data) for r in of_kind[:ISSUE_CARDS]]
            body.append(h.grid(cards, "cards"))
    return Section("images", "Odd images", "\n".join(body))


def render_skipped(rows: list[dict[str, str]]) -> Section | None:
    if not rows:
        return None
    shown, more = limited(rows, "files")
    table = h.table(["file", "reason"], [[r["path"], r["reason"]] for r in shown])
    return Section("skipped", "Files that could not be used", h.note(f"{len(rows):,} files.") + table + more)
