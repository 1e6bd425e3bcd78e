"""Where a fit's wall time goes (issue 14, item 3): phases printed and recorded, PSNR measurements
inside the time budget, SSIM's method stated when it is measured on tiles, the up-front warning for a
slow render, and the fast render paths giving the plain forward's values. No assertion on real time:
the budget tests run on a fake clock."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.cli import app
from pixlearn.core.storage.rundir import read_json
from pixlearn.field import fit as fit_module
from pixlearn.field import metrics as metrics_module
from pixlearn.field import outputs as outputs_module
from pixlearn.field import timing as phases_module
from pixlearn.field.config import FitConfig
from pixlearn.field.coords import coords_of
from pixlearn.field.fit import build_model, fit_image, fit_loop
from pixlearn.field.image import FieldImage
from pixlearn.field.metrics import psnr_from_mse, ssim, ssim_measured
from pixlearn.field.rendering import plan as plan_module
from pixlearn.field.rendering import renderer as rendering_module
from pixlearn.field.rendering import saturation as saturation_module
from pixlearn.field.rendering.renderer import Renderer, bf16_copy, predict_ids, render_array
from pixlearn.field.rendering.saturation import SaturatedTanhMlp
from pixlearn.models.registry import create_model

PHASES = ("decode", "prepare", "training", "evaluations", "render", "metrics", "writing", "report")


@pytest.fixture(scope="module")
def colour() -> np.ndarray:
    from skimage import data

    from pixlearn.field.image import load_field_image

    return load_field_image(data.astronaut(), "rgb", (20, 24)).pixels  # width 20, height 24


def fit_cli(tmp_path, image: np.ndarray, *options: str):
    """The command's output, metrics.json and log.txt."""
    photo = tmp_path / "photo.png"
    Image.fromarray(image).save(photo)
    result = CliRunner().invoke(app, ["fit", str(photo), "--out", str(tmp_path / "run"), *options])
    assert result.exit_code == 0, result.output
    return result.output, read_json(tmp_path / "run" / "metrics.json"), (tmp_path / "run" / "log.txt").read_text()


def flat(text: str) -> str:
    """`text` with Rich's line wrapping undone (every run of white space one space)."""
    return " ".join(text.split())


def test_each_phase_is_printed_and_recorded(tmp_path, colour) -> None:
    output, metrics, log = fit_cli(tmp_path, colour, "--model", "seed-linear", "--steps", "5")
    # every phase in running order; metrics.json is written before the report, so without its seconds
    assert tuple(metrics["phases"]) == PHASES[:-1]
    assert all(seconds >= 0 for seconds in metrics["phases"].values())
    assert metrics["wall_seconds"] >= max(metrics["phases"].values())
    line = next(line for line in output.splitlines() if line.startswith("seconds:"))
    for name in PHASES:
        assert name in line or (name == "evaluations" and "progress evaluations" in line), name
    assert "total" in line and "outside training" in line
    assert line in log  # the log keeps the same line
    assert "ssim_method" not in metrics and "SSIM over" not in line  # a small image: SSIM over every pixel


class FakeClock:
    """perf_counter for the fit loop: every reading moves it `tick` seconds on."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_progress_evaluations_count_inside_the_time_budget(tmp_path, colour, monkeypatch) -> None:
    clock = FakeClock(tick=0.1)
    monkeypatch.setattr(fit_module, "time", clock)
    monkeypatch.setattr(phases_module, "time", clock)
    real_probe = fit_module._PsnrProbe.__call__

    def slow_probe(self, losses):
        clock.now += 5.0  # a measurement as costly as a large image's
        return real_probe(self, losses)

    monkeypatch.setattr(fit_module._PsnrProbe, "__call__", slow_probe)
    limit = 10**6  # only the budget can end this fit
    result = fit_image(colour, tmp_path / "run", FitConfig(model="seed-linear", time="60s", steps=limit))
    metrics = result.metrics
    assert 1 < metrics.steps < limit
    assert metrics.eval_seconds >= 10.0  # at least the first and the final measurement, 5 s each
    # the budget holds the measurements (the final one kept inside it): a loop that paused its clock
    # while measuring would run 60 s of steps and end after 70 s
    assert metrics.eval_seconds <= metrics.seconds <= 60.0 + 1.0  # within one loop turn of readings
    assert metrics.step_seconds < metrics.seconds - metrics.eval_seconds + 0.1
    assert result.history[-1].seconds <= 60.0 + 1.0
    assert metrics.phases["training"] >= metrics.phases["evaluations"] >= 10.0


def test_measurements_are_spaced_by_their_own_cost(colour, monkeypatch) -> None:
    clock = FakeClock(tick=0.2)
    monkeypatch.setattr(fit_module, "time", clock)
    real_probe = fit_module._PsnrProbe.__call__

    def slow_probe(self, losses):
        clock.now += 1.0
        return real_probe(self, losses)

    monkeypatch.setattr(fit_module._PsnrProbe, "__call__", slow_probe)
    config = FitConfig(model="seed-linear", time="100s", steps=10**6, log_every=0.0).resolved()
    image = FieldImage(colour, "<array>", "RGB")
    loop = fit_loop(build_model(config, 3), image, config)
    # 1 s per measurement and log_every 0: still at most one per 19 s of the budget (plus the last)
    assert 3 <= len(loop.history) <= 100 / 20 + 2
    assert loop.eval_seconds <= 100 / 20 + 2.5


def test_ssim_method_is_stated_when_measured_on_tiles(tmp_path, colour, monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "SSIM_ALL_PIXELS", 100)
    monkeypatch.setattr(metrics_module, "SSIM_TILE", 8)
    monkeypatch.setattr(metrics_module, "SSIM_TILE_PIXELS", 4 * 64)
    output, metrics, log = fit_cli(tmp_path, colour, "--model", "seed-linear", "--steps", "5")
    method = "SSIM over 4 tiles of 8x8"
    assert metrics["ssim_method"].startswith(method) and "seeded" in metrics["ssim_method"]
    assert method in flat(output) and method in log
    # the value is the mean over those tiles of the reconstruction that was written
    reconstruction = np.asarray(Image.open(tmp_path / "run" / "reconstruction.png"))
    value, again = ssim_measured(colour, reconstruction)
    assert again == metrics["ssim_method"] and value == pytest.approx(metrics["ssim"])
    assert value != pytest.approx(ssim(colour, reconstruction), abs=1e-9)  # a subset, not every pixel


def test_ssim_tiles_are_a_fixed_draw_of_whole_tiles(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "SSIM_ALL_PIXELS", 100)
    monkeypatch.setattr(metrics_module, "SSIM_TILE", 8)
    monkeypatch.setattr(metrics_module, "SSIM_TILE_PIXELS", 10**6)  # more than the image: every tile
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (16, 24, 1), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    value, method = ssim_measured(a, b)
    tiles = [ssim(a[r : r + 8, c : c + 8], b[r : r + 8, c : c + 8]) for r in (0, 8) for c in (0, 8, 16)]
    assert value == pytest.approx(np.mean(tiles)) and method.startswith("SSIM over 6 tiles of 8x8")
    assert ssim_measured(a, b) == (value, method)  # seeded: the same tiles every time


def test_a_slow_render_is_announced_before_training(tmp_path, colour, monkeypatch) -> None:
    monkeypatch.setattr(plan_module, "render_seconds", lambda renderer, pixels: 100.0)
    output, metrics, log = fit_cli(tmp_path, colour, "--model", "seed-linear", "--time", "0.2s")
    assert "warning: rendering seed-linear" in flat(output)
    assert "more than a quarter of the 0.2 s budget" in flat(output)
    lines = log.splitlines()
    warned = next(i for i, line in enumerate(lines) if "warning: rendering" in line)
    trained = next(i for i, line in enumerate(lines) if "trained" in line)
    assert warned < trained  # up front, not after the fact
    assert metrics["render_estimate_seconds"] == 100.0


def test_a_quick_render_gives_no_warning_and_the_budget_share_is_stated(tmp_path, colour) -> None:
    output, metrics, log = fit_cli(tmp_path, colour, "--model", "seed-linear", "--time", "0.2s")
    assert "warning" not in output and "warning" not in log
    assert "will take about" in log  # the estimate is still logged
    line = next(line for line in output.splitlines() if line.startswith("seconds:"))
    assert "of the 0.2 s budget" in line and "target <= 25%" in line


def test_psnr_summed_while_rendering_is_the_psnr_over_every_pixel(tmp_path, colour) -> None:
    result = fit_image(colour, tmp_path / "run", FitConfig(model="hashgrid", steps=5))
    ids = torch.arange(24 * 20)
    prediction = predict_ids(result.model, ids, 24, 20, "normalized")
    truth = torch.from_numpy(colour.reshape(-1, 3)).float() / 255.0
    assert result.metrics.psnr == pytest.approx(psnr_from_mse(float(((prediction - truth) ** 2).mean())), abs=1e-4)


def test_the_hash_grid_renders_its_grid_as_its_forward_does() -> None:
    torch.manual_seed(0)
    model = create_model("hashgrid", "field", in_features=2, out_features=3).eval()
    with torch.no_grad():
        model.encoder.table.normal_(0.0, 1.0)  # far from the near-zero initialisation
    height, width = 37, 53
    renderer = Renderer(model, height, width, "normalized")
    assert renderer.grids is not None  # the grid path is the one under test
    grid = renderer.rows(0, height)
    with torch.no_grad():
        plain = model(coords_of(torch.arange(height * width), height, width)).clamp(0, 1)
    assert torch.allclose(grid, plain, atol=1e-5)
    assert render_array(model, height, width, "normalized").shape == (height, width, 3)


def test_the_bf16_copy_keeps_coordinate_layers_and_heads_in_float32() -> None:
    model = create_model("seed-deep", "field", in_features=2, out_features=3)
    fast = bf16_copy(model)
    assert fast is not None
    linears = [m for m in fast.modules() if isinstance(m, torch.nn.Linear)]
    fusable = rendering_module._fuses_tanh(model[0], model[1])  # a CPU build with oneDNN's fused linear
    assert fusable or not torch.backends.mkldnn.is_available()  # every build with oneDNN fuses it
    assert isinstance(fast, SaturatedTanhMlp) == fusable
    first = fast.first if fusable else fast[0]
    assert isinstance(first, rendering_module._Float32TanhLinear) == fusable
    if fusable:  # the coordinate layer and its tanh, fused
        assert [m.in_features for m in linears] == [100]
        far = coords_of(torch.arange(4096 * 4095, 4096 * 4096), 4096, 4096, "pixel")  # the last row: 4,095 stays
        with torch.no_grad():
            assert torch.allclose(first(far), torch.tanh(model[0](far)), atol=1e-5)
    else:
        assert [m.in_features for m in linears] == [2, 100]
    assert all(m.weight.dtype == torch.float32 for m in linears)
    coords = coords_of(torch.arange(64), 8, 8, "pixel")
    with torch.no_grad():
        assert torch.allclose(fast(coords).float(), model(coords), atol=0.05)
    assert bf16_copy(create_model("seed-linear", "field", in_features=2, out_features=3)) is None  # nothing to gain


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="the fused tanh layer needs oneDNN")
def test_where_the_tanh_is_saturated_pixels_are_evaluated_once_and_render_the_same() -> None:
    torch.manual_seed(0)
    model = create_model("seed-deep", "field", in_features=2, out_features=3).eval()
    with torch.no_grad():  # a fitted net's saturated tanh: +-1 in every unit but near a few lines
        model[0].weight.zero_()
        model[0].bias.copy_(torch.randn(100).sign() * 10.0)
        model[0].weight[:4] = torch.tensor([[1.0, 0.5], [-0.3, 1.0], [0.7, -0.7], [0.0, 2.0]])
        model[0].bias[:4] = torch.tensor([-30.0, -20.0, 5.0, -50.0])  # unit 3: level, active on rows 24-26
    fast = bf16_copy(model)
    assert isinstance(fast, SaturatedTanhMlp)
    every_pixel = torch.nn.Sequential(fast.first, fast.rest)
    evaluated: list[int] = []
    fast.rest.register_forward_pre_hook(lambda _m, args: evaluated.append(len(args[0])))
    height, width = 48, 64
    renderer = Renderer(fast, height, width, "pixel")
    segments = saturation_module._Segments(
        fast.a, fast.b[None, :] * renderer.ys.double().numpy()[:, None] + fast.c, renderer.xs.double().numpy()
    )
    assert {0, 1, 2} <= set(segments.count.tolist())  # saturated, one active unit and several
    shared = renderer.rows(0, height)
    rows_shared = sum(evaluated)
    evaluated.clear()
    assert torch.equal(shared, Renderer(every_pixel, height, width, "pixel").rows(0, height))
    assert sum(evaluated) == height * width and rows_shared < height * width / 2  # most rows were shared
    scattered = coords_of(torch.randperm(height * width)[:512], height, width, "pixel")  # not a grid
    with torch.no_grad():
        assert torch.equal(fast(scattered), every_pixel(scattered))
    with torch.no_grad():  # weights too large for the saturation margin: every pixel evaluated
        model[0].weight[4] = torch.tensor([1e6, 0.0])
    huge = bf16_copy(model)
    evaluated.clear()
    huge.rest.register_forward_pre_hook(lambda _m, args: evaluated.append(len(args[0])))
    as_grid = Renderer(huge, height, width, "pixel").rows(0, height)
    assert sum(evaluated) >= height * width
    assert torch.equal(
        as_grid, Renderer(torch.nn.Sequential(huge.first, huge.rest), height, width, "pixel").rows(0, height)
    )


def test_figures_of_a_large_image_are_drawn_smaller(tmp_path, colour, monkeypatch) -> None:
    monkeypatch.setattr(outputs_module, "FIGURE_PIXELS", 100)  # 480 pixels: drawn at 1/3
    drawn = []
    real = outputs_module.figures.side_by_side
    monkeypatch.setattr(outputs_module.figures, "side_by_side", lambda *a: drawn.append(a) or real(*a))
    fit_image(colour, tmp_path / "run", FitConfig(model="seed-linear", steps=3))
    assert [a.shape[:2] for a in drawn[0][:3]] == [(8, 6)] * 3  # original, reconstruction, error map
    assert Image.open(tmp_path / "run" / "reconstruction.png").size == (20, 24)  # the outputs stay full size


def test_the_report_of_a_fit_is_the_page_a_rebuild_from_its_files_gives(tmp_path, colour, monkeypatch) -> None:
    from pixlearn.report import html
    from pixlearn.report.field_page import render_field_images

    fit_cli(tmp_path, colour, "--model", "seed-linear", "--steps", "5")
    run = tmp_path / "run"
    from_files = render_field_images(run)
    pixels = {run / name: np.asarray(Image.open(run / name)) for name in ("original.png", "reconstruction.png")}
    decoded: list[str] = []
    monkeypatch.setattr(html, "open_image", lambda path: decoded.append(str(path)) or Image.open(path))
    with html.held_images(pixels):
        held = render_field_images(run)
    assert held == from_files and decoded == [str(run / "figures" / "error_map.png")]  # the two PNGs not decoded
    page = (run / "report.html").read_text(encoding="utf-8")
    assert all(cell in page for cell in from_files.split("</figure>")[:-1])  # the fit's own report has them


@pytest.mark.parametrize("shape", [(37, 53, 3), (64, 64, 1), (7, 9, 3)])
def test_ssim_is_skimages_value(shape) -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, shape), 0, 255).astype(np.uint8)
    axis = 2 if shape[2] == 3 else None
    expected = structural_similarity(
        a if axis else a[:, :, 0], b if axis else b[:, :, 0], data_range=255, channel_axis=axis
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12) and ssim(a, a) == pytest.approx(1.0)


def test_original_png_is_the_source_file_when_it_holds_exactly_the_fitted_pixels(tmp_path, colour) -> None:
    from PIL import PngImagePlugin

    from pixlearn.field.image import load_field_image

    note = PngImagePlugin.PngInfo()
    note.add_text("Comment", "kept only by a copy")  # a re-encoded PNG would never hold it
    for name, image in (("rgb", Image.fromarray(colour)), ("grey", Image.fromarray(colour[:, :, 0]))):
        source = tmp_path / f"{name}.png"
        image.save(source, pnginfo=note)
        fitted = load_field_image(source)
        assert fitted.source_png is not None and fitted.source_png.path == source
        fit_image(source, tmp_path / name, FitConfig(model="seed-linear", steps=2))
        assert (tmp_path / name / "original.png").read_bytes() == source.read_bytes()


def test_original_png_is_encoded_anew_when_the_source_is_not_exactly_the_fitted_pixels(tmp_path, colour) -> None:
    from PIL import PngImagePlugin

    from pixlearn.field.image import load_field_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated a quarter turn: the fitted image is upright
    big_text = PngImagePlugin.PngInfo()
    big_text.add_text("comment", "x" * (2**21), zip=False)  # a chunk larger than the pixels' slack
    sixteen = Image.fromarray(colour[:, :, 0].astype(np.uint16) * 257).convert("I;16")
    cases = {
        "rotated": (Image.fromarray(colour), {"exif": exif.tobytes()}, {}),
        "palette": (Image.fromarray(colour).convert("P"), {}, {}),
        "sixteen-bit": (sixteen, {}, {}),
        "made-grey": (Image.fromarray(colour), {}, {"color": "grayscale"}),
        "resized": (Image.fromarray(colour), {}, {"size": (10, 12)}),
        "large-chunk": (Image.fromarray(colour), {"pnginfo": big_text}, {}),
    }
    cases["rgb-sixteen-bit"] = (None, {}, {})  # Pillow opens it as 8-bit RGB: only its header tells
    for name, (image, save, options) in cases.items():
        source = tmp_path / f"{name}.png"
        if image is None:
            source.write_bytes(_sixteen_bit_rgb_png(colour))
        else:
            image.save(source, **save)
        config = FitConfig(model="seed-linear", steps=2, **options)
        assert load_field_image(source, config.color, config.size).source_png is None, name
        result = fit_image(source, tmp_path / name, config)
        written = tmp_path / name / "original.png"
        assert written.read_bytes() != source.read_bytes(), name
        assert np.array_equal(
            np.asarray(Image.open(written)).reshape(result.reconstruction.shape), _decoded(source, config)
        )


def _sixteen_bit_rgb_png(pixels: np.ndarray) -> bytes:
    import struct
    import zlib

    height, width, _ = pixels.shape
    wide = pixels.astype(">u2") * 257
    rows = b"".join(b"\x00" + wide[row].tobytes() for row in range(height))  # filter 0 on each row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, colour type 2 (RGB)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _decoded(source, config: FitConfig) -> np.ndarray:
    from pixlearn.field.image import load_field_image

    return load_field_image(source, config.color, config.size).pixels


def test_a_source_changed_since_decoding_is_not_copied(tmp_path, colour) -> None:
    from pixlearn.field.image import load_field_image

    source = tmp_path / "photo.png"
    Image.fromarray(colour).save(source)
    fitted = load_field_image(source)
    assert fitted.source_png is not None
    Image.fromarray(255 - colour).save(source)  # another image under the same name
    written = outputs_module.write_original(fitted, tmp_path / "original.png")
    assert np.array_equal(np.asarray(Image.open(written)), fitted.pixels)
    source.unlink()
    assert np.array_equal(
        np.asarray(Image.open(outputs_module.write_original(fitted, tmp_path / "again.png"))), fitted.pixels
    )


def test_narrow_nets_render_in_large_calls_and_wide_ones_in_cache_sized_calls() -> None:
    sizes = {}
    for name in ("seed-linear", "seed-small", "seed-deep", "siren"):
        model = create_model(name, "field", in_features=2, out_features=3)
        sizes[name] = rendering_module.pixels_per_call(model)
    narrow, wide = rendering_module.RENDER_CHUNK, rendering_module.PIXEL_CALL
    assert sizes == {"seed-linear": narrow, "seed-small": narrow, "seed-deep": wide, "siren": wide}
    renderer = Renderer(create_model("seed-small", "field", in_features=2, out_features=3), 64, 1024, "pixel")
    assert renderer.call == narrow // 1024  # rows per call


def test_the_fit_optimizer_steps_as_torch_adam_does() -> None:
    from pixlearn.core.optim import Adam

    torch.manual_seed(0)
    ours = create_model("siren", "field", in_features=2, out_features=3)
    theirs = create_model("siren", "field", in_features=2, out_features=3)
    theirs.load_state_dict(ours.state_dict())
    before = [p.detach().clone() for p in ours.parameters()]
    mine = Adam(ours.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-15)
    torchs = torch.optim.Adam(theirs.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-15)
    coords, truth = torch.rand(64, 2) * 2 - 1, torch.rand(64, 3)
    for step in range(12):
        for model, optimizer in ((ours, mine), (theirs, torchs)):
            optimizer.param_groups[0]["lr"] = 1e-3 * (1 - step / 12)  # as the fit's schedule sets it
            optimizer.zero_grad(set_to_none=True)
            ((model(coords) - truth) ** 2).mean().backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), theirs.parameters(), strict=True))
    assert all(not torch.equal(a, b) for a, b in zip(ours.parameters(), before, strict=True))  # every tensor moved


def test_a_fit_does_not_import_torch_dynamo(tmp_path, colour) -> None:
    import subprocess
    import sys

    Image.fromarray(colour).save(tmp_path / "photo.png")
    script = (
        "import sys; from pixlearn.field.fit import fit_image; from pixlearn.field.config import FitConfig; "
        f"fit_image({str(tmp_path / 'photo.png')!r}, {str(tmp_path / 'run')!r}, FitConfig(model='siren', steps=3)); "
        "print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"  # its 1.3-1.5 s import is not waited for


def test_weights_json_holds_every_array_with_its_shape_and_values(tmp_path) -> None:
    import json

    model = create_model("hashgrid", "field", in_features=2, out_features=3)
    rendering_module.write_weights(model, tmp_path)
    written = json.loads((tmp_path / "weights.json").read_text(encoding="utf-8"))
    arrays = rendering_module.weights_dict(model)
    assert written == {name: {"shape": list(v.shape), "values": v.tolist()} for name, v in arrays.items()}
    assert set(np.load(tmp_path / "weights.npz")) == set(arrays)


def test_the_render_estimate_times_seed_deep_evaluating_every_pixel(monkeypatch) -> None:
    timed = []
    monkeypatch.setattr(plan_module, "render_seconds", lambda renderer, pixels: timed.append(renderer.model) or 1.0)
    monkeypatch.setattr(plan_module, "uses_bf16", lambda *_: True)
    image = FieldImage(np.zeros((2048, 2048, 3), np.uint8), "<array>", "RGB")  # 4 MP: a bf16 render is tried
    model = create_model("seed-deep", "field", in_features=2, out_features=3)
    plan = plan_module.plan_render(
        model, image, FitConfig(model="seed-deep", steps=1).resolved(), torch.device("cpu")
    )
    assert plan.precision == "bf16" and len(timed) == 2  # float32, then the bf16 copy
    assert not isinstance(timed[1], SaturatedTanhMlp)  # where a fitted net saturates is unknown: the most
    assert plan.at_most and isinstance(bf16_copy(model), SaturatedTanhMlp)


def test_the_fit_chooses_its_threads_after_its_background_imports_have_finished(tmp_path, colour, monkeypatch) -> None:
    import threading
    import time

    started: list[threading.Thread] = []

    def slow_import(*modules: str) -> threading.Thread:  # an import outlasting the decoding
        thread = threading.Thread(target=time.sleep, args=(0.3,))
        thread.start()
        started.append(thread)
        return thread

    alive: list[bool] = []
    monkeypatch.setattr(fit_module, "import_soon", slow_import)
    monkeypatch.setattr(fit_module, "choose_threads", lambda *a, **k: alive.append(started[0].is_alive()) or 1)
    fit_image(colour, tmp_path / "run", FitConfig(model="seed-linear", steps=2))
    assert alive == [False]  # a running import thread would have counted as another job


def test_a_shrunk_error_map_is_the_block_mean_of_the_full_one_across_bands(monkeypatch) -> None:
    from pixlearn.core.imaging import figures

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (101, 77, 3), dtype=np.uint8) for _ in range(2))
    full = figures.error_levels(a, b)
    expected = full[:99, :75].reshape(33, 3, 25, 3).mean(axis=(1, 3))
    monkeypatch.setattr(figures, "ERROR_BAND_PIXELS", 500)  # bands of 2 block rows: 17 bands, the last short
    assert np.allclose(figures.error_levels(a, b, shrink=3), expected, atol=1e-5)
