"""The registry: every registered model builds and runs on the CPU; seed-cnn is the seed's network."""

from __future__ import annotations

import pytest
import torch

from pixlearn.models import UnknownModelError, create_model, get_entry, list_models
from pixlearn.models.classifiers import InputTooSmallError
from pixlearn.summary import format_summary, summarize


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
    from pixlearn.batches import INFERENCE_CACHE_BYTES, inference_batch_size

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
