"""The README stays a quickstart, the command-line reference matches the command, and the docs
build as a site with every link resolving (`mkdocs build --strict`, what `make docs` runs)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.paths import ROOT

README = ROOT / "README.md"
MAX_README_LINES = 200
GENERATOR = ROOT / "docs" / "gen_cli_reference.py"


def generator() -> types.ModuleType:
    """docs/gen_cli_reference.py as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_cli_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_a_short_quickstart_that_keeps_the_make_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    for command in ("make demo", "make test", "pip install torch==2.13.0", "pip install -e '.[pretrained]'"):
        assert command in text, command


def slug(heading: str) -> str:
    """A heading's anchor as MkDocs and GitHub make it: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def broken_links(page: Path) -> list[str]:
    """The relative links of a Markdown page whose file, or whose #anchor in it, does not exist."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_file():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", file.read_text(encoding="utf-8"), re.M)
            if anchor not in {slug(h) for h in headings}:
                broken.append(target)
    return broken


def test_the_readmes_links_resolve() -> None:
    assert broken_links(README) == []
    assert broken_links(ROOT / "bench" / "README.md") == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Exact reruns\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](a.md#exact-reruns) [no](b.md) [no anchor](a.md#speed) [web](https://x.org/b.md)\n")
    assert broken_links(page) == ["b.md", "a.md#speed"]


def test_the_cli_reference_is_what_the_command_generates_now() -> None:
    gen = generator()
    assert gen.OUT.read_text(encoding="utf-8") == gen.generate(), "run: python docs/gen_cli_reference.py"


def test_the_cli_reference_lists_every_verb_and_option() -> None:
    import typer.main

    from pixlearn.cli import app

    text = generator().generate()
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        assert f"### pixlearn {name}\n" in text
        for param in command.params:
            for flag in param.opts if param.param_type_name == "option" else ():
                assert flag in text, (name, flag)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs comes with the dev extra (make install)")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
