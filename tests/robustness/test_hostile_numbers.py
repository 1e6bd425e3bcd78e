"""Hostile numbers, round two: weights and model specs that are not finite or are extreme, JSON that
only Python reads, crafted .pxl headers, option extremes, and report pages that embed what a CSV names.

Each loader of weights refuses a tensor holding NaN or infinity, naming the file and the tensor
(`core.storage.weights.check_finite`); model.json's numbers are refused outside their ranges, naming
the key (`core.storage.spec.number_problem`); every JSON file pixlearn writes parses with a strict
parser (`rundir.strict_json`); a report embeds only files under the folder its run or check recorded
and fetches nothing (`report.html.embed_refusal`); option extremes are one `error:` line. The crafted
.pxl files are in tests/field/codec/test_crafted_headers.py.
"""

from __future__ import annotations

import ast
import http.server
import json
import math
import shutil
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pixlearn.classify.inference.prediction import Predictor
from pixlearn.core.errors import RunError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import CheckSummary, EvaluationRecord
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from pixlearn.report.page import write_report
from tests.corpus import cli, error_line, fake_run, make_class_folders
from tests.hostile import tried
from tests.paths import FIXTURES, ROOT

NOT_FINITE = [math.nan, math.inf, -math.inf]
TINY = ["--model", "airnet-small", "--size", "16", "--batch-size", "4", "--device", "cpu", "--color", "grayscale"]
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once")


def poison(path: Path, value: float) -> str:
    """Set one element of the first floating-point tensor of a safetensors file to `value`, keeping its
    metadata (a checkpoint's state); return the tensor's name."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    name = max((k for k, t in tensors.items() if t.is_floating_point()), key=lambda k: tensors[k].numel())
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[1] = value
    save_file(tensors, str(path), metadata=metadata)
    return name


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/dark and root/light, six 16x16 grey images each."""
    return make_class_folders(tmp_path_factory.mktemp("numbers") / "images", per_class=6)


# ---------------------------------------------------------------------------------- weights


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
def test_weights_holding_nan_or_infinity_are_refused_by_every_loader(value: float, images: Path, tmp_path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    name = poison(run / "model.safetensors", value)
    commands = [
        ("predict", run, images, "--csv", tmp_path / "p.csv", "--device", "cpu"),
        ("evaluate", run, images, "--out", tmp_path / "ev", "--device", "cpu"),
        ("export", run, "--images", images),
        ("train", images, "--weights", run / "model.safetensors", "--model", "resnet-small", "--size", "32",
         "--color", "grayscale", "--epochs", "1", "--device", "cpu", "--out", tmp_path / "t"),
    ]  # fmt: skip
    for args in commands:
        error_line(cli(*args), "model.safetensors", repr(name), "NaN or infinite")
    with pytest.raises(RunError, match="NaN or infinite"):
        Predictor.from_run(run)
    assert not (tmp_path / "p.csv").exists() and not (run / "model.onnx").exists()
    tried("weights holding NaN or infinity, per loader", len(commands) + 1)


def test_a_checkpoint_holding_nan_is_refused_when_resuming(images: Path, tmp_path: Path, figures_off) -> None:
    out = tmp_path / "run"
    with figures_off():  # the checkpoint is the subject, not the finished run's figures
        assert cli("train", images, "--out", out, "--epochs", "1", *TINY).exit_code == 0
    name = poison(out / "checkpoint.safetensors", math.nan)
    result = cli("train", images, "--out", out, "--resume", "--epochs", "2", *TINY)
    error_line(result, "checkpoint.safetensors", repr(name), "NaN or infinite")
    assert len(rundir.read_json(out / "checkpoint.json")["history"]) == 1  # nothing trained on it
    tried("weights holding NaN or infinity, per loader")


# ---------------------------------------------------------------------------------- model.json


SPEC_NUMBERS: dict[str, tuple[str, object]] = {
    "temperature tiny": ("temperature", [1e-300]),
    "temperature huge": ("temperature", [1e300]),
    "temperature zero": ("temperature", [0]),
    "temperature negative": ("temperature", [-1.0]),
    "temperature nan": ("temperature", [math.nan]),
    "temperature inf": ("temperature", [math.inf]),
    "mean huge": ("normalize", [1e300, 0.25]),
    "mean nan": ("normalize", [math.nan, 0.25]),
    "std zero": ("normalize", [0.5, 0]),
    "std tiny": ("normalize", [0.5, 1e-300]),
    "std negative": ("normalize", [0.5, -0.25]),
    "std inf": ("normalize", [0.5, math.inf]),
    "threshold nan": ("threshold", {"class": "light", "value": math.nan, "rule": "by hand"}),
    "threshold above one": ("threshold", {"class": "light", "value": 2.0, "rule": "by hand"}),
    "abstain nan": ("abstain_below", math.nan),
    "abstain negative": ("abstain_below", -0.5),
}


@pytest.mark.parametrize("case", list(SPEC_NUMBERS))
def test_model_json_numbers_that_would_make_probabilities_nan_are_refused_naming_the_key(
    case: str, images: Path, tmp_path: Path
) -> None:
    key, value = SPEC_NUMBERS[case]
    run = fake_run(tmp_path / "run", ["dark", "light"])
    spec = json.loads((run / "model.json").read_text())
    spec[key] = value
    (run / "model.json").write_text(json.dumps(spec))  # Python's json writes NaN and Infinity tokens
    error_line(cli("predict", run, images, "--csv", tmp_path / "p.csv", "--device", "cpu"), "model.json", key)
    assert not (tmp_path / "p.csv").exists()
    tried("model.json numbers that are not finite or extreme")


def test_the_numbers_pixlearn_fits_load_again(images: Path, tmp_path: Path, figures_off) -> None:
    """The ranges hold every value training sets: the temperature search's bounds and ImageNet's normalisation."""
    from pixlearn.classify.evaluation.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE

    run = fake_run(tmp_path / "run", ["dark", "light"])
    spec = json.loads((run / "model.json").read_text())
    for temperature in (MIN_TEMPERATURE, MAX_TEMPERATURE):
        spec |= {"temperature": [temperature], "normalize": [0.449, 0.226], "abstain_below": 0.0}
        (run / "model.json").write_text(json.dumps(spec))
        with figures_off():  # loading the spec is the subject, not the predictions' gallery
            result = cli("predict", run, images, "--csv", tmp_path / f"p{temperature}.csv", "--device", "cpu")
        assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------- strict JSON


def _json_calls_without_allow_nan_false(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        is_dump = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("dump", "dumps")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "json"
        )
        strict = any(
            k.arg == "allow_nan" and isinstance(k.value, ast.Constant) and k.value.value is False
            for k in getattr(node, "keywords", [])
        )
        if is_dump and not strict:
            lines.append(node.lineno)
    return lines


def test_every_json_dump_in_the_package_refuses_nan() -> None:
    """JSON has no NaN: every json.dump(s) in src passes allow_nan=False (the writer, rundir.strict_json,
    turns a NaN into null first), so no file pixlearn writes holds a token only Python reads."""
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "src" / "pixlearn").rglob("*.py"))
        if (lines := _json_calls_without_allow_nan_false(path))
    }
    assert offenders == {}, offenders


def strict_loads(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_evaluation_json_with_empty_reliability_bins_is_strict_json_and_reads_back_as_nan(
    images: Path, tmp_path: Path
) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    assert cli("evaluate", run, images, "--out", tmp_path / "ev", "--device", "cpu").exit_code == 0
    text = (tmp_path / "ev" / "evaluation.json").read_text(encoding="utf-8")
    bins = strict_loads(text)["calibration"]["bins"]
    empty = [b for b in bins if b["count"] == 0]
    assert empty and all(b["confidence"] is None and b["accuracy"] is None for b in empty)
    record = EvaluationRecord.read(tmp_path / "ev")
    assert all(math.isnan(b.confidence) for b in record.calibration.bins if b.count == 0)
    for name in ("model.json", "evaluation.json"):  # and the run's other JSON files
        strict_loads(next(tmp_path.rglob(name)).read_text(encoding="utf-8"))


def test_a_record_holding_nan_is_written_as_null_and_an_earlier_files_nan_still_reads() -> None:
    earlier = FIXTURES / "legacy-runs" / "classify-calibrated" / "evaluation.json"
    assert "NaN" in earlier.read_text()  # written before strict JSON
    record = EvaluationRecord.read(earlier)
    written = strict_loads(rundir.json_text(record.to_dict()))
    assert [b["confidence"] for b in written["calibration"]["bins"]][:2] == [None, None]
    again = EvaluationRecord.from_dict(written)
    assert [b.count for b in again.calibration.bins] == [b.count for b in record.calibration.bins]
    assert math.isnan(again.calibration.bins[0].accuracy)


# ---------------------------------------------------------------------------------- reports embed their own files


class CountingServer:
    """An HTTP server on 127.0.0.1 that serves a PNG and counts the requests it gets."""

    def __init__(self, png: bytes):
        self.hits = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the library's name
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/secret.png"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CountingServer]:
    Image.new("L", (8, 8), 99).save(tmp_path / "served.png")
    running = CountingServer((tmp_path / "served.png").read_bytes())
    yield running
    running.close()


def hostile_check(tmp_path: Path, url: str) -> tuple[Path, list[str]]:
    """A check directory of `tmp_path/data` whose CSVs name two images inside it and, as every path
    pixlearn might be tricked into embedding, files outside it: absolute, through `..`, through a
    symbolic link inside the folder, and a URL. Returns the directory and the outside paths."""
    data, secret = tmp_path / "data", tmp_path / "secret.png"
    Image.new("L", (8, 8), 7).save(secret)
    for name in ("a.png", "b.png"):
        (data / "train" / "x").mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 200).save(data / "train" / "x" / name)
    (data / "train" / "x" / "link.png").symlink_to(secret)
    outside = [str(secret), str(data / ".." / "secret.png"), str(data / "train" / "x" / "link.png"), url]
    check_dir = shutil.copytree(FIXTURES / "legacy-runs" / "check", tmp_path / "check")
    summary = CheckSummary.read(check_dir)
    replace(summary, data=str(data)).write(check_dir)
    inside = [str(data / "train" / "x" / n) for n in ("a.png", "b.png")]
    pair = ["exact", 1.0, "False", "test", "train"]
    rundir.write_csv(check_dir / "duplicates.csv", ["path_a", "path_b", "kind", "similarity", "same_split",
                     "split_a", "split_b"], [[*inside, *pair], *[[p, inside[0], *pair] for p in outside]])  # fmt: skip
    rundir.write_csv(check_dir / "label_issues.csv", ["path", "given", "suggested", "score", "rank", "split"],
                     [[p, "x", "y", 0.1, i + 1, "train"] for i, p in enumerate(outside)])  # fmt: skip
    issue = next(iter(summary.image_issues))
    rundir.write_csv(check_dir / "image_issues.csv", ["path", "issue", "value"], [[p, issue, 1.0] for p in outside])
    return check_dir, outside


def test_a_check_page_embeds_only_files_under_the_checked_folder_and_fetches_nothing(
    tmp_path: Path, server: CountingServer
) -> None:
    check_dir, outside = hostile_check(tmp_path, server.url)
    page = write_report(check_dir).read_text(encoding="utf-8")
    outside_inline = 3 * len(outside)  # each outside path is in duplicates, label issues and image issues
    # the inside pair, and the inside image each outside path is paired with: embedded; nothing else
    assert page.count("<img ") == 2 + len(outside), page.count("<img ")
    assert page.count("not embedded") == outside_inline
    assert all(f"{path}: not embedded" in page for path in outside)  # each named as text, with the reason
    assert server.hits == 0
    tried("report paths outside the checked folder or URLs", outside_inline)


def test_a_run_page_does_not_embed_a_figure_that_is_a_link_leading_out(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    secret = tmp_path / "secret.png"
    Image.new("L", (8, 8), 7).save(secret)
    (run / "figures").mkdir()
    (run / "figures" / "predictions.png").symlink_to(secret)
    Image.new("L", (8, 8), 200).save(run / "figures" / "predictions_gradcam.png")
    page = write_report(run).read_text(encoding="utf-8")
    assert page.count("<img ") == 1 and "predictions.png is not shown" in page and "not embedded" in page
    tried("report paths outside the checked folder or URLs")


# ---------------------------------------------------------------------------------- option extremes


SUMMARY_CASES = {
    "huge input": ["summary", "resnet-small", "--input", "100000x1000"],
    "huge side": ["summary", "seed-cnn", "--input", "150x4096x1"],
    "many channels": ["summary", "resnet-small", "--input", "64x64x100000"],
    "negative classes": ["summary", "resnet-small", "--classes", "-1"],
    "one class": ["summary", "resnet-small", "--classes", "1"],
    "a billion classes": ["summary", "resnet-small", "--classes", "1000000000"],
    "negative field channels": ["summary", "siren", "--channels", "-1"],
    "many field channels": ["summary", "siren", "--channels", "1000000"],
}

# In a child process whose address space is capped, so that a summary that tries to allocate what the
# machine lacks fails there (MemoryError) instead of taking the machine's memory.
SUMMARY_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from typer.testing import CliRunner
from pixlearn.cli import app
out = {}
for name, args in json.loads(sys.argv[1]).items():
    result = CliRunner().invoke(app, args, terminal_width=200)
    out[name] = [result.exit_code, result.output, repr(result.exception)]
print(json.dumps(out))
"""


def test_summary_extremes_are_one_error_line_in_bounded_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SUMMARY_CHILD, json.dumps(SUMMARY_CASES)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (code, output, exception) in results.items():
        lines = [line for line in output.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in output, (name, output, exception)
    assert "2,048 pixels a side" in results["huge input"][1] and "1,000" in results["a billion classes"][1]
    tried("option extremes", len(SUMMARY_CASES))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, figures_off) -> Path:
    image = (np.indices((12, 10)).sum(0) * 10).astype(np.uint8)
    with figures_off():  # render reads the weights and the spec, never the fit's figures
        run = fit_image(image, tmp_path_factory.mktemp("fit") / "run", FitConfig(model="seed-linear", steps=3)).run
    return run.path


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--scale", "inf", "finite"),
        ("--scale", "-inf", "finite"),
        ("--scale", "nan", "must be a number"),
        ("--scale", "1e308", "at most 20000"),
        ("--scale", "0", "more than 0"),
        ("--scale", "-2", "more than 0"),
        ("--size", "100000x100000", "render limit"),
        ("--size", "0x10", "positive sides"),
    ],
)
def test_render_extremes_are_one_error_line(option: str, value: str, says: str, fitted: Path, tmp_path: Path) -> None:
    error_line(cli("render", fitted, option, value, "--out", tmp_path / "r.png"), says)
    assert not (tmp_path / "r.png").exists()
    tried("option extremes")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "1e308"])
@pytest.mark.parametrize("option", ["--bpp", "--kb"])
def test_compress_rates_that_are_not_finite_or_sane_are_one_error_line(option: str, value: str, tmp_path: Path) -> None:
    Image.new("L", (16, 16), 90).save(tmp_path / "x.png")
    error_line(cli("compress", tmp_path / "x.png", "-o", tmp_path / "x.pxl", option, value), option)
    assert not (tmp_path / "x.pxl").exists()
    tried("option extremes")


def test_a_report_reads_only_the_tail_of_a_huge_log(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    size = 256 << 20  # a sparse file: 256 MiB that cost no disk, then the lines the page shows
    with open(run / "log.txt", "wb") as f:
        f.truncate(size)
        f.seek(size)
        f.write(b"".join(f"line {i}\n".encode() for i in range(100)))
    tracemalloc.start()
    try:
        page = write_report(run).read_text(encoding="utf-8")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB while reading a {size >> 20} MiB log"
    assert "line 99" in page and "line 60" in page and "line 59" not in page
    tried("option extremes")
