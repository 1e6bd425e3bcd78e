"""report.html: the right sections for each kind of run, everything escaped, nothing external, bounded size.

The builders here (`classification_run`, `field_run`, `compare_run`, `hostile_classification_run`)
also feed the browser test.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.spec import FittedImage, ModelSpec
from pixlearn.models.loading import load_model
from pixlearn.models.registry import create_model
from pixlearn.report import html as report_html
from pixlearn.report import render_report, run_kind, write_report

CLASSIFY_SECTIONS = ("overview", "data", "model", "history", "evaluation", "mistakes", "predictions", "log")
FIELD_SECTIONS = ("images", "history", "overview", "model")
COMPARE_SECTIONS = ("comparison", "grid", "curves", "overview")
HOSTILE = '<img src=x onerror="alert(1)">&"\''
fmt = report_html.fmt  # how the page writes a number


# ---------------------------------------------------------------------------------- run builders


def classification_run(trained: Path, target: Path) -> Path:
    """A copy of a trained run plus predictions on new images and one extra evaluation."""
    from pixlearn.classify.evaluation.interpretation import evaluate
    from pixlearn.classify.inference.prediction import predict

    shutil.copytree(trained, target)
    test_dir = _test_folder(target)
    predict(target, [test_dir], target / "predictions_unlabeled.csv", gallery=target / "figures/predictions.png")
    evaluate(target, test_dir, target / "evaluations" / "again")
    return target


def _test_folder(run: Path) -> Path:
    # predictions.csv names every test image; its split folder is the common root of their paths
    paths = [Path(r["path"]) for r in rundir.read_csv(run / "predictions.csv")]
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
    from pixlearn.field.comparison import compare
    from pixlearn.field.config import CompareConfig, FitConfig

    fit = FitConfig(steps=20, log_every=0.0)
    compare(field_image(), target, CompareConfig(models=["seed-linear", "seed-small"], fit=fit))
    return target


def hostile_classification_run(target: Path) -> Path:
    """A run directory by the contract whose class names, paths and reasons are markup."""
    classes = [HOSTILE, "</table><script>alert(2)</script>"]
    target.mkdir(parents=True)
    rundir.write_json(target / "config.json", {"model": "seed-cnn", "note": HOSTILE})
    summary = {
        "classes": classes,
        "images": {"train": 4, "test": 2},
        "per_class": {"train": dict.fromkeys(classes, 2), "test": dict.fromkeys(classes, 1)},
        "sizes": {"train": {"count": 0}, "test": {"count": 0}},
        "skipped": [{"split": "train", "path": f"data/{HOSTILE}.png", "reason": "not an image <b>bold</b>"}],
        "size": [32, 32],
        "fit": "squash",
    }
    rundir.write_json(target / "data_summary.json", summary)
    rundir.write_csv(target / "history.csv", ["epoch", "loss", "accuracy"], [[1, 0.9, 0.5], [2, 0.5, 0.75]])
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
    rundir.write_json(target / "evaluation.json", evaluation)
    rundir.write_csv(
        target / "predictions.csv",
        ["path", "true", "predicted", *[f"p_{c}" for c in classes]],
        [
            [f"test/{HOSTILE}.png", classes[1], classes[0], 0.9, 0.1],
            [f"test/{classes[1]}.png", classes[0], classes[0], 0.8, 0.2],
        ],
    )
    (target / "log.txt").write_text(f"2026-01-01 00:00:00 {HOSTILE}\n", encoding="utf-8")
    return target


def calibrated_sigmoid_run(target: Path, images: Path) -> Path:
    """An untrained sigmoid run with one temperature per class output and a threshold, evaluated on
    `images` and predicting them, and a metrics.json whose temperature raised the validation ECE: every
    calibration part of the report, without training."""
    from pixlearn.classify.evaluation.interpretation import evaluate
    from pixlearn.classify.inference.prediction import predict
    from tests.corpus import make_class_folders

    threshold = {"class": "light", "value": 0.4, "rule": "recall light=0.9"}
    spec = ModelSpec.classifier("resnet-small", ["dark", "light"], (16, 16), "grayscale", head="sigmoid",
                                temperature=(0.5, 2.0), threshold=threshold)  # fmt: skip
    torch.manual_seed(0)
    weights.save_model(create_model(spec.model, **spec.kwargs), spec, target)
    make_class_folders(images, per_class=4)
    evaluate(target, images, target)
    predict(target, [images], target / "predictions_unlabeled.csv", gallery=target / "figures/predictions.png")
    warning = "temperature scaling raised the validation ECE from 0.0500 to 0.0900 (8 validation images)"
    metrics = {"evaluated_on": "test", "temperature": [0.5, 2.0], "val_nll_before": 0.61, "val_nll_after": 0.52,
               "val_ece_before": 0.05, "val_ece_after": 0.09, "calibration_warning": warning}  # fmt: skip
    rundir.write_json(target / "metrics.json", metrics)
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
    weights.save_model(model, spec, target)
    rows = [[i, 0.1 * i, 1.0 / i, 10 + i] for i in range(1, 2001)]
    rundir.write_csv(target / "history.csv", ["step", "seconds", "loss", "psnr"], rows)
    rundir.write_json(target / "metrics.json", {"psnr": 30.0, "ssim": 0.9, "params": 9, "model": "seed-linear"})
    readable = {k: {"shape": list(v.shape), "values": v.tolist()} for k, v in model.state_dict().items()}
    rundir.write_json(target / "weights.json", readable)
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


def section(text: str, ident: str) -> str:
    start = text.index(f'<section id="{ident}">')
    return text[start : text.index("</section>", start)]


def cell_rows(fragment: str) -> list[list[str]]:
    """The text of every cell (th or td), row by row, unescaped."""
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", fragment, re.S)
    ]


def table(fragment: str, caption: str | None) -> tuple[list[str], list[list[str]]]:
    """Header and body rows of the first table in `fragment` whose caption starts with `caption`
    (None: the first table without a caption)."""
    for match in re.finditer(r"<table[^>]*>(.*?)</table>", fragment, re.S):
        found = re.search(r"<caption>(.*?)</caption>", match.group(1), re.S)
        if (found is None) if caption is None else (found and html.unescape(found.group(1)).startswith(caption)):
            head, body = re.search(r"<thead>(.*?)</thead>\s*<tbody>(.*?)</tbody>", match.group(1), re.S).groups()
            return cell_rows(head)[0], cell_rows(body)
    raise AssertionError(f"no table captioned {caption!r}")


def tooltips(text: str, chart: str) -> list[str]:
    """The tooltip of every point of one SVG chart, in the order drawn (series by series)."""
    svg = re.search(rf'<svg id="chart-{chart}".*?</svg>', text, re.S).group(0)
    return [html.unescape(t) for t in re.findall(r'<g class="pt"><title>([^<]*)</title>', svg)]


def badge(text: str, label: str) -> str:
    return html.unescape(re.search(rf'<span class="label">{label}</span><span class="value">([^<]*)<', text).group(1))


def embedded_png(tag_source: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(tag_source))))


# ---------------------------------------------------------------------------------- classification


def test_training_writes_the_report(trained_run: Path) -> None:
    text = (trained_run / "report.html").read_text(encoding="utf-8")
    assert section_ids(text) == [s for s in CLASSIFY_SECTIONS if s != "predictions"]  # nothing predicted yet
    header, rows = table(section(text, "history"), None)  # the values behind the charts, one row per epoch
    history = rundir.read_csv(trained_run / "history.csv")
    assert header[:3] == ["epoch", "loss", "accuracy"]
    assert [row[:3] for row in rows] == [
        [h["epoch"], fmt(float(h["loss"])), fmt(float(h["accuracy"]))] for h in history
    ]
    assert len(rows) == 8


def test_classification_report_holds_every_part_of_the_seed(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    assert run_kind(run) == "classify"
    ids = section_ids(text)
    assert ids == [*CLASSIFY_SECTIONS[:-1], "evaluation-1", "log"]  # evaluations/again follows the run's own
    nav = re.search(r'<nav aria-label="Sections">(.*?)</nav>', text, re.S).group(1)
    assert attribute_values(nav, "href") == [f"#{ident}" for ident in ids]  # every section linked, in order


def test_data_and_model_tables_hold_the_runs_numbers(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    summary = rundir.read_json(run / "data_summary.json")
    data = section(text, "data")
    header, rows = table(data, "Images per class and split")
    splits = ["train", "val", "test"]  # the default validation set is held out of train/ (--val-split 0.1)
    assert header == ["class", *splits]
    counts = summary["per_class"]
    assert rows == [
        *([c, *(fmt(counts[s][c]) for s in splits)] for c in summary["classes"]),
        ["total", *(fmt(summary["images"][s]) for s in splits)],
    ]
    assert summary["validation"]["text"] in data  # which set validated, which gave the final figures
    _, sizes = table(data, "Original image sizes")
    assert [row[:2] for row in sizes] == [[split, fmt(summary["sizes"][split]["count"])] for split in splits]
    assert f"<h3>Skipped files ({len(rundir.read_csv(run / 'skipped.csv'))})</h3>" in data
    model, _ = load_model(run)
    _, layers = table(section(text, "model"), "Model summary")
    assert layers[-3] == ["Total params", "", fmt(sum(p.numel() for p in model.parameters()))]
    assert sum(int(row[2].replace(",", "")) for row in layers[:-3]) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("ident", "folder"), [("evaluation", "."), ("evaluation-1", "evaluations/again")])
def test_evaluation_tables_hold_the_counts_of_evaluation_json(
    classify_report: tuple[Path, str], ident: str, folder: str
) -> None:
    run, text = classify_report
    evaluation = rundir.read_json(run / folder / "evaluation.json")
    classes, counts = evaluation["classes"], evaluation["confusion_matrix"]
    part = section(text, ident)
    assert badge(part, "images") == fmt(evaluation["images"]) == fmt(sum(map(sum, counts)))
    header, rows = table(part, "Confusion matrix (counts)")
    assert header == ["true \\ predicted", *classes]
    assert rows == [[c, *map(fmt, row)] for c, row in zip(classes, counts, strict=True)]
    _, shares = table(part, "Confusion matrix (share of all images)")
    assert [row[0] for row in shares] == classes
    np.testing.assert_allclose(
        [[float(v) for v in row[1:]] for row in shares], evaluation["confusion_proportions"], atol=0.005
    )
    # P(predicted j | true i) for every kind of mistake, with its count out of the true class's images
    rates = re.findall(r"<li>P\(predicted (.+?) \| true (.+?)\) = ([\d.]+)% \((\d+) of (\d+)\)</li>", part)
    assert len(rates) == len(classes) * (len(classes) - 1)
    for predicted, true, percent, n, total in rates:
        row = counts[classes.index(html.unescape(true))]
        assert (int(n), int(total)) == (row[classes.index(html.unescape(predicted))], sum(row))
        assert float(percent) == pytest.approx(100 * int(n) / int(total), abs=0.05)
    _, per_class = table(part, "Per-class precision")
    assert [[row[0], row[-1]] for row in per_class] == [
        [p["class"], fmt(p["support"])] for p in evaluation["per_class"]
    ]


def test_mistakes_and_predictions_sections_count_the_runs_rows(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    tested = rundir.read_csv(run / "predictions.csv")
    wrong = [r for r in tested if r["true"] != r["predicted"]]
    mistakes = section(text, "mistakes")
    assert f"<p>{len(wrong)} of {len(tested)} test images are misclassified.</p>" in mistakes
    assert len(cell_rows(mistakes)) == (1 + min(len(wrong), 16) if wrong else 0)  # header and up to 16 mistakes
    galleries = [run / "figures" / name for name in ("misclassified.png", "confident_mistakes.png")]
    assert len(re.findall(r"<img ", mistakes)) == sum(path.exists() for path in galleries)
    predicted = rundir.read_csv(run / "predictions_unlabeled.csv")
    part = section(text, "predictions")
    _, counts = table(part, "Predicted labels")
    assert {label: int(n) for label, n in counts} == Counter(r["label"] for r in predicted)
    header, rows = table(part, None)  # every image with its label and probabilities
    assert header == list(predicted[0])
    assert rows == [[r["path"], r["label"], *(fmt(float(r[k])) for k in header[2:])] for r in predicted]
    assert len(re.findall(r"<img ", part)) == 1  # the gallery


def test_history_chart_has_a_tooltip_for_every_value(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    history = rundir.read_csv(run / "history.csv")
    for key in ("loss", "accuracy"):
        expected = [f"epoch {h['epoch']}: training {key} {fmt(float(h[key]))}" for h in history]
        expected += [f"epoch {h['epoch']}: validation {key} {fmt(float(h['val_' + key]))}" for h in history]
        assert tooltips(text, key) == expected, key


def test_figures_are_embedded_thumbnails_with_alt_text(classify_report: tuple[Path, str]) -> None:
    run, text = classify_report
    images = re.findall(r"<img [^>]*>", text)
    files = [*(run / "figures").glob("*.png"), *(run / "evaluations").glob("*/figures/*.png")]  # evaluations: theirs
    figures = [p for p in files if not p.stem.startswith(("history", "confusion"))]
    assert len(images) == len(figures) >= 2  # samples, predictions and any mistakes galleries; charts are SVG
    for tag in images:
        assert re.search(r'src="data:image/(png|jpeg);base64,', tag)
        assert re.search(r'alt="[^"]{10,}"', tag)
        width = int(re.search(r'width="(\d+)"', tag).group(1))
        assert width <= report_html.THUMB_SIDE


def test_a_calibrated_sigmoid_run_reads_plainly(tmp_path: Path) -> None:
    run = calibrated_sigmoid_run(tmp_path / "run", tmp_path / "images")
    text = render_report(run)
    overview, evaluation = section(text, "overview"), section(text, "evaluation")
    plain = html.unescape(evaluation)
    assert "T = dark 0.500, light 2.000 (one per class output)" in plain  # each temperature named by its class
    header, rows = table(evaluation, "Temperature scaling")
    assert header == ["", "validation split, before", "validation split, after", "test set, before", "test set, after"]
    effect = rundir.read_json(run / "evaluation.json")["temperature_effect"]
    assert rows[1] == ["ECE (15 bins)", fmt(0.05), fmt(0.09), fmt(effect["ece_before"]), fmt(effect["ece_after"])]
    assert "Warning: temperature scaling raised the validation ECE from 0.0500 to 0.0900" in plain
    assert "confidence: the probability of the predicted label, the threshold's pick" in plain
    assert "dark 0.500, light 2.000" in html.unescape(overview)  # and so in the final metrics
    note = "sigmoid head: each class's probability is its own output, so they need not sum to 1"
    mistakes = html.unescape(section(text, "mistakes"))
    assert f"4 most confident mistakes, with the probability of each class ({note})" in mistakes  # its table too
    predictions = html.unescape(section(text, "predictions"))
    assert f"Predictions per image (predictions_unlabeled.csv; {note})" in predictions
    header, _ = table(section(text, "predictions"), None)
    assert header == ["path", "label", "p_dark", "p_light"]  # the note is in the title, not a column of it


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
    assert badge(text, "status") == "unfinished"  # no metrics.json: marked unfinished, not an error
    assert "No saved model" in section(text, "model")
    # the one mistake of predictions.csv, its path and class names escaped
    header, rows = table(section(text, "mistakes"), "The 1 most confident mistakes")
    assert header == ["image", "true", "predicted", "probabilities"]
    assert rows == [
        [
            f"test/{HOSTILE}.png",
            "</table><script>alert(2)</script>",
            HOSTILE,
            f"{HOSTILE}:0.90 / </table><script>alert(2)</script>:0.10",
        ]
    ]


# ---------------------------------------------------------------------------------- image fitting


def test_field_report_shows_images_curve_and_metrics(field_report: tuple[Path, str]) -> None:
    run, text = field_report
    assert run_kind(run) == "field"
    assert section_ids(text) == [*FIELD_SECTIONS, "log"]
    images = section(text, "images")
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", images) == ["Original", "Reconstruction", "Error map"]
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', images)
    files = [run / "original.png", run / "reconstruction.png", run / "figures" / "error_map.png"]
    for source, path in zip(embedded, files, strict=True):  # the run's own pixels, not a resampled copy
        pixels = np.asarray(Image.open(path))  # the error map is an opaque RGBA figure: its colours are shown
        assert np.array_equal(embedded_png(source), pixels[..., :3] if pixels.shape[-1] == 4 else pixels), path.name
    history = rundir.read_csv(run / "history.csv")
    expected = [f"step {h['step']}: PSNR {fmt(float(h['psnr']))}" for h in history]
    expected += [f"step {h['step']}: held-out PSNR {fmt(float(h['test_psnr']))}" for h in history]
    assert tooltips(text, "psnr") == expected
    assert tooltips(text, "loss") == [f"step {h['step']}: loss {fmt(float(h['loss']))}" for h in history]
    metrics = rundir.read_json(run / "metrics.json")
    assert badge(text, "PSNR") == fmt(float(metrics["psnr"])) + " dB"
    assert badge(text, "held-out PSNR") == fmt(float(metrics["test_psnr"])) + " dB"
    shown = [[k, fmt(report_html.compact(v))] for k, v in metrics.items() if k != "format"]  # phases compactly
    assert table(section(text, "overview"), None)[1] == shown
    model = section(text, "model")
    assert table(model, "Model summary")[1][-3] == ["Total params", "", fmt(metrics["params"])]
    weights = re.search(r"<summary>Weights \(weights.json\).*?<pre>(.*?)</pre>", model, re.S).group(1)
    assert re.findall(r"^(\S+)  shape \(", weights, re.M) == list(rundir.read_json(run / "weights.json"))


def test_compare_report_shows_table_grid_and_curves(compare_report: tuple[Path, str]) -> None:
    run, text = compare_report
    assert run_kind(run) == "compare"
    assert section_ids(text) == [*COMPARE_SECTIONS, "log"]
    rows = rundir.read_json(run / "compare.json")
    models = [row["model"] for row in rows]
    assert models == ["seed-linear", "seed-small"]
    header, cells = table(section(text, "comparison"), "One row per model")
    assert header == list(rows[0]) and cells == [[fmt(v) for v in row.values()] for row in rows]
    grid = section(text, "grid")
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", grid)
    assert [c.split(":")[0] for c in captions] == ["All models", *models]  # the grid, then one card per model
    assert len(re.findall(r"<img ", grid)) == 1 + len(models)
    curves = section(text, "curves")
    assert re.findall(r'<span class="swatch"[^>]*></span>([^<]*)</li>', curves) == models  # one legend entry each
    expected = [
        f"seconds {fmt(float(h['seconds']))}: {model} {fmt(float(h['psnr']))}"
        for model in models
        for h in rundir.read_csv(run / "models" / model / "history.csv")
    ]
    assert tooltips(text, "compare") == expected  # every logged PSNR of every model


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
    with pytest.raises(rundir.RunError, match="not a pixlearn run directory"):
        write_report(tmp_path)
    with pytest.raises(rundir.RunError, match="missing"):
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
