"""Write docs/reference/cli.md from the `pixlearn` command itself: every verb's usage, arguments and
options, as `pixlearn VERB --help` shows them, so the reference cannot disagree with the command.

    python docs/gen_cli_reference.py           # rewrite docs/reference/cli.md
    python docs/gen_cli_reference.py --check   # exit 1 if the committed file differs from the command

`make docs` runs it before building the site; tests/docs/test_cli_reference.py fails when the
committed file is not what it generates now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer.main

from pixlearn.cli import app

OUT = Path(__file__).resolve().parent / "reference" / "cli.md"
HEADER = """# Command line

Every verb of the `pixlearn` command, its arguments and its options, as `pixlearn VERB --help`
prints them. This page is generated from the command (`python docs/gen_cli_reference.py`; `make docs`
runs it), so it always matches the installed version. The guides say when to use each option.
"""


def cell(text: str) -> str:
    """Text for one cell of a Markdown table: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def example(epilog: str) -> str:
    """A verb's epilog, `Example: COMMAND  (remark)`, with the command as code."""
    text = epilog.removeprefix("Example:").strip()
    code, _, remark = text.partition("  (")
    return f"Example: `{cell(code)}`" + (f" ({cell(remark)}" if remark else "")


def option_rows(command: typer.main.TyperCommand, ctx: object) -> tuple[list[str], list[str]]:
    """The argument and option table rows of one verb, options grouped by their --help panel."""
    arguments, options = [], []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        if param.param_type_name == "argument":
            arguments.append(f"| `{cell(param.name.upper())}` | {cell(help_text)} |")
        else:
            panel = getattr(param, "rich_help_panel", None) or "Options"
            options.append((panel, f"| `{cell(names)}` | {cell(panel)} | {cell(help_text)} |"))
    panels = list(dict.fromkeys(panel for panel, _ in options))
    ordered = [row for panel in panels for p, row in options if p == panel]
    return arguments, ordered


def verb_section(name: str, command: typer.main.TyperCommand, group_ctx: object) -> str:
    """One verb's section: its summary, usage, arguments and options, and its example."""
    ctx = type(group_ctx)(command, info_name=name, parent=group_ctx)
    usage = " ".join(["pixlearn", name, *command.collect_usage_pieces(ctx)])
    parts = [f"### pixlearn {name}", "", cell(command.help or ""), "", f"Usage: `{usage}`", ""]
    arguments, options = option_rows(command, ctx)
    if arguments:
        parts += ["| argument | meaning |", "| --- | --- |", *arguments, ""]
    if options:
        parts += ["| option | group | meaning |", "| --- | --- | --- |", *options, ""]
    if command.epilog:
        parts += [example(command.epilog), ""]
    return "\n".join(parts)


def generate() -> str:
    """The whole page, as the command stands now: the verbs grouped as `pixlearn --help` groups them."""
    group = typer.main.get_command(app)
    ctx = group.context_class(group, info_name="pixlearn")
    names = group.list_commands(ctx)
    panels = list(dict.fromkeys(getattr(group.commands[n], "rich_help_panel", None) or "Commands" for n in names))
    sections = []
    for panel in panels:
        verbs = [n for n in names if (getattr(group.commands[n], "rich_help_panel", None) or "Commands") == panel]
        sections += [f"## {panel}\n", *(verb_section(n, group.commands[n], ctx) for n in verbs)]
    return HEADER + "\n" + "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    """Rewrite the page, or with --check say whether it is current (exit 1 when not)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python docs/gen_cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
