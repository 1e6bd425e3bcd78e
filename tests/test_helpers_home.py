"""One way to do each thing: every shared helper has one home, and this test keeps it so.

Parsing every module of src/pixlearn with `ast`: each shared name is defined at the top level of its
one module and nowhere else, and no module defines an obvious alias of it; no second learning-rate
schedule (torch's lr_scheduler) and no second Adam step outside core/optim.py; no PSNR formula
(log10) in field/ outside field/metrics.py. Every public verb takes `progress: bool | None = None`,
and inside the package progress is one object (core.progress.Progress), never a callback. The
training loop keeps no state at module level (transfer learning is an argument of the loop).

Each check is a function of the package's folder, so it can be run on an older copy of the tree.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pixlearn"

# name -> its one home (a module path under src/pixlearn)
HOMES = {
    "parse_size": "core/options.py",
    "rank": "core/distributed.py",
    "world_size": "core/distributed.py",
    "unwrap": "core/distributed.py",
    "probabilities": "classify/inference/heads.py",
    "warmup_cosine": "core/schedules.py",
    "Adam": "core/optim.py",  # the fit's Adam step (torch.optim.adam.adam without the Optimizer wrapper)
    "psnr_from_mse": "field/metrics.py",
    "decoded_psnr": "field/metrics.py",
}
# obvious other names for the same thing: defined nowhere (at the top level of a module)
ALIASES = {
    "parse_size": {"parse_wxh", "parse_hxw", "parse_dims", "parse_dimensions", "parse_shape", "_parse_size"},
    "rank": {"rank_and_world", "get_rank", "_rank", "local_rank_and_world"},
    "world_size": {"get_world_size", "_world_size", "world", "num_processes"},
    "unwrap": {"unwrap_model", "_unwrap", "inner_model", "bare_model"},
    "probabilities": {"_probabilities", "to_probabilities", "probs_from_logits", "logits_to_probabilities"},
    "warmup_cosine": {"cosine_schedule", "cosine_lr", "one_cycle", "onecycle", "lr_schedule", "_cosine"},
    "Adam": {"adam_step", "_adam", "AdamStep", "FastAdam"},
    "psnr_from_mse": {"psnr", "_psnr", "compute_psnr", "psnr_db", "mse_to_psnr"},
}
# the public verbs: every function of the packages' lazy export maps
VERB_PACKAGES = ("pixlearn.classify", "pixlearn.field")
CALLBACKS = {"on_progress", "on_image", "on_images", "on_fold", "on_step", "callback"}
MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "Counter", "deque"}
MUTABLE_CALLS |= {"WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}


def sources(root: Path = PACKAGE) -> dict[str, ast.Module]:
    """Every module under `root`, parsed, by its path relative to `root`."""
    return {
        p.relative_to(root).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(root.rglob("*.py"))
    }


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module defines at its top level: functions, classes and assigned names."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def misplaced_helpers(root: Path = PACKAGE) -> list[str]:
    """Each shared name defined somewhere other than its home (or not in its home), and each alias defined."""
    trees = sources(root)
    problems = []
    for name, home in HOMES.items():
        where = sorted(path for path, tree in trees.items() if name in top_level_names(tree))
        if where != [home]:
            problems.append(f"{name}: defined in {where or 'no module'}, its one home is {home}")
        for alias in sorted(ALIASES.get(name, set())):
            for path, tree in trees.items():
                if alias in top_level_names(tree):
                    problems.append(f"{path}: {alias} is another {name} (its one home is {home})")
    return problems


def second_implementations(root: Path = PACKAGE) -> list[str]:
    """A learning-rate scheduler of torch's (a second schedule family), torch's Adam step function outside
    core/optim.py (a second Adam wrapper), or a log10 (a PSNR formula) in field/ outside field/metrics.py."""
    problems = []
    for path, tree in sources(root).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "lr_scheduler":
                problems.append(f"{path}:{node.lineno}: torch's lr_scheduler; the one schedule is core/schedules.py")
            if isinstance(node, ast.ImportFrom) and node.module == "torch.optim.adam" and path != HOMES["Adam"]:
                problems.append(f"{path}:{node.lineno}: torch's Adam step outside {HOMES['Adam']}")
            in_field = path.startswith("field/") and path != HOMES["psnr_from_mse"]
            if isinstance(node, ast.Attribute) and node.attr == "log10" and in_field:
                problems.append(f"{path}:{node.lineno}: a log10 (PSNR) outside {HOMES['psnr_from_mse']}")
    return problems


def progress_parameters(root: Path = PACKAGE) -> list[str]:
    """Inside the package progress is one Progress object: no callback parameters, and a parameter
    named `progress` is a Progress, or the public `bool | None` (checked on the verbs themselves)."""
    problems = []
    for path, tree in sources(root).items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                shown = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if arg.arg in CALLBACKS:
                    problems.append(f"{path}:{node.lineno}: {node.name}({arg.arg}) is a callback; pass the Progress")
                elif arg.arg == "progress" and shown not in ("Progress", "bool | None"):
                    problems.append(f"{path}:{node.lineno}: {node.name}(progress: {shown or 'no annotation'})")
    return problems


def module_state(root: Path = PACKAGE, package: str = "classify/training/") -> list[str]:
    """Module-level mutable containers (dict, list, set, weak maps) in the training loop's package."""
    problems = []
    for path, tree in sources(root).items():
        if not path.startswith(package):
            continue
        for node in tree.body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if value is None:
                continue
            literal = isinstance(value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp)
            called = isinstance(value, ast.Call) and (
                (isinstance(value.func, ast.Name) and value.func.id in MUTABLE_CALLS)
                or (isinstance(value.func, ast.Attribute) and value.func.attr in MUTABLE_CALLS)
            )
            if literal or called:
                problems.append(f"{path}:{node.lineno}: module-level {ast.unparse(value)[:40]}")
    return problems


def verbs() -> dict[str, object]:
    """Every public verb (function) of the classify and field packages, by its exported name."""
    found = {}
    for package in VERB_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found[f"{package}.{name}"] = value
            elif inspect.isclass(value):  # methods of exported classes that take progress (Predictor's)
                for attr, member in vars(value).items():
                    function = getattr(member, "__func__", member)
                    if inspect.isfunction(function) and "progress" in inspect.signature(function).parameters:
                        found[f"{package}.{name}.{attr}"] = function
    return found


def progress_signatures() -> list[str]:
    """Each verb's `progress`: annotated `bool | None`, default None."""
    problems = []
    for name, function in verbs().items():
        parameter = inspect.signature(function).parameters.get("progress")
        if parameter is None:
            problems.append(f"{name}: no progress parameter")
        elif str(parameter.annotation).replace(" ", "") != "bool|None" or parameter.default is not None:
            problems.append(f"{name}: progress: {parameter.annotation} = {parameter.default!r}")
    return problems


# ---------------------------------------------------------------------------------- the tests


def test_every_shared_helper_has_one_home() -> None:
    assert misplaced_helpers() == []


def test_no_second_schedule_adam_step_or_psnr_formula() -> None:
    assert second_implementations() == []


def test_every_public_verb_takes_one_progress_parameter() -> None:
    expected = {"train", "evaluate", "predict", "check", "export", "run_demo"}
    expected |= {"fit_image", "render", "compare", "compress", "decompress"}
    assert {name.rsplit(".", 1)[-1] for name in verbs()} >= expected
    assert progress_signatures() == []


def test_progress_is_one_object_inside_the_package() -> None:
    assert progress_parameters() == []


def test_the_training_loop_keeps_no_module_level_state() -> None:
    assert module_state() == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    # A check that cannot fail is no check: each finds the thing it forbids in a small planted package.
    planted = {
        "core/options.py": "def parse_size(text): ...\n",
        "core/distributed.py": "def rank(): ...\ndef world_size(): ...\ndef unwrap(m): ...\n",
        "classify/inference/heads.py": "def probabilities(x, head): ...\n",
        "core/schedules.py": "def warmup_cosine(s, t, p): ...\n",
        "core/optim.py": "from torch.optim.adam import adam\nclass Adam: ...\n",
        "field/metrics.py": "import math\ndef psnr_from_mse(m): return math.log10(m)\ndef decoded_psnr(a, b): ...\n",
        "cli/app.py": "def parse_size(text): ...\n",
        "classify/training/inputs.py": "def rank_and_world(): ...\n",
        "field/codec/compression.py": "import math, torch\ndef _psnr(d, p): return math.log10(d)\n"
        "s = torch.optim.lr_scheduler.CosineAnnealingLR\n",
        "classify/training/transfer.py": "import weakref\n_FROZEN = weakref.WeakKeyDictionary()\n_X = {}\n",
        "classify/data/decoding.py": "def decode(paths, on_progress=None): ...\n"
        "def load(progress: bool = False): ...\n",
    }
    for path, text in planted.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    helpers = " ".join(misplaced_helpers(tmp_path))
    assert "parse_size: defined in ['cli/app.py', 'core/options.py']" in helpers
    assert "rank_and_world is another rank" in helpers and "_psnr is another psnr_from_mse" in helpers
    seconds = " ".join(second_implementations(tmp_path))
    assert "lr_scheduler" in seconds and "log10 (PSNR) outside" in seconds and "Adam step outside" not in seconds
    assert len(module_state(tmp_path)) == 2
    callbacks = " ".join(progress_parameters(tmp_path))
    assert "decode(on_progress) is a callback" in callbacks and "load(progress: bool)" in callbacks
