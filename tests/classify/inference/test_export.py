"""`pixlearn export RUN --format onnx`: the file gives pixlearn's own probabilities, or is not written."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.inference import onnx as export_module
from pixlearn.classify.inference.forward import normalise
from pixlearn.classify.inference.onnx import TOLERANCE, export
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.core.errors import RunError
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.loading import load_model
from pixlearn.models.registry import create_model, get_entry, list_models
from tests.corpus import cli, error_line, make_class_folders
from tests.paths import ROOT

ONNX_GUIDE = ROOT / "docs" / "guides" / "calibration-export.md"

# One spec per registered classifier, together covering what the file must hold inside: both heads,
# a temperature (one for softmax, one per class for sigmoid), mirror and shift TTA and input normalisation.
# Mirror TTA puts the network in the file twice, which roughly doubles the export's tracing: it is
# covered by the resnets (softmax and sigmoid), so the largest network, efficientnet, goes without it.
VARIANTS: dict[str, dict[str, Any]] = {
    "seed-cnn": {"color": "grayscale", "head": "sigmoid", "temperature": (1.7, 0.6)},
    "resnet-small": {"color": "grayscale", "tta": True, "tta_shift": 1, "temperature": (2.5,)},
    "resnet-medium": {"color": "rgb", "head": "sigmoid", "tta": True},
    "airnet-small": {"color": "grayscale"},
    "efficientnet-lite0": {"color": "rgb", "normalize": (0.5, 0.5), "temperature": (0.8,)},
    "efficientnet-lite1": {"color": "rgb", "normalize": (0.5, 0.5)},
    "efficientnet-lite2": {"color": "grayscale", "normalize": (0.5, 0.5), "head": "sigmoid"},
}
FAST = ("airnet-small",)  # each export takes seconds (torch.export); the others are in the slow tier
HEAD_SCALE = {"seed-cnn": 50.0}  # a fresh seed-cnn (no batch norm) gives logits within 0.01 of each other


def make_run(directory: Path, name: str, classes: tuple[str, ...] = ("dark", "light"), **fields: Any) -> Path:
    """A run directory holding a freshly initialised `name`, as `pixlearn train` would save it, with
    batch-norm statistics measured on random images (so the file must carry them, and the outputs
    depend on the input as a trained network's do) and a head scaled up (probabilities far from uniform)."""
    fields = {**VARIANTS.get(name, {}), **fields}
    color = fields.pop("color", "grayscale")
    entry = get_entry(name, "classify")
    side = max(entry.min_size or 28, 28) + 2
    spec = ModelSpec.classifier(name, classes, (side, side), color, **fields)
    torch.manual_seed(0)
    model = create_model(name, **spec.kwargs)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for module in norms:
        module.momentum = None  # a cumulative mean over the batches below
    with torch.no_grad():
        model.train()
        for _ in range(2 if norms else 0):
            model(normalise(torch.rand(8, *spec.input_shape()), spec.normalize))
        model.eval()
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(HEAD_SCALE.get(name, 4.0))
    weights.save_model(model, spec, directory)
    return directory


EXPORTS: dict[tuple[str, str], bytes] = {}  # (spec, weights digest) -> the ONNX file made from them


@pytest.fixture
def export_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export each (spec, weights) pair once for the module: several tests export the same freshly made
    run (make_run is seeded), and the export's tracing takes seconds. A different network or spec is
    exported anew, so every file checked is the one the real exporter makes for that run."""
    real = export_module.onnx_bytes

    def once(model: torch.nn.Module, spec: ModelSpec) -> bytes:
        digest = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        key = (json.dumps(spec.to_dict(), sort_keys=True, default=str), digest.hexdigest())
        if key not in EXPORTS:
            EXPORTS[key] = real(model, spec)
        return EXPORTS[key]

    monkeypatch.setattr(export_module, "onnx_bytes", once)


def list_test_images(run: Path, folder: Path) -> None:
    """RUN/predictions.csv as the final evaluation writes it: where export finds the run's test images."""
    paths = sorted(p for p in folder.rglob("*.png"))
    rows = [[str(p), p.parent.name, p.parent.name, "0.5", "0.5"] for p in paths]
    rundir.write_csv(run / "predictions.csv", ["path", "true", "predicted", "p_dark", "p_light"], rows)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in list_models("classify")]
)
def test_the_file_gives_pixlearns_probabilities_for_every_classifier(tmp_path: Path, name: str, export_once) -> None:
    run = make_run(tmp_path / "run", name)
    list_test_images(run, make_class_folders(tmp_path / "test", per_class=3, size=24))
    result = export(run)
    assert result.path == run / "model.onnx" and result.images == 6 and "predictions.csv" in result.source
    import onnxruntime

    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    spec = weights.read_spec(run)
    assert json.loads(meta["classes"]) == ["dark", "light"] and meta["head"] == spec.head
    assert json.loads(meta["input_size"]) == list(spec.input_size) and meta["color"] == spec.color
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # the batch dimension is dynamic
    # Any batch size, against the Predictor's float32 probabilities of the same uint8 images.
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (5, *spec.input_shape()), dtype=np.uint8))
    expected = Predictor.from_run(run, PredictConfig(device="cpu", precision="fp32")).probabilities(images)
    assert np.ptp(expected[:, 0]) > 1e-3  # the output depends on the image: agreeing is not trivial
    for part in (slice(0, 1), slice(1, 5), slice(0, 5)):
        got = session.run(None, {"images": images[part].float().div(255).numpy()})[0]
        assert np.abs(got - expected[part]).max() <= TOLERANCE
    sums = session.run(None, {"images": images.float().div(255).numpy()})[0].sum(1)
    assert np.allclose(sums, 1, atol=1e-5) == (spec.head == "softmax")


def test_the_temperature_and_tta_are_inside_the_file(tmp_path: Path) -> None:
    # The file's output is softmax(mean(logits of x and of its mirror) / T), far closer to it than to
    # the same formula without the mirror or without the temperature.
    import onnxruntime

    run = make_run(tmp_path / "run", "airnet-small", tta=True, temperature=(0.5,))
    export(run, images=[make_class_folders(tmp_path / "test", per_class=2, size=24)])
    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 1, 30, 30), dtype=np.float32)
    x[:, :, :, :12] = 1.0  # bright on the left only: the mirror is another image
    got = session.run(None, {"images": x})[0]
    net, _ = load_model(run)
    with torch.no_grad():
        plain, mirrored = net(torch.from_numpy(x)), net(torch.from_numpy(x).flip(3))
    formula = lambda logits, t: torch.softmax(logits / t, 1).numpy()  # noqa: E731
    expected = formula((plain + mirrored) / 2, 0.5)
    for other in (formula(plain, 0.5), formula((plain + mirrored) / 2, 1.0)):
        assert np.abs(got - expected).max() < np.abs(other - expected).max() / 10


def test_a_file_that_differs_is_refused_and_not_left_behind(tmp_path: Path, monkeypatch, export_once) -> None:
    run = make_run(tmp_path / "run", "airnet-small")
    folder = make_class_folders(tmp_path / "test", per_class=2, size=24)
    (run / "model.onnx").write_bytes(b"an older export")
    real = export_module.onnx_probabilities
    monkeypatch.setattr(export_module, "onnx_probabilities", lambda data, x: real(data, x) + 3 * TOLERANCE)
    with pytest.raises(RunError, match=r"model\.onnx: not written: .*differ.* by up to 0\.000[34]"):
        export(run, images=[folder])
    assert not (run / "model.onnx").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_the_command_prints_the_difference_and_refuses_without_test_images(tmp_path: Path, export_once) -> None:
    run = make_run(tmp_path / "run", "airnet-small")
    folder = make_class_folders(tmp_path / "test", per_class=2, size=24)
    result = cli("export", run)
    error_line(result, "predictions.csv", "--images")
    assert not (run / "model.onnx").exists()
    result = cli("export", run, "--format", "onnx", "--images", folder, "--sample", "3")
    assert result.exit_code == 0, result.output
    match = re.search(r"on 3 images .*largest absolute difference ([0-9.e+-]+)", result.output.replace("\n", " "))
    assert match, result.output  # the figure is printed (export refuses to finish above TOLERANCE)
    error_line(cli("export", run, "--format", "tflite"), "tflite")


# ---------------------------------------------------------------------------------- the guide's snippet


def guide_snippet() -> str:
    """The export guide's onnxruntime example: the python block after the heading that names it."""
    text = ONNX_GUIDE.read_text(encoding="utf-8")
    section = text.split("## Run the exported model without pixlearn", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def snippet_probabilities(snippet: str, cwd: Path) -> list[list[float]]:
    # pixlearn made unimportable in that process: the snippet must stand on onnxruntime, Pillow, numpy
    code = (
        "import sys\nsys.modules['pixlearn'] = None\n" + snippet + "\nimport json\nprint(json.dumps(probs.tolist()))\n"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def snippet_images(folder: Path) -> None:
    """The two files the snippet names: a large JPEG (decoded at reduced scale by both) and a
    transparent palette PNG of another shape (composited on white, resized)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal(120, 40, (300, 400, 3)), 0, 255).astype(np.uint8)
    photo[50:150, 100:250] = (240, 200, 30)
    Image.fromarray(photo).save(folder / "a.jpg", quality=90)
    logo = Image.new("P", (50, 20), 0)
    logo.putpalette([0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 6))
    logo.paste(1, (5, 5, 30, 15))
    logo.save(folder / "b.png", transparency=0)


@pytest.mark.parametrize(
    "color,fit",
    [
        ("grayscale", "squash"),
        pytest.param("rgb", "crop", marks=pytest.mark.slow),
        pytest.param("rgb", "pad", marks=pytest.mark.slow),
    ],
)
def test_the_export_guides_snippet_gives_the_predictors_probabilities(tmp_path: Path, color: str, fit: str) -> None:
    run = make_run(tmp_path / "runs" / "city", "airnet-small", color=color, fit=fit)
    snippet_images(tmp_path / "new_images")
    export(run, images=[tmp_path / "new_images"])
    got = np.array(snippet_probabilities(guide_snippet(), tmp_path))
    predictor = Predictor.from_run(run, PredictConfig(device="cpu", precision="fp32"))
    expected = [
        list(predictor.predict_image(tmp_path / "new_images" / n).probabilities.values()) for n in ("a.jpg", "b.png")
    ]
    assert got.shape == (2, 2) and np.abs(got - np.array(expected)).max() <= TOLERANCE


def test_shift_tta_is_inside_the_file(tmp_path: Path) -> None:
    # --tta-shift 2: half the mirror mean, a quarter each for the image moved 2 px up-left and
    # down-right with reflected edges (and their mirrors); closer to that than to the mirror alone.
    import onnxruntime

    run = make_run(tmp_path / "run", "airnet-small", tta=True, tta_shift=2)
    export(run, images=[make_class_folders(tmp_path / "test", per_class=2, size=24)])
    session = onnxruntime.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((3, 1, 30, 30), dtype=np.float32)
    got = session.run(None, {"images": x})[0]
    net, _ = load_model(run)
    t = torch.from_numpy(x)
    padded = torch.nn.functional.pad(t, (2, 2, 2, 2), mode="reflect")
    with torch.no_grad():
        mirror = lambda v: (net(v) + net(v.flip(3))) / 2  # noqa: E731
        views = mirror(t) / 2 + (mirror(padded[..., :30, :30]) + mirror(padded[..., 4:, 4:])) / 4
        expected, mirror_only = torch.softmax(views, 1).numpy(), torch.softmax(mirror(t), 1).numpy()
    assert np.abs(got - expected).max() < np.abs(mirror_only - expected).max() / 10
