"""The layout shows the architecture, and this test keeps it so (ARCHITECTURE.md draws it).

Import rules (every import of the package, including those inside functions and under
TYPE_CHECKING): core <- models <- report <- {classify, field} <- cli. `core` imports nothing else of
pixlearn; `classify` and `field` never import each other; nothing imports `cli` but the entry point;
no import cycles between modules. Inside `classify` the steps are layered too:
config <- data <- inference <- evaluation <- training, with the data check (`audit`) beside training,
using data, inference and evaluation; inside `field`, the codec uses the field's image, coordinates,
metrics, config and fitting loop, and nothing else of `field` imports the codec. A package holds at
most 12 modules, none named like a grab-bag; modules stay under ~500 lines and functions under ~60.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pixlearn"

# layer -> the layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "models": {"core"},
    "report": {"core", "models"},
    "classify": {"core", "models", "report"},
    "field": {"core", "models", "report"},
    "cli": {"core", "models", "report", "classify", "field"},
}
ENTRY_POINTS = {"pixlearn.__main__"}  # `python -m pixlearn` runs the command
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = ["pixlearn", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every pixlearn module `path` imports, anywhere in the file (functions, TYPE_CHECKING blocks)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "pixlearn")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "pixlearn":
                continue
            for alias in node.names:  # `from pixlearn.core import devices` imports the module pixlearn.core.devices
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules() else base)
    return found


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_the_layout_has_one_package_per_job_and_no_loose_modules() -> None:
    loose = sorted(n for n in modules() if layer(n) is None and n not in {"pixlearn", *ENTRY_POINTS})
    assert loose == [], f"modules outside core/models/report/classify/field/cli: {loose}"


def test_the_architecture_table_lists_every_module() -> None:
    text = (PACKAGE.parents[1] / "ARCHITECTURE.md").read_text(encoding="utf-8")
    files = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*")
        if p.suffix in (".py", ".css") and p.name not in ("__init__.py", "__main__.py")
    )
    missing = [name for name in files if f"`{name}`" not in text]
    assert missing == [], f"ARCHITECTURE.md's table does not mention {missing}"


def test_every_package_folder_is_a_regular_package() -> None:
    # setuptools installs only folders with an __init__.py; a namespace package would vanish from a wheel
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []


# Inside classify: step package -> the step packages it may import (besides itself and classify.config)
CLASSIFY_STEPS = {
    "data": set(),
    "inference": {"data"},
    "evaluation": {"data", "inference"},
    "training": {"data", "inference", "evaluation"},
    "audit": {"data", "inference", "evaluation"},
}
# What of `field` the codec may use; nothing else of `field` imports the codec
CODEC_USES = {"image", "coords", "metrics", "fit", "config"}
MAX_PACKAGE_MODULES = 12
GRAB_BAG_NAMES = {"common", "utils", "helpers", "misc", "batches"}


def step(name: str) -> tuple[str, str] | None:
    """(job, step) of a module inside a job's step package: ('classify', 'data'), ('field', 'codec')."""
    parts = name.split(".")
    return (parts[1], parts[2]) if len(parts) > 2 and parts[1] in ("classify", "field") else None


def step_violations(name: str, target: str) -> list[str]:
    own, other = step(name), step(target)
    if own is None or other is None or own[0] != other[0] or own[1] == other[1]:
        return []
    job = own[0]
    if job == "classify":
        if own[1] not in CLASSIFY_STEPS or other[1] == "config":
            return []  # the package's own modules (config, demo) sit outside the steps
        if other[1] not in CLASSIFY_STEPS:
            return [f"{name} imports {target}: a step imports no module of classify but config"]
        if other[1] not in CLASSIFY_STEPS[own[1]]:
            return [f"{name} ({own[1]}) imports {target} ({other[1]})"]
    elif own[1] == "codec" and other[1] not in CODEC_USES:
        return [f"{name} (codec) imports {target}: the codec uses only {sorted(CODEC_USES)} of field"]
    elif other[1] == "codec" and name != "pixlearn.field":
        return [f"{name} imports {target}: nothing else of field imports the codec"]
    return []


def violations(name: str, targets: set[str]) -> list[str]:
    """What breaks the layer rules among the imports `targets` of module `name`."""
    own, broken = layer(name), []
    for target in targets:
        other = layer(target)
        if other == "cli" and own != "cli" and name not in ENTRY_POINTS:
            broken.append(f"{name} imports {target}: nothing imports the CLI")
        elif own is not None and other is not None and other != own and other not in ALLOWED[own]:
            broken.append(f"{name} ({own}) imports {target} ({other})")
        elif own is not None and other is None and target != "pixlearn":
            broken.append(f"{name} imports {target}, which belongs to no layer")
        else:
            broken += step_violations(name, target)
    return broken


def test_imports_follow_the_layer_rules() -> None:
    assert [v for name, path in modules().items() for v in violations(name, imports_of(path, name))] == []


def test_no_import_cycles_between_modules() -> None:
    graph = {name: imports_of(path, name) - {name} for name, path in modules().items()}
    # a package's __init__ importing its own submodules is how packages re-export; it is not a cycle
    graph = {n: {t for t in targets if not (t.startswith(n + ".") and modules()[n].name == "__init__.py")}
             for n, targets in graph.items()}  # fmt: skip
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [nxt]) if nxt in trail else nxt)
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    # The checker itself must see imports inside functions and under TYPE_CHECKING.
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pixlearn.classify import training\n"
    source += "def f():\n    from ...field import fit\n"
    fake = tmp_path / "images.py"
    fake.write_text(source)
    found = imports_of(fake, "pixlearn.core.imaging.images")
    assert {"pixlearn.classify.training", "pixlearn.field.fit"} <= found
    assert len(violations("pixlearn.core.imaging.images", found)) == 2  # and the rules flag both
    assert violations("pixlearn.cli.main", found) == []  # where they are allowed, nothing is flagged


@pytest.mark.parametrize(
    ("name", "target", "broken"),
    [
        ("pixlearn.classify.data.folders", "pixlearn.classify.inference.prediction", True),
        ("pixlearn.classify.inference.prediction", "pixlearn.classify.evaluation.calibration", True),
        ("pixlearn.classify.evaluation.interpretation", "pixlearn.classify.training.loop", True),
        ("pixlearn.classify.training.loop", "pixlearn.classify.audit.inspection", True),
        ("pixlearn.classify.inference.features", "pixlearn.classify.demo", True),
        ("pixlearn.classify.audit.inspection", "pixlearn.classify.evaluation.calibration", False),
        ("pixlearn.classify.training.loop", "pixlearn.classify.config", False),
        ("pixlearn.field.codec.compression", "pixlearn.field.rendering.renderer", True),
        ("pixlearn.field.fit", "pixlearn.field.codec.container", True),
        ("pixlearn.field.codec.gaussians", "pixlearn.field.fit", False),
    ],
)
def test_the_step_rules_catch_a_forbidden_import(name: str, target: str, broken: bool) -> None:
    assert bool(violations(name, {target})) is broken


def package_folders() -> list[Path]:
    return sorted({p.parent for p in PACKAGE.rglob("*.py")})


@pytest.mark.parametrize("folder", package_folders(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_packages_stay_small_and_name_their_modules_for_one_job(folder: Path) -> None:
    own = sorted(p.stem for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(own) <= MAX_PACKAGE_MODULES, f"{folder.name}: {len(own)} modules: {own}"
    assert sorted(set(own) & GRAB_BAG_NAMES) == []


@pytest.mark.parametrize(
    ("package", "verbs"),
    [
        ("pixlearn.classify", ["train", "evaluate", "predict", "export", "check"]),
        ("pixlearn.field", ["fit_image", "render", "compare", "compress", "decompress"]),
        ("pixlearn.cli", ["app", "main"]),  # the Typer app the tests use, and the console script
    ],
)
def test_a_verb_is_never_shadowed_by_a_module_of_its_name(package: str, verbs: list[str]) -> None:
    # Importing a submodule sets it as an attribute of its package: a module named like a verb
    # would turn `from pixlearn.classify import train` into the module once anything imported it.
    import importlib

    for name in modules():
        if name.startswith(package + "."):
            importlib.import_module(name)
    pkg = importlib.import_module(package)
    for verb in verbs:
        if verb in pkg.__all__:
            assert callable(getattr(pkg, verb)) and not isinstance(getattr(pkg, verb), type(pkg)), verb
    steps = {p.name for p in (PACKAGE / package.split(".")[1]).iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert steps.isdisjoint(verbs)


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_and_functions_stay_small(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name}: {len(text.splitlines())} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
        and "# long:" not in text.splitlines()[node.lineno - 1]  # a stated reason on the def line
    ]
    assert long == [], f"{name}: functions over {MAX_FUNCTION_LINES} lines without a stated reason: {long}"
