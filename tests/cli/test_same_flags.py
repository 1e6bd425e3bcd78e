"""One flag, one meaning across every verb: the test walks the whole command tree, so a verb added later
is held to the same rules. Each `*_problems` checker takes the tree and lists what it finds; the tests
assert the lists are empty."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from tests.corpus import write_png

# the shared run and decoding options: the same default and the same help wherever they appear
SHARED = ("--seed", "--device", "--threads", "--workers", "--precision", "--color", "--fit", "--max-pixels", "--strict")
# options whose default rightly differs by verb: each must say its default in its help
PER_VERB = ("--out", "--size", "--lr", "--epochs", "--steps")
# flags that would mean one concept: at most one of each group in the whole command tree
CONCEPTS = (
    {"--batch", "--batch-size", "--bs", "--batchsize"},
    {"--size", "--resize", "--image-size", "--img-size"},
    {"--color", "--colour", "--mode", "--color-mode"},
    {"--threads", "--num-threads", "--jobs", "--cpu-threads"},
    {"--device", "--gpu", "--cuda"},
    {"--out", "--output", "--output-dir", "--out-dir"},
    {"--steps", "--iterations", "--iters", "--num-steps"},
    {"--max-pixels", "--pixel-limit"},
)
PANELS = {
    "Classify folders": {"check", "train", "evaluate", "predict", "export", "demo"},
    "Fit an image": {"fit", "render", "compare", "table"},
    "Compress": {"compress", "decompress"},
    "Inspect": {"models", "summary", "report"},
}
CHOICES = re.compile(r"\[((?:[\w.:-]+ \| )+[\w.:-]+)\]")
DEFAULT = re.compile(r"\s*\[default: [^\]]*\]")


# Typer builds its commands on its own copy of click: the walk reads their attributes, not their classes.
Command = Option = Any


def command_tree(app: typer.Typer) -> dict[str, Command]:
    """Every command and subcommand of `app`, by its path (`fit`, `group sub`)."""
    found: dict[str, Command] = {}

    def walk(cmd: Command, path: str) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            found[f"{path} {name}".strip()] = sub
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "")
    return found


def options_of(cmd: Command) -> dict[str, Option]:
    """A command's options by their long flag."""
    return {
        next(o for o in p.opts if o.startswith("--")): p
        for p in cmd.params
        if p.param_type_name == "option" and any(o.startswith("--") for o in p.opts)
    }


def choices(option: Option) -> tuple[str, ...] | None:
    if listed := getattr(getattr(option, "type", None), "choices", None):
        return tuple(listed)
    match = CHOICES.search(option.help or "")
    return tuple(match.group(1).split(" | ")) if match else None


def by_flag(tree: dict[str, Command]) -> dict[str, dict[str, Option]]:
    """flag -> {command: its option}."""
    flags: dict[str, dict[str, Option]] = {}
    for name, cmd in tree.items():
        for flag, option in options_of(cmd).items():
            flags.setdefault(flag, {})[name] = option
    return flags


def choice_problems(tree: dict[str, Command]) -> list[str]:
    problems = []
    for flag, where in by_flag(tree).items():
        seen = {name: choices(o) for name, o in where.items() if choices(o) is not None}
        if len(set(seen.values())) > 1:
            problems.append(f"{flag} lists different choices: {seen}")
    return problems


def shared_problems(tree: dict[str, Command]) -> list[str]:
    problems = []
    flags = by_flag(tree)
    for flag in SHARED:
        where = flags.get(flag, {})
        for what, of in (("default", lambda o: o.default), ("help", lambda o: o.help)):
            values = {name: of(o) for name, o in where.items()}
            if len({repr(v) for v in values.values()}) > 1:
                problems.append(f"{flag} has a different {what} by verb: {values}")
    sizes = {name: DEFAULT.sub("", o.help or "") for name, o in flags.get("--size", {}).items()}
    if len(set(sizes.values())) > 1:
        problems.append(f"--size is explained differently by verb: {sizes}")
    return problems


def default_problems(tree: dict[str, Command]) -> list[str]:
    """An option whose default differs by verb (or is listed as differing) says its default in its help."""
    problems = []
    for flag, where in by_flag(tree).items():
        differs = flag in PER_VERB or len({repr(o.default) for o in where.values()}) > 1
        if len(where) < 2 or not differs:
            continue
        problems += [f"{name} {flag}: the help does not say its default" for name, o in where.items()
                     if not o.required and "[default:" not in (o.help or "")]  # fmt: skip
    return problems


def concept_problems(tree: dict[str, Command]) -> list[str]:
    problems = []
    declared = {flag for cmd in tree.values() for p in cmd.params for flag in getattr(p, "opts", [])}
    for group in CONCEPTS:
        if len(group & declared) > 1:
            problems.append(f"one concept, several spellings across the verbs: {sorted(group & declared)}")
        for name, cmd in tree.items():
            params = {p.name for p in cmd.params for flag in getattr(p, "opts", []) if flag in group}
            if len(params) > 1:
                problems.append(f"{name}: two options for one concept: {sorted(params)}")
    return problems


def panel_problems(tree: dict[str, Command]) -> list[str]:
    panel_of = {verb: panel for panel, verbs in PANELS.items() for verb in verbs}
    problems = []
    for name, cmd in tree.items():
        panel = getattr(cmd, "rich_help_panel", None)
        panel = panel if isinstance(panel, str) else None  # unset: Typer's placeholder
        if panel is None:
            problems.append(f"{name}: in no help panel")
        elif name in panel_of and panel != panel_of[name]:
            problems.append(f"{name}: in panel {panel!r}, not {panel_of[name]!r}")
    return problems


@pytest.fixture(scope="module")
def tree() -> dict[str, Command]:
    from pixlearn.cli import app

    return command_tree(app)


@pytest.mark.parametrize(
    "checker", [choice_problems, shared_problems, default_problems, concept_problems, panel_problems]
)
def test_every_verb_speaks_one_language(tree, checker) -> None:
    problems = checker(tree)
    assert not problems, "\n".join(problems)


def test_the_walk_sees_every_verb(tree) -> None:
    assert set().union(*PANELS.values()) <= set(tree)
    assert {"--seed", "--device", "--threads", "--color", "--size", "--batch-size"} <= set(by_flag(tree))


def test_a_deprecated_spelling_is_not_declared_beside_its_replacement(tree) -> None:
    from pixlearn.cli import DEPRECATED

    for (verb, old), new in DEPRECATED.items():
        flags = options_of(tree[verb])
        assert old not in flags and new in flags, (verb, old, new)


def test_the_old_spellings_are_rewritten_with_one_note() -> None:
    from pixlearn.cli import rewrite_deprecated

    assert rewrite_deprecated(["fit", "a.png", "--batch", "64"]) == (
        ["fit", "a.png", "--batch-size", "64"],
        ["pixlearn fit: --batch is deprecated and goes in the next release; write --batch-size"],
    )
    assert rewrite_deprecated(["fit", "a.png", "--batch=full"])[0] == ["fit", "a.png", "--batch-size=full"]
    assert rewrite_deprecated(["compress", "a.png", "--steps", "5"])[0] == ["compress", "a.png", "--tune-steps", "5"]
    # only in the verb that had it, and never an argument after `--`
    assert rewrite_deprecated(["fit", "a.png", "--steps", "5"]) == (["fit", "a.png", "--steps", "5"], [])
    assert rewrite_deprecated(["train", "d", "--batch", "4"]) == (["train", "d", "--batch", "4"], [])
    assert rewrite_deprecated(["fit", "--", "--batch"]) == (["fit", "--", "--batch"], [])


def test_fit_batch_still_works_and_equals_batch_size(tmp_path: Path, capsys) -> None:
    from pixlearn.cli import main

    photo = write_png(tmp_path / "p.png", 90, size=12)
    saved = {}
    for spelling in ("--batch", "--batch-size"):
        out = tmp_path / spelling.strip("-")
        with pytest.raises(SystemExit) as exit_:
            main(["fit", str(photo), spelling, "64", "--steps", "1", "--device", "cpu", "--out", str(out)])
        assert exit_.value.code in (0, None)
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if "deprecated" in line]
        assert len(notes) == (1 if spelling == "--batch" else 0), err
        saved[spelling] = json.loads((out / "config.json").read_text())
    assert saved["--batch"]["batch"] == 64
    assert saved["--batch"] == saved["--batch-size"]


def test_the_checkers_see_a_verb_that_breaks_the_rules() -> None:
    """Two flags for one concept in one verb, and a loose verb, are found (the real tree has neither)."""
    bad = typer.Typer()

    @bad.command("fit")
    def fit(batch: int = typer.Option(1, "--batch"), batch_size: int = typer.Option(1, "--batch-size")) -> None:
        """A verb with two spellings of one option."""

    @bad.command("other")
    def other() -> None:
        """A second verb, so that the app is a group."""

    problems = concept_problems(command_tree(bad))
    assert "fit: two options for one concept: ['batch', 'batch_size']" in problems
    assert panel_problems(command_tree(bad)) == ["fit: in no help panel", "other: in no help panel"]
