"""Streaming: the same batches as in memory, a cache that spares decoding, and prediction that resumes."""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pixlearn.classify.data import decoding as data_module
from pixlearn.classify.data.decoding import DecodeOptions, load_images
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.classify.data.streaming import LazyImages, cache_files, cache_key, default_workers, open_stream
from pixlearn.classify.inference import prediction as predict_module
from pixlearn.classify.training.inputs import epoch_data
from pixlearn.classify.training.loop import TrainConfig, train
from pixlearn.core.errors import DataError

# The modules themselves: the package re-exports functions of the same names (pixlearn.classify.inference.prediction).
from pixlearn.core.storage import rundir, weights
from pixlearn.core.storage.spec import ModelSpec
from pixlearn.models.registry import create_model
from tests.classify.conftest import figures_not_rasterised
from tests.conftest import make_tree

OPTIONS = DecodeOptions("grayscale", (28, 28), "squash")
CONFIG = TrainConfig(
    model="resnet-small", size=28, color="grayscale", epochs=2, batch_size=8, flip=True, shift=0.1, val_split=0.0
)


@pytest.fixture
def corrupt_tree(seed_tree: Path) -> Path:
    """The seed tree plus one file that is not an image: both modes must skip it alike."""
    (seed_tree / "train" / "city" / "street" / "broken.png").write_bytes(b"not a png at all")
    return seed_tree


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file decoded in this process (the up-front pass and lazy reads) is appended to the list returned."""
    seen: list[str] = []
    original = data_module._decode_into

    def counting(item, options, out=None):
        seen.append(str(item[1]))
        return original(item, options, out)

    monkeypatch.setattr(data_module, "_decode_into", counting)
    return seen


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """CONFIG trained on one seed tree in memory, streamed, and twice with one --cache, recording the files each
    of those two decoded in this process: training is the slow part, so the tests below share these runs."""
    root = tmp_path_factory.mktemp("runs")
    tree = make_tree(root / "data")
    cache = root / "cache"
    out = {"tree": tree, "cache": cache, "memory": train(tree, root / "memory", CONFIG)}
    out["stream"] = train(tree, root / "stream", dataclasses.replace(CONFIG, stream=True, workers=2))
    with pytest.MonkeyPatch.context() as monkeypatch:
        decoded = counting_decodes(monkeypatch)
        out["cached"] = train(tree, root / "cached", dataclasses.replace(CONFIG, cache=str(cache)))
        out["first_decodes"] = list(decoded)
        decoded.clear()
        with figures_not_rasterised():  # the same figures as the first cached run's
            out["again"] = train(tree, root / "again", dataclasses.replace(CONFIG, cache=str(cache)))
        out["again_decodes"] = list(decoded)
    return out


def without_seconds(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}  # every wall time


def _splits(root: Path):
    return find_splits(root, LabelRule("first"), seed=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_gives_the_same_labels_and_batches_as_memory(corrupt_tree: Path, workers: int) -> None:
    splits = _splits(corrupt_tree)
    memory = load_images(splits.train, OPTIONS, splits.classes)
    stream = open_stream(splits.train, OPTIONS, splits.classes, workers=workers)
    assert stream.workers == (workers or default_workers(0)) and default_workers(0) >= 1  # 0 asks for the default
    stream.workers = workers  # 0: decode in this process; 2: DataLoader worker processes
    assert stream.paths == memory.paths
    assert torch.equal(stream.labels, memory.labels)
    assert stream.skipped == memory.skipped and len(stream.skipped) == 1
    assert stream.original_sizes == memory.original_sizes
    for epoch in (0, 1):
        pairs = list(zip(epoch_data(memory, 5, epoch, 0), epoch_data(stream, 5, epoch, 0), strict=True))
        assert len(pairs) == -(-len(memory) // 5)
        for (mem_x, mem_y), (str_x, str_y) in pairs:
            assert torch.equal(mem_x, str_x) and torch.equal(mem_y, str_y)


def test_lazy_images_index_like_a_tensor(seed_tree: Path) -> None:
    splits = _splits(seed_tree)
    memory = load_images(splits.test, OPTIONS, splits.classes)
    lazy = LazyImages(memory.paths, OPTIONS)
    assert lazy.shape == memory.images.shape
    assert torch.equal(lazy[2:5], memory.images[2:5])
    assert torch.equal(lazy[torch.tensor([4, 0])], memory.images[torch.tensor([4, 0])])
    assert torch.equal(lazy[1], memory.images[1])
    assert torch.equal(lazy[np.int64(1)], memory.images[1]) and torch.equal(lazy[torch.tensor(1)], memory.images[1])
    stream = open_stream(splits.test, OPTIONS, splits.classes)
    assert np.array_equal(stream.gallery_images()[np.array([3, 1])], memory.gallery_images()[np.array([3, 1])])


def test_streamed_and_cached_training_repeat_training_in_memory(runs: dict) -> None:
    memory, stream, cached = runs["memory"], runs["stream"], runs["cached"]
    memory_weights = load_file(str(memory.run.weights))
    for other in (stream, cached):
        assert [without_seconds(h.content()) for h in other.history] == [
            without_seconds(h.content()) for h in memory.history
        ]
        weights = load_file(str(other.run.weights))
        assert weights.keys() == memory_weights.keys()
        assert all(torch.equal(weights[k], memory_weights[k]) for k in weights)
        # every test image with its true label, prediction and exact probabilities, in the same order
        predictions = rundir.read_csv(other.run.path / "predictions.csv")
        assert predictions == rundir.read_csv(memory.run.path / "predictions.csv") and len(predictions) == 12
        assert without_seconds(other.metrics.content()) == without_seconds(memory.metrics.content())
        figures = sorted(p.name for p in (other.run.path / "figures").glob("*.png"))
        assert figures == sorted(p.name for p in (memory.run.path / "figures").glob("*.png"))
    assert rundir.read_json(cached.run.config)["cache"] == str(runs["cache"])


def test_cache_is_written_once_then_reused_without_decoding(runs: dict) -> None:
    splits = _splits(runs["tree"])
    n_files = len(splits.train) + len(splits.test)
    first, again, decoded = runs["cached"], runs["again"], runs["first_decodes"]
    # One decode per file to build the cache; the epochs, validation and evaluation read the memory map.
    assert sorted(decoded) == sorted(str(s.path) for s in splits.train + splits.test)
    assert len(decoded) == n_files
    assert runs["again_decodes"] == []
    assert [h.loss for h in again.history] == [h.loss for h in first.history]  # the same images, read back
    assert len(list(runs["cache"].glob("*.npy"))) == 2  # train and test, nothing new


def test_cache_is_a_uint8_memory_map_keyed_by_files_and_options(seed_tree: Path, tmp_path: Path) -> None:
    splits = _splits(seed_tree)
    paths = [s.path for s in splits.train]
    stream = open_stream(splits.train, OPTIONS, splits.classes, cache=tmp_path / "cache")
    array_file, meta_file = cache_files(tmp_path / "cache", cache_key(paths, OPTIONS))
    stored = np.load(array_file, mmap_mode="r")
    assert stored.dtype == np.uint8 and stored.shape == (len(paths), 1, 28, 28)
    assert isinstance(stream.images.store, np.memmap)
    assert torch.equal(stream.images[0 : len(stream)], load_images(splits.train, OPTIONS, splits.classes).images)
    assert meta_file.exists() and not list((tmp_path / "cache").glob(".*.tmp"))
    assert cache_key(paths, DecodeOptions("grayscale", (32, 32), "squash")) != cache_key(paths, OPTIONS)
    before = cache_key(paths, OPTIONS)
    os.utime(paths[0], ns=(1, 1))  # a changed file must not read the old images
    assert cache_key(paths, OPTIONS) != before
    assert not cache_files(tmp_path / "cache", cache_key(paths, OPTIONS))[0].exists()


def test_a_cache_path_that_is_not_a_folder_is_a_clear_error(seed_tree: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    splits = _splits(seed_tree)
    with pytest.raises(DataError, match="--cache .*cache"):
        open_stream(splits.train, OPTIONS, splits.classes, cache=blocker)


# ---------------------------------------------------------------------------------- prediction


def _tiny_run(directory: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet-small", in_channels=1, num_classes=2, input_size=(28, 28))
    spec = ModelSpec.classifier("resnet-small", ["city", "nature"], (28, 28), "grayscale")
    weights.save_model(model, spec, directory)
    return directory


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_prediction_crash_keeps_written_rows_and_resume_skips_them(
    seed_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _tiny_run(tmp_path / "run")
    images = seed_tree / "train"
    total = len(predict_module.collect_images([images]))
    monkeypatch.setattr(predict_module, "CHUNK", 5)
    calls = {"n": 0}
    original = predict_module.Predictor.probabilities

    def crash_on_third_chunk(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(self, batch)

    monkeypatch.setattr(predict_module.Predictor, "probabilities", crash_on_third_chunk)
    out = tmp_path / "pred.csv"
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict_module.predict(run, [images], out)
    kept = _rows(out)
    assert len(kept) == 10  # two finished chunks survived the crash

    monkeypatch.setattr(predict_module.Predictor, "probabilities", original)
    calls["n"] = 0
    result = predict_module.predict(run, [images], out, resume=True)
    rows = _rows(out)
    assert len(result.predictions) == total - 10  # only the rest was predicted
    assert rows[:10] == kept
    assert len(rows) == total and len({r["path"] for r in rows}) == total


def test_resume_after_a_torn_last_line_drops_it_and_predicts_that_file_again(seed_tree: Path, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path / "run")
    images = seed_tree / "test"
    out = tmp_path / "pred.csv"
    predict_module.predict(run, [images], out)
    full = _rows(out)
    text = out.read_text(encoding="utf-8")
    out.write_text(text[: text.rindex(full[-1]["path"]) + 8], encoding="utf-8")  # killed mid-row
    predict_module.predict(run, [images], out, resume=True)
    rows = _rows(out)
    assert [r["path"] for r in rows] == [r["path"] for r in full]
    assert all(r["label"] in ("city", "nature") for r in rows)


def test_train_command_takes_stream_and_cache_and_saves_them(seed_tree: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pixlearn.cli import app

    common = ["train", str(seed_tree), "--size", "16", "--color", "grayscale", "--epochs", "1", "--workers", "1"]
    common += ["--val-split", "0"]  # two sets cached: train and test
    common += ["--model", "airnet-small"]  # the smallest network: what is checked is the options, not the model
    streamed = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "a"), "--stream"])
    assert streamed.exit_code == 0, streamed.output
    assert rundir.read_json(tmp_path / "a" / "config.json")["stream"] is True
    cached = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "cache")])
    assert cached.exit_code == 0, cached.output
    assert rundir.read_json(tmp_path / "b" / "config.json")["cache"] == str(tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
