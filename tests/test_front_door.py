"""`import pixlearn` is the front door: the verbs, their configs and results, lazily, with one shape."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixlearn
from tests.conftest import make_tree

AGREED = {
    "train", "evaluate", "predict", "Predictor", "check", "export", "fit_image", "render", "compare",
    "compress", "decompress", "load_model", "list_models",
    "TrainConfig", "EvaluateConfig", "PredictConfig", "CheckConfig", "ExportConfig", "FitConfig", "RenderConfig",
    "CompareConfig", "CompressConfig",
    "TrainResult", "EvaluateResult", "PredictResult", "CheckResult", "ExportResult", "FitResult", "RenderResult",
    "CompareResult", "CompressResult", "DecompressResult",
}  # fmt: skip
# verb -> (its sources, its config class name or None, its result class name)
VERBS = {
    "train": (("data",), "TrainConfig", "TrainResult"),
    "evaluate": (("run", "data"), "EvaluateConfig", "EvaluateResult"),
    "predict": (("run", "images"), "PredictConfig", "PredictResult"),
    "check": (("data",), "CheckConfig", "CheckResult"),
    "export": (("run",), "ExportConfig", "ExportResult"),
    "fit_image": (("source",), "FitConfig", "FitResult"),
    "render": (("run",), "RenderConfig", "RenderResult"),
    "compare": (("source",), "CompareConfig", "CompareResult"),
    "compress": (("source",), "CompressConfig", "CompressResult"),
    "decompress": (("source",), None, "DecompressResult"),
}


def test_the_front_door_exports_exactly_the_agreed_names() -> None:
    assert set(pixlearn.__all__) == AGREED and len(pixlearn.__all__) == len(AGREED)
    assert all(getattr(pixlearn, name) is not None for name in AGREED)


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_api_names(text: str) -> set[str]:
    """The names the README's "Python API at a glance" shows: each table cell's name and each `Name` (...) aside."""
    section = text.split("## The Python API at a glance", 1)[1].split("\n## ", 1)[0]
    cells = {
        m.group(1) for line in section.splitlines() if line.startswith("| `") for m in re.finditer(r"`(\w+)", line)
    }
    return cells | set(re.findall(r"`(\w+)` \(", section))


def test_the_readme_shows_exactly_the_front_door() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_api_names(text) == set(pixlearn.__all__)
    blocks = "\n".join(re.findall(r"```python\n(.*?)```", text, flags=re.S))
    used = set(re.findall(r"\bpixlearn\.(\w+)", blocks))
    assert used and used <= set(pixlearn.__all__), used - set(pixlearn.__all__)


def test_the_readme_check_sees_a_missing_or_extra_name() -> None:
    text = README.read_text(encoding="utf-8")
    assert readme_api_names(text.replace("| `check(data)` | `CheckConfig` | `CheckResult` |\n", "")) != set(
        pixlearn.__all__
    )
    assert "Unknown" in readme_api_names(text.replace("`load_model` (", "`Unknown` (`load_model` ("))


GUIDE = README.parent / "docs" / "guides" / "python.md"


def test_the_names_beyond_the_quickstart_load_alike_and_the_python_guide_shows_them() -> None:
    # the quickstart lists exactly __all__; lr_find and its result load the same way, documented in the guide
    assert set(pixlearn.GUIDED) == {"lr_find", "LrFindResult"} and not set(pixlearn.GUIDED) & set(pixlearn.__all__)
    guide = GUIDE.read_text(encoding="utf-8")
    for name in pixlearn.GUIDED:
        assert f"`{name}" in guide or f"`pixlearn.{name}(" in guide, name
        assert name in dir(pixlearn) and getattr(pixlearn, name) is not None
    assert shape_errors("lr_find", pixlearn.lr_find, ("data",), pixlearn.TrainConfig) == []
    assert dataclasses.is_dataclass(pixlearn.LrFindResult) and pixlearn.LrFindResult.__dataclass_params__.frozen
    with pytest.raises(AttributeError):
        pixlearn.lr_finder  # noqa: B018 - an unknown name is still refused


def test_importing_pixlearn_imports_no_torch_and_help_works() -> None:
    code = "import pixlearn, sys; assert 'torch' not in sys.modules; help(pixlearn.train)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train(" in done.stdout


def shape_errors(verb: str, fn: object, sources: tuple[str, ...], config: type | None) -> list[str]:
    """How `fn`'s signature departs from `verb(*sources, out=None, config=XConfig(), progress=None)`."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    want = [*sources, "out", *(["config"] if config else []), "progress"]
    errors = [] if [p.name for p in positional] == want else [f"{verb}: parameters {[p.name for p in positional]}"]
    named = {p.name: p for p in params}
    if "out" in named and named["out"].default is not None:
        errors.append(f"{verb}: out defaults to {named['out'].default!r}, not None")
    if config is not None and not isinstance(named.get("config", inspect.Parameter).default, config):
        errors.append(f"{verb}: config's default is not a {config.__name__}")
    progress = named.get("progress")
    if progress is None or progress.default is not None or str(progress.annotation) != "bool | None":
        errors.append(f"{verb}: progress is not `bool | None = None`")
    return errors


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_one_shape_and_returns_a_frozen_dataclass(verb: str) -> None:
    sources, config_name, result_name = VERBS[verb]
    config = getattr(pixlearn, config_name) if config_name else None
    assert shape_errors(verb, getattr(pixlearn, verb), sources, config) == []
    result = getattr(pixlearn, result_name)
    assert dataclasses.is_dataclass(result), result_name
    assert result.__dataclass_params__.frozen, f"{result_name} is not frozen"


def test_the_shape_checker_sees_the_old_loose_signatures() -> None:
    def old_render(run, scale=None, size=None, out=None, device="cpu", progress=None):  # noqa: ANN001, ANN202
        """Render as it was before the front door."""

    def old_train(data, out, config=None, overwrite=False, resume=False, progress=None):  # noqa: ANN001, ANN202
        """Train as it was before the front door."""

    assert shape_errors("render", old_render, ("run",), pixlearn.RenderConfig)
    assert shape_errors("train", old_train, ("data",), pixlearn.TrainConfig)


def test_a_tiny_workflow_through_the_front_door(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data")
    config = pixlearn.TrainConfig(model="resnet-small", size=32, color="grayscale", epochs=1, batch_size=8)
    trained = pixlearn.train(data, tmp_path / "run", config)
    assert trained.run.path == tmp_path / "run"
    evaluated = pixlearn.evaluate(tmp_path / "run", data / "test", config=pixlearn.EvaluateConfig(device="cpu"))
    assert evaluated.metrics.images == len([f for f in (data / "test").rglob("*") if f.is_file()])
    predicted = pixlearn.predict(tmp_path / "run", data / "test", tmp_path / "p.csv", pixlearn.PredictConfig())
    with open(predicted.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    predictor = pixlearn.Predictor.from_run(tmp_path / "run", pixlearn.PredictConfig(device="cpu"))
    paths = [row["path"] for row in rows]
    assert predictor.predict(paths) == [row["label"] for row in rows]
    proba = predictor.predict_proba(paths)
    assert proba.shape == (len(rows), len(predictor.classes_))
    columns = [[float(row[f"p_{c}"]) for c in predictor.classes_] for row in rows]
    assert np.allclose(proba, columns, atol=1e-5)
    picture = Image.open(paths[0])
    assert predictor.predict([picture, np.asarray(picture)]) == [rows[0]["label"]] * 2


def test_fit_render_and_compress_through_the_front_door(tmp_path: Path) -> None:
    image = (np.indices((32, 32)).sum(0) * 4).astype(np.uint8)
    fitted = pixlearn.fit_image(image, tmp_path / "fit", pixlearn.FitConfig(model="seed-small", steps=20))
    assert fitted.run.path == tmp_path / "fit"
    rendered = pixlearn.render(tmp_path / "fit", tmp_path / "big.png", pixlearn.RenderConfig(scale=2))
    assert rendered.pixels.shape == (64, 64, 1) and rendered.out.exists()
    Image.fromarray(image).save(tmp_path / "grey.png")
    packed = pixlearn.compress(tmp_path / "grey.png", config=pixlearn.CompressConfig(bpp=2, steps=2))
    assert packed.out == tmp_path / "grey.pxl" and packed.bytes == packed.out.stat().st_size
    unpacked = pixlearn.decompress(packed.out)
    assert unpacked.out is None and (unpacked.width, unpacked.height) == (32, 32)
