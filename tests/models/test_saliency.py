"""Grad-CAM (`--explain`): the layer is found from the network, and the maps follow the object."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pixlearn.classify.config import EvaluateConfig, PredictConfig
from pixlearn.classify.evaluation.interpretation import evaluate
from pixlearn.classify.inference.prediction import predict
from pixlearn.core.errors import ConfigError
from pixlearn.core.storage.rundir import read_csv
from pixlearn.models.registry import create_model, get_entry, list_models
from pixlearn.models.saliency import GradCam, spatial_layer
from pixlearn.report.page import write_report
from tests.corpus import cli, fake_run, make_class_folders

SIDE = 32


def square_image(top: int, left: int, side: int = SIDE, square: int = 6) -> np.ndarray:
    """A dark (side x side x 1) uint8 image with one bright square whose top-left corner is (top, left)."""
    image = np.full((side, side, 1), 20, np.uint8)
    image[top : top + square, left : left + square] = 230
    return image


def square_detector() -> nn.Module:
    """Evidence for class 1 is brightness (a blurred image, averaged); for class 0 its opposite."""
    conv = nn.Conv2d(1, 1, 3, padding=1)
    pool = nn.AdaptiveAvgPool2d(1)
    head = nn.Linear(1, 2)
    with torch.no_grad():
        conv.weight.fill_(1 / 9)
        conv.bias.fill_(-0.2)  # the dark background gives nothing after the ReLU
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(inplace=True), pool, nn.Flatten(), head)


def peak(maps: np.ndarray) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in np.unravel_index(m.argmax(), m.shape)) for m in maps]


@pytest.mark.parametrize("corner", [(2, 2), (2, 22), (22, 4), (13, 13)])
def test_the_map_peaks_on_the_square_wherever_it_is(corner: tuple[int, int]) -> None:
    cam = GradCam(square_detector(), (1, SIDE, SIDE))
    assert cam.layer_name == "1"  # the ReLU: the last spatial map before the pooling
    (row, col) = peak(cam.maps(square_image(*corner)[None], [1]))[0]
    assert corner[0] <= row < corner[0] + 6 and corner[1] <= col < corner[1] + 6


def test_the_square_moves_and_the_map_moves_with_it() -> None:
    cam = GradCam(square_detector(), (1, SIDE, SIDE))
    images = np.stack([square_image(4, c) for c in (2, 10, 18, 24)])
    maps = cam.maps(images, [1] * 4)
    columns = [c for _, c in peak(maps)]
    assert columns == sorted(columns) and columns[-1] - columns[0] >= 18
    # well inside the square the map is high, far from it zero
    assert maps[0, 6, 4] > 0.5 and maps[0, 28, 28] == 0


def classifier_size(name: str) -> int:
    entry = get_entry(name, "classify")
    return max(entry.min_size or 28, 32)


@pytest.mark.parametrize("name", list_models("classify"))
def test_every_registered_classifier_gets_its_layer_found_and_maps(name: str) -> None:
    side, channels = classifier_size(name), 3 if name.startswith("efficientnet") else 1
    torch.manual_seed(0)
    net = create_model(name, in_channels=channels, num_classes=3, input_size=(side, side)).eval()
    layer_name, layer = spatial_layer(net, torch.zeros(1, channels, side, side))
    assert dict(net.named_modules())[layer_name] is layer and layer is not net
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        net(torch.zeros(1, channels, side, side))
    handle.remove()
    assert seen[0].dim() == 4 and seen[0].shape[2] * seen[0].shape[3] > 1  # a spatial map, before pooling
    flags = [getattr(m, "inplace", None) for m in net.modules()]
    images = np.random.default_rng(0).integers(0, 256, (3, side, side, channels), dtype=np.uint8)
    maps = GradCam(net, (channels, side, side), (0.5, 0.5)).maps(images, [0, 1, 2])
    assert maps.shape == (3, side, side) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    assert [getattr(m, "inplace", None) for m in net.modules()] == flags  # a copy is explained, not the model


def test_the_layer_is_the_last_spatial_one_of_the_real_networks() -> None:
    # At these sizes: resnet's residual stages, efficientnet's 1x1 head convolution (7x7 at 224), and
    # seed-cnn's last pooled ReLU (its last convolution leaves 1x1 of a 150x150 image).
    found = {
        name: spatial_layer(create_model(name, in_channels=1, num_classes=2, input_size=(s, s)).eval(), x)[0]
        for name, s in (("resnet-small", 64), ("efficientnet-lite0", 64), ("seed-cnn", 150))
        for x in [torch.zeros(1, 1, s, s)]
    }
    assert found == {"resnet-small": "stages", "efficientnet-lite0": "head_conv", "seed-cnn": "7"}


def test_explain_draws_the_overlays_of_evaluate_and_predict(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])  # untrained: it gets about half wrong
    data = make_class_folders(tmp_path / "test", per_class=3)
    ev = evaluate(run, data, config=EvaluateConfig(explain=True)).evaluation
    assert (ev.preds != ev.targets).any()
    overlay = ev.directory / "figures" / "misclassified_gradcam.png"
    assert Image.open(overlay).size[0] > 100
    gallery = run / "figures" / "predictions.png"
    predict(run, [data], run / "predictions_unlabeled.csv", PredictConfig(explain=True), gallery=gallery)
    assert (run / "figures" / "predictions_gradcam.png").exists()
    write_report(run)
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "Grad-CAM of the predicted class" in page


def test_the_command_line_takes_explain(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", ["dark", "light"])
    data = make_class_folders(tmp_path / "new", per_class=2)
    result = cli("predict", run, data, "--csv", tmp_path / "p.csv", "--explain")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p_gradcam.png").exists() and (tmp_path / "p.png").exists()
    result = cli("predict", run, data, "--csv", tmp_path / "q.csv")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "q_gradcam.png").exists()


@pytest.mark.slow
def test_a_trained_network_looks_at_the_square(tmp_path: Path) -> None:
    # resnet-small trained to tell a bright square from none: the maps of held-out squares peak on the
    # square (Grad-CAM's claim, on a registered classifier). A few dozen small batches suffice to
    # classify held-out images; the accuracy is asserted so that the network is a trained one.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        labels = rng.integers(0, 2, n)
        corners = rng.integers(0, SIDE - 6, (n, 2))
        blank = np.full((SIDE, SIDE, 1), 20, np.uint8)
        images = np.stack([square_image(*c) if y else blank for c, y in zip(corners, labels, strict=True)])
        noisy = np.clip(images + rng.integers(-15, 16, images.shape), 0, 255).astype(np.uint8)
        return torch.from_numpy(noisy).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(labels), corners

    net = create_model("resnet-small", in_channels=1, num_classes=2, input_size=(SIDE, SIDE))
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(80):
        x, y, _ = batch(16)
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    x, y, corners = batch(64)
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, accuracy  # an untrained network's maps may peak on the square too
    keep = (y == 1).numpy()
    images = (x[keep] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    maps = GradCam(net, (1, SIDE, SIDE)).maps(images, [1] * len(images))
    found = zip(peak(maps), corners[keep], strict=True)
    near = [c[0] - 2 <= r < c[0] + 8 and c[1] - 2 <= q < c[1] + 8 for (r, q), c in found]
    assert np.mean(near) >= 0.8, np.mean(near)


def test_a_network_without_a_spatial_map_is_refused_by_name() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 2))
    with pytest.raises(ConfigError, match=r"--explain.*Sequential has no layer with a spatial output"):
        GradCam(flat, (1, SIDE, SIDE))


@pytest.mark.slow
def test_train_explain_draws_the_final_evaluations_overlays(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "data" / "train", per_class=8, size=28)
    make_class_folders(tmp_path / "data" / "test", {"dark": 120, "light": 130}, per_class=4, size=28)  # hard
    args = ("--model", "resnet-small", "--size", "28", "--epochs", "1", "--threads", "1")
    result = cli("train", tmp_path / "data", *args, "--explain", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    wrong = [r for r in read_csv(tmp_path / "run" / "predictions.csv") if r["true"] != r["predicted"]]
    assert wrong and (tmp_path / "run" / "figures" / "misclassified_gradcam.png").exists()
    assert "Grad-CAM of the predicted class" in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
