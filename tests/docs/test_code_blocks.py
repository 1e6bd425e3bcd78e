"""Every fenced code block of README.md and docs/**/*.md runs, as a reader would type it.

Each page's blocks run in order in one fresh working directory holding the small files the docs
name (`workspace`): ```python blocks with this interpreter (the repository's venv), ```bash blocks with
bash, `pixlearn` on PATH. A block that cannot run in a test (several machines, an install into the
reader's environment) says so on the line above it, `<!-- not run: REASON -->`; only a handful may.
Every other block must be python or bash: a block in any other language would be text no test reads.

The README's blocks are the fast tier; the guides' and the reference's are marked slow.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_label_csv, make_tree, stripes
from tests.paths import ROOT

PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FAST_PAGES = {"README.md"}  # the quickstart: what every user types first
RUN = {"python", "bash"}
MAX_NOT_RUN = 5
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
BLOCK_TIMEOUT_S = 600
GROUPS = {"city": ("buildings", "street"), "nature": ("forest", "glacier", "mountain", "sea")}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its code and why it is not run (None: it runs)."""

    page: str
    line: int
    language: str
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(text: str, page: str = "page.md") -> list[Block]:
    """The fenced blocks of a Markdown text, indented ones (in lists) included, in order."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, language = opening.groups()
        end = i + 1
        while end < len(lines) and not re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]):
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : end]]
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.fullmatch(above)
        found.append(Block(page, i + 1, language.lower(), "\n".join(body) + "\n", marker.group(1) if marker else None))
        i = end + 1
    return found


def page_blocks(path: Path) -> list[Block]:
    """The blocks of one page of the repository, named by its path from the root."""
    return blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def unreadable(found: list[Block]) -> list[str]:
    """Blocks that neither run nor say why not."""
    return [f"{b.where} ({b.language or 'no language'})" for b in found if b.language not in RUN and b.not_run is None]


def all_blocks() -> list[Block]:
    """The blocks of every page."""
    return [block for page in PAGES for block in page_blocks(page)]


# ---------------------------------------------------------------------------------- rules


def test_every_block_runs_or_says_why_not() -> None:
    assert unreadable(all_blocks()) == [], "make each a python or bash block, or mark it <!-- not run: REASON -->"


def test_only_a_handful_of_blocks_are_not_run_and_each_says_why() -> None:
    skipped = [(b.where, b.not_run) for b in all_blocks() if b.not_run is not None]
    print("\n".join(f"not run: {where}: {why}" for where, why in skipped))
    assert all(why for _, why in skipped), skipped
    assert len(skipped) <= MAX_NOT_RUN, skipped


def test_the_parser_finds_languages_markers_and_indented_fences() -> None:
    text = (
        "# t\n\n```bash\necho a\n```\n\n<!-- not run: two machines -->\n\n```bash\ntorchrun\n```\n\n"
        "- item\n\n  ```python\n  print(1)\n  ```\n\n```\nplain\n```\n\n````text\n```\ninner\n```\n````\n"
    )
    found = blocks(text)
    assert [(b.line, b.language, b.not_run) for b in found] == [
        (3, "bash", None),
        (9, "bash", "two machines"),
        (15, "python", None),
        (19, "", None),
        (23, "text", None),
    ]
    assert found[2].code == "print(1)\n" and found[4].code == "```\ninner\n```\n"
    assert unreadable(found) == ["page.md:19 (no language)", "page.md:23 (text)"]


# ---------------------------------------------------------------------------------- the pages run


def workspace(root: Path) -> Path:
    """The files the docs name: data/{train,test}/GROUP/LEAF/*.png|jpg (the first seed's layout, with a
    few mislabelled and leaked pictures for the data check), labels.csv over data/train,
    new_images/{a.jpg,b.png}, photo.png, and tags/labels.csv (many labels per image) over tags/*.png."""
    make_tree(root / "data", per_leaf={"train": 6, "test": 2}, groups=GROUPS)
    # what the data check is for: nature pictures filed under city, and a test picture copied into train
    rng = np.random.default_rng(1)
    for i in range(3):
        stripes("nature", (40, 40), rng).save(root / f"data/train/city/street/mislabelled_{i}.png")
    shutil.copy(root / "data/test/city/buildings/img_0.png", root / "data/train/city/buildings/copy_of_test.png")
    with open(root / "labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for file in sorted((root / "data" / "train").rglob("img_*")):
            writer.writerow([file.relative_to(root).as_posix(), file.parent.parent.name])
    make_label_csv(root / "tags", n=90)  # many labels per image: tags/labels.csv, path,labels
    new = root / "new_images"
    new.mkdir()
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (300, 400, 3)), 0, 255).astype(np.uint8)
    photo[50:150, 100:250] = (240, 200, 30)
    Image.fromarray(photo).save(new / "a.jpg", quality=90)
    logo = Image.new("P", (50, 20), 0)
    logo.putpalette([0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 6))
    logo.paste(1, (5, 5, 30, 15))
    logo.save(new / "b.png", transparency=0)
    from skimage import data

    Image.fromarray(data.astronaut()).resize((64, 64), Image.Resampling.LANCZOS).save(root / "photo.png")
    return root


def run_block(block: Block, cwd: Path) -> subprocess.CompletedProcess:
    """Run one block in `cwd` as a reader would: python with this interpreter, bash with `pixlearn` on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-c", block.code] if block.language == "python" else ["bash", "-e", "-c", block.code]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


def page_param(path: Path) -> object:
    """The test parameter of one page: slow unless it is a fast page; each page is its own processes,
    so the suite's workers take pages one by one."""
    name = str(path.relative_to(ROOT))
    marks = (pytest.mark.spread,) if name in FAST_PAGES else (pytest.mark.slow, pytest.mark.spread)
    return pytest.param(path, id=name, marks=marks)


@pytest.mark.parametrize("page", [page_param(p) for p in PAGES])
def test_the_blocks_of_the_page_run(page: Path, tmp_path: Path) -> None:
    cwd = workspace(tmp_path)
    for block in page_blocks(page):
        if block.language not in RUN or block.not_run is not None:
            continue
        done = run_block(block, cwd)
        assert done.returncode == 0, (
            f"{block.where} ({block.language}) exited {done.returncode}:\n{block.code}\n"
            f"--- stdout ---\n{done.stdout[-2000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
        )
