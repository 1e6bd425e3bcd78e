"""The registry: every registered model builds and runs on the CPU; seed-cnn is the seed's network."""

from __future__ import annotations

import copy

import pytest
import torch

from pixlearn.core.summary import format_summary, summarize
from pixlearn.models.classifiers import InputTooSmallError
from pixlearn.models.registry import UnknownModelError, create_model, get_entry, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs_a_cpu_forward_pass(name: str) -> None:
    entry = get_entry(name)
    if entry.task == "classify":
        size = max(entry.default_size or 64, 28)
        model = create_model(name, in_channels=3, num_classes=5, input_size=(size, size))
        out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, 5)
    else:
        model = create_model(name)
        out = model(torch.rand(7, 2) * 2 - 1)
        assert out.shape[0] == 7
    assert torch.isfinite(out).all()


def test_seed_cnn_matches_the_seed_summary_layer_for_layer() -> None:
    model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    rows = summarize(model, (1, 150, 150))
    assert [(r.kind, r.output_shape, r.params) for r in rows] == [
        ("Conv2D", (None, 74, 74, 120), 1200),
        ("MaxPooling2D", (None, 37, 37, 120), 0),
        ("Conv2D", (None, 18, 18, 60), 64860),
        ("Conv2D", (None, 8, 8, 60), 32460),
        ("MaxPooling2D", (None, 4, 4, 60), 0),
        ("Conv2D", (None, 1, 1, 40), 21640),
        ("Flatten", (None, 40), 0),
        ("Dense", (None, 2), 82),
    ]
    text = format_summary(model, (1, 150, 150))
    assert "Total params: 120,242" in text and "Trainable params: 120,242" in text


def test_seed_cnn_computes_the_seeds_relu_then_pool_exactly() -> None:
    """seed-cnn pools before its ReLUs (cheaper); the values must be those of the seed's order."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    x = torch.rand(3, 1, 150, 150)
    conv = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    h = F.max_pool2d(F.relu(conv[0](x)), 2)
    h = F.max_pool2d(F.relu(conv[2](F.relu(conv[1](h)))), 2)
    seed_order = model[-1](F.relu(conv[3](h)).flatten(1))
    assert torch.equal(model(x), seed_order)


def test_resnet_small_works_from_28_pixels_up() -> None:
    for size in (28, 64, 150):
        model = create_model("resnet-small", in_channels=1, num_classes=10, input_size=(size, size))
        assert model(torch.rand(1, 1, size, size)).shape == (1, 10)


def test_seed_cnn_refuses_inputs_its_stride_chain_cannot_take() -> None:
    with pytest.raises(InputTooSmallError, match="109"):
        create_model("seed-cnn", input_size=(64, 64))
    create_model("seed-cnn", input_size=(109, 109))


def test_unknown_model_names_are_named_in_the_error() -> None:
    with pytest.raises(UnknownModelError, match="'resnet-9000'.*seed-cnn"):
        create_model("resnet-9000")


def test_inference_batches_keep_the_largest_activation_in_cache() -> None:
    """seed-cnn's first layer is large at 150x150: a few images per pass; small inputs get big batches."""
    from pixlearn.classify.inference.forward import INFERENCE_CACHE_BYTES, inference_batch_size

    seed = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150)).eval()
    first_layer_bytes = 120 * 74 * 74 * 4  # float32 output of its first convolution, per image
    assert inference_batch_size(seed, torch.rand(2, 1, 150, 150)) == INFERENCE_CACHE_BYTES // first_layer_bytes
    bf16 = inference_batch_size(seed.to(torch.bfloat16), torch.rand(1, 1, 150, 150, dtype=torch.bfloat16))
    assert bf16 == INFERENCE_CACHE_BYTES // (first_layer_bytes // 2)
    small = create_model("airnet-small", in_channels=1, num_classes=10, input_size=(28, 28)).eval()
    assert inference_batch_size(small, torch.rand(1, 1, 28, 28)) > 50


def test_inference_max_pool_equals_torchs_without_its_indices() -> None:
    """pixlearn's MaxPool2d (index-free outside training) gives torch's values, odd sizes and NaN included."""
    import torch.nn.functional as F

    from pixlearn.models.layers import MaxPool2d

    pool = MaxPool2d(2)
    for shape in [(2, 3, 74, 74), (1, 5, 9, 7)]:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        x[0, 0, 0, 0] = float("nan")
        with torch.inference_mode():
            fast = pool(x)
        expected = F.max_pool2d(x, 2)
        assert fast.shape == expected.shape
        assert torch.equal(fast.nan_to_num(-1.0), expected.nan_to_num(-1.0))
        assert torch.isnan(fast[0, 0, 0, 0])
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    out = pool(x)
    assert "MaxPool2DWithIndices" in type(out.grad_fn).__name__  # with gradients: torch's own kernel
    out.sum().backward()
    assert x.grad is not None and x.grad.sum().item() == 2 * 3 * 3  # one gradient per window
    with torch.no_grad():
        assert pool(x).grad_fn is None and torch.equal(pool(x), F.max_pool2d(x, 2))


def test_read_extent_finds_the_rows_and_columns_a_network_reads() -> None:
    from torch import nn

    from pixlearn.models.layers import read_extent

    seed = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150))
    assert read_extent(list(seed), (150, 150)) == (109, 109)  # 74 -> 37 -> 18 -> 8 -> 4 -> 1 reads 109
    assert read_extent(list(seed), (150, 180)) == (109, 173)  # 89 -> 44 -> 21 -> 10 -> 5 -> 2 reads 173
    padded = [nn.Conv2d(1, 2, 3, padding=1), nn.Flatten()]
    assert read_extent(padded, (10, 10)) is None
    assert read_extent([nn.Conv2d(1, 2, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten()], (10, 10)) is None
    assert read_extent([nn.Conv2d(1, 2, 3, stride=2)], (10, 10)) is None  # no Flatten: unknown reader
    batch_norm = [nn.Conv2d(1, 2, 3, stride=2), nn.BatchNorm2d(2), nn.Flatten()]
    assert read_extent(batch_norm, (10, 10)) is None  # its training statistics read every position
    resnet = create_model("resnet-small", in_channels=1, num_classes=2, input_size=(64, 64))
    assert read_extent(list(resnet.children()), (64, 64)) is None


def test_unread_input_never_changes_seed_cnn_output() -> None:
    """The pixels read_extent leaves out really are never read: changing them changes no logit."""
    seed = create_model("seed-cnn", in_channels=1, num_classes=2, input_size=(150, 150)).eval()
    x = torch.rand(2, 1, 150, 150)
    y = x.clone()
    y[..., 109:, :] = torch.rand_like(y[..., 109:, :])
    y[..., :, 109:] = torch.rand_like(y[..., :, 109:])
    changed = x.clone()
    changed[..., 108, 108] += 1.0  # the last pixel read does matter
    with torch.no_grad():
        assert torch.equal(seed(x), seed(y))
        assert not torch.equal(seed(x), seed(changed))


@pytest.mark.parametrize("name,size", [("seed-cnn", 150), ("resnet-small", 64), ("airnet-small", 28)])
def test_inference_copy_gives_the_models_logits(name: str, size: int) -> None:
    """inference_model (cropped input, packed convolutions, fused ReLUs, channels-last) computes
    what the plain eval-mode network computes, for one image and for several."""
    from pixlearn.classify.inference.forward import inference_model
    from pixlearn.models.layers import CropUnread, PackedConv2d

    torch.manual_seed(0)
    model = create_model(name, in_channels=1, num_classes=3, input_size=(size, size)).eval()
    fast = inference_model(model)
    assert any(isinstance(m, PackedConv2d) for m in fast.modules())
    # the plain stacks of layers start with the crop; resnet-small (skip connections) is not one
    assert isinstance(model, torch.nn.Sequential) == (name != "resnet-small")
    assert isinstance(next(fast.children()), CropUnread) == (name != "resnet-small")
    for n in (1, 5):
        x = torch.rand(n, 1, size, size)
        with torch.no_grad():
            expected = model(x)
            got = fast(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    bf16 = inference_model(model, bf16=True)
    with torch.no_grad():
        x = torch.rand(3, 1, size, size)
        plain = copy.deepcopy(model).to(torch.bfloat16)(x.to(torch.bfloat16)).float()
        got = bf16(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()
    torch.testing.assert_close(got, plain, rtol=0.05, atol=0.05)


def test_packed_convolution_fuses_relu_and_keeps_gradients() -> None:
    from pixlearn.models.layers import ONEDNN_PACKING, PackedConv2d

    conv = torch.nn.Conv2d(3, 8, 3, stride=2)
    packed = PackedConv2d(conv, relu=True)
    x = torch.randn(2, 3, 11, 11)
    with torch.no_grad():
        out = packed(x)
        assert (packed.packed is not None) == ONEDNN_PACKING
        torch.testing.assert_close(out, torch.relu(conv(x)))
        assert (out >= 0).all() and (conv(x) < 0).any()
    x.requires_grad_(True)
    out = packed(x)  # with gradients: the plain layers, so backward works
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
