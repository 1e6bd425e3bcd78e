"""report.html: the right sections for each kind of run, everything escaped, nothing external, bounded size.

The builders here (`classification_run`, `field_run`, `compare_run`, `hostile_classification_run`)
also feed the browser test.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pixlearn.core import runs
from pixlearn.core.spec import FittedImage, ModelSpec
from pixlearn.models.registry import create_model
from pixlearn.report import html as report_html
from pixlearn.report import render_report, run_kind, write_report

CLASSIFY_SECTIONS = ("overview", "data", "model", "history", "evaluation", "mistakes", "predictions", "log")
FIELD_SECTIONS = ("images", "history", "overview", "model")
COMPARE_SECTIONS = ("comparison", "grid", "curves", "overview")
HOSTILE = '<img src=x onerror="alert(1)">&"\''


# ---------------------------------------------------------------------------------- run builders


def classification_run(trained: Path, target: Path) -> Path:
    """A copy of a trained run plus predictions on new images and one extra evaluation."""
    from pixlearn.classify.evaluate import evaluate
    from pixlearn.classify.predict import predict

    shutil.copytree(trained, target)
    test_dir = _test_folder(target)
    predict(
        target, [test_dir], csv_path=target / "predictions_unlabeled.csv", gallery=target / "figures/predictions.png"
    )
    evaluate(target, test_dir, out=target / "evaluations" / "again")
    return target


def _test_folder(run: Path) -> Path:
    # predictions.csv names every test image; its split folder is the common root of their paths
    paths = [Path(r["path"]) for r in runs.read_csv(run / "predictions.csv")]
    root = paths[0]
    while root.name != "test":
        root = root.parent
    return root


def field_image(size: int = 24) -> np.ndarray:
    """A smooth RGB image with one sharp edge: something a small network can partly learn."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    arr = np.stack([x, y, (x + y) / 2], axis=-1)
    arr[size // 3 : size // 2, size // 3 : 2 * size // 3] = (1.0, 0.2, 0.1)
    return (arr * 255 + 0.5).astype(np.uint8)


def field_run(target: Path, heldout: bool = False) -> Path:
    from pixlearn.field.config import FitConfig
    from pixlearn.field.fit import fit_image

    fit_image(field_image(), target, FitConfig(model="seed-small", steps=30, log_every=0.0, heldout=heldout))
    return target


def compare_run(target: Path) -> Path:
    from pixlearn.field.compare import compare
    from pixlearn.field.config import FitConfig

    compare(field_image(), ["seed-linear", "seed-small"], target, config=FitConfig(steps=20, log_every=0.0))
    return target


def hostile_classification_run(target: Path) -> Path:
    """A run directory by the contract whose class names, paths and reasons are markup."""
    classes = [HOSTILE, "</table><script>alert(2)</script>"]
    target.mkdir(parents=True)
    runs.write_json(target / "config.json", {"model": "seed-cnn", "note": HOSTILE})
    summary = {
        "classes": classes,
        "images": {"train": 4, "test": 2},
        "per_class": {"train": dict.fromkeys(classes, 2), "test": dict.fromkeys(classes, 1)},
        "sizes": {"train": {"count": 0}, "test": {"count": 0}},
        "skipped": [{"split": "train", "path": f"data/{HOSTILE}.png", "reason": "not an image <b>bold</b>"}],
        "size": [32, 32],
        "fit": "squash",
    }
    runs.write_json(target / "data_summary.json", summary)
    runs.write_csv(target / "history.csv", ["epoch", "loss", "accuracy"], [[1, 0.9, 0.5], [2, 0.5, 0.75]])
    evaluation = {
        "images": 2,
        "accuracy": 0.5,
        "classes": classes,
        "confusion_matrix": [[1, 0], [1, 0]],
        "confusion_proportions": [[0.5, 0.0], [0.5, 0.0]],
        "conditional_error_rates": [[1.0, 0.0], [1.0, 0.0]],
        "per_class": [{"class": c, "precision": 0.5, "recall": 1.0, "f1": 0.67, "support": 1} for c in classes],
        "most_confused": [[classes[1], classes[0], 1]],
        "skipped": [],
    }
    runs.write_json(target / "evaluation.json", evaluation)
    runs.write_csv(
        target / "predictions.csv",
        ["path", "true", "predicted", *[f"p_{c}" for c in classes]],
        [
            [f"test/{HOSTILE}.png", classes[1], classes[0], 0.9, 0.1],
            [f"test/{classes[1]}.png", classes[0], classes[0], 0.8, 0.2],
        ],
    )
    (target / "log.txt").write_text(f"2026-01-01 00:00:00 {HOSTILE}\n", encoding="utf-8")
    return target


def fake_field_run(target: Path, side: int = 1600) -> Path:
    """A field run written by the contract's file names, with a large noisy photo (the worst case for size)."""
    rng = np.random.default_rng(0)
    target.mkdir(parents=True)
    photo = rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
    Image.fromarray(photo).save(target / "original.png")
    Image.fromarray(photo[::-1]).save(target / "reconstruction.png")
    (target / "figures").mkdir()
    Image.fromarray(np.abs(photo.astype(int) - photo[::-1]).astype(np.uint8)).save(target / "figures/error_map.png")
    model = create_model("seed-linear")
    image = FittedImage(side, side * 3 // 4, 3, source=f"https://example.invalid/{HOSTILE}.jpg")
    spec = ModelSpec.field("seed-linear", image, "pixel")
    runs.save_model(model, spec, target)
    rows = [[i, 0.1 * i, 1.0 / i, 10 + i] for i in range(1, 2001)]
    runs.write_csv(target / "history.csv", ["step", "seconds", "loss", "psnr"], rows)
    runs.write_json(target / "metrics.json", {"psnr": 30.0, "ssim": 0.9, "params": 9, "model": "seed-linear"})
    weights = {k: {"shape": list(v.shape), "values": v.tolist()} for k, v in model.state_dict().items()}
    runs.write_json(target / "weights.json", weights)
    return target


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def classify_report(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = classification_run(trained_run, tmp_path_factory.mktemp("report") / "run")
    return run, write_report(run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def field_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = field_run(tmp_path_factory.mktemp("report") / "fit", heldout=True)
    return run, write_report(run).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = compare_run(tmp_path_factory.mktemp("report") / "cmp")
    return run, write_report(run).read_text(encoding="utf-8")


def section_ids(text: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', text)


def attribute_values(text: str, name: str) -> list[str]:
    return re.findall(rf'\s{name}="([^"]*)"', text)


# ---------------------------------------------------------------------------------- classification


def test_training_writes_the_report(trained_run: Path) -> None:
    text = (trained_run / "report.html").read_text(encoding="utf-8")
    assert "<h2>Training history</h2>" in text


def test_classification_report_holds_every_part_of_the_seed(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    assert run_kind(run) == "classify"
    ids = section_ids(text)
    for ident in CLASSIFY_SECTIONS:
        assert ident in ids, ident
    assert "evaluation-1" in ids  # evaluations/again
    for phrase in (
        "Images per class and split",
        "Original image sizes",
        "Skipped files",
        "Total params",
        "Confusion matrix (counts)",
        "Confusion matrix (share of all images)",
        "P(predicted",
        "precision",
        "Predicted labels",
    ):
        assert phrase in text, phrase


def test_history_chart_has_a_tooltip_for_every_value(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    history = runs.read_csv(run / "history.csv")
    loss_chart = text[text.index('id="chart-loss"') : text.index('id="chart-accuracy"')]
    tips = re.findall(r'<g class="pt"><title>([^<]*)</title>', loss_chart)
    assert len(tips) == 2 * len(history)  # training and validation loss, every epoch
    first = float(history[0]["val_loss"])
    assert f"epoch 1: validation loss {report_html.fmt(first)}" in tips


def test_figures_are_embedded_thumbnails_with_alt_text(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    images = re.findall(r"<img [^>]*>", text)
    figures = [p for p in (run / "figures").glob("*.png") if not p.stem.startswith(("history", "confusion"))]
    assert len(images) == len(figures) >= 2  # samples, predictions and any mistakes galleries; charts are SVG
    for tag in images:
        assert re.search(r'src="data:image/(png|jpeg);base64,', tag)
        assert re.search(r'alt="[^"]{10,}"', tag)
        width = int(re.search(r'width="(\d+)"', tag).group(1))
        assert width <= report_html.THUMB_SIDE


def test_report_loads_nothing_from_outside_the_file(classify_report, field_report, compare_report) -> None:
    for _, text in (classify_report, field_report, compare_report):
        for value in attribute_values(text, "src") + attribute_values(text, "href"):
            assert value.startswith(("data:", "#")), value
            assert "//" not in value.split(",")[0] and "http" not in value.split(",")[0], value
        assert "<script" not in text.lower()
        assert '<link rel="stylesheet"' not in text and "@import" not in text and "url(" not in text
        assert "Content-Security-Policy" in text


def test_strings_from_files_are_escaped(tmp_path: Path) -> None:
    text = render_report(hostile_classification_run(tmp_path / "run"))
    assert "onerror=" not in text.replace("onerror=&quot;", "")  # only ever as escaped text
    assert "<script>" not in text and "</table><script>" not in text
    assert html.escape(HOSTILE, quote=True) in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text
    assert "status" in text.lower()  # no metrics.json: marked unfinished, not an error
    assert "No saved model" in text


# ---------------------------------------------------------------------------------- image fitting


def test_field_report_shows_images_curve_and_metrics(field_report: tuple[Path, str]) -> None:
    run, text = field_report
    assert run_kind(run) == "field"
    ids = section_ids(text)
    for ident in FIELD_SECTIONS:
        assert ident in ids, ident
    images = text[text.index('<section id="images">') : text.index('<section id="history">')]
    for caption in ("Original", "Reconstruction", "Error map"):
        assert f"<figcaption>{caption}</figcaption>" in images
    assert 'id="chart-psnr"' in text and "held-out PSNR" in text
    metrics = runs.read_json(run / "metrics.json")
    assert report_html.fmt(float(metrics["psnr"])) + " dB" in text
    assert "Total params" in text and "Weights (weights.json)" in text


def test_compare_report_shows_table_grid_and_curves(compare_report: tuple[Path, str]) -> None:
    run, text = compare_report
    assert run_kind(run) == "compare"
    for ident in COMPARE_SECTIONS:
        assert ident in section_ids(text), ident
    for row in runs.read_json(run / "compare.json"):
        assert f"<td>{row['model']}</td>" in text
    curves = text[text.index('<section id="curves">') :]
    assert "seed-linear" in curves and "seed-small" in curves


def test_report_of_a_large_photo_stays_small(tmp_path: Path) -> None:
    run = fake_field_run(tmp_path / "big")
    path = write_report(run)
    assert path.stat().st_size < 3_000_000  # three 1600x1200 noise images: 17 MB of PNG on disk
    text = path.read_text(encoding="utf-8")
    assert text.count("data:image/jpeg") >= 2  # too big as PNG, re-encoded
    assert len(re.findall(r'<g class="pt">', text)) <= 2 * report_html.MAX_POINTS  # 2,000 steps, thinned
    assert "https://example.invalid/" in text and 'href="https' not in text  # shown as text, never linked


# ---------------------------------------------------------------------------------- errors and CLI


def test_a_folder_that_is_no_run_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(runs.RunError, match="not a pixlearn run directory"):
        write_report(tmp_path)
    with pytest.raises(runs.RunError, match="missing"):
        write_report(tmp_path / "missing")
    assert not (tmp_path / "report.html").exists()


def test_report_verb_writes_and_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixlearn.cli import app

    run = hostile_classification_run(tmp_path / "run")
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or False)
    result = CliRunner().invoke(app, ["report", str(run), "--open"])
    assert result.exit_code == 0, result.output
    assert (run / "report.html").exists()
    assert opened == [(run / "report.html").resolve().as_uri()]
    assert "no web browser found" in result.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a directory" in missing.output


def test_chart_without_values_says_so() -> None:
    assert "no values" in report_html.line_chart([], "Loss", "epoch", "loss")
    nan = report_html.Series("loss", [1.0, 2.0], [float("nan"), float("nan")])
    assert "no finite values" in report_html.line_chart([nan], "Loss", "epoch", "loss")
