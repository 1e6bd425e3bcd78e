"""Untrusted files and URLs: tampered models are refused unexecuted; downloads are bounded."""

from __future__ import annotations

import http.server
import io
import json
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pixlearn.classify.config import PredictConfig
from pixlearn.classify.inference.prediction import Predictor
from pixlearn.core.errors import ImageError, RunError
from pixlearn.core.imaging.images import fetch_url, open_image
from pixlearn.core.storage import checkpoints, weights
from pixlearn.core.storage.rundir import RunDir
from pixlearn.models.loading import load_model
from tests.corpus import Payload, fake_run

# ---------------------------------------------------------------------------------- tampered models


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return fake_run(tmp_path / "run", ["dark", "light"])


def rewrite_spec(run: Path, **changes) -> None:
    spec = json.loads((run / "model.json").read_text())
    spec.update(changes)
    (run / "model.json").write_text(json.dumps(spec))


def test_the_untouched_run_loads(run: Path) -> None:
    model, spec = load_model(run)
    assert spec.classes == ("dark", "light") and not model.training


def test_payload_is_live_so_the_tests_below_can_fail(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_renamed_to_safetensors_is_refused_and_never_run(run: Path, tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    state = {"weights": torch.zeros(2), "payload": Payload(marker)}
    (run / "model.safetensors").write_bytes(pickle.dumps(state, protocol=protocol))
    with pytest.raises(RunError, match="model.safetensors"):
        load_model(run)
    with pytest.raises(RunError):
        Predictor.from_run(run, PredictConfig(device="cpu"))
    assert not marker.exists()


def test_torch_save_file_renamed_is_refused_and_never_run(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    torch.save({"payload": Payload(marker)}, run / "model.safetensors")
    with pytest.raises(RunError, match="pickle"):
        load_model(run)
    assert not marker.exists()


def test_pickled_checkpoint_is_refused_and_never_run(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    directory = RunDir(run)
    directory.checkpoint.write_bytes(pickle.dumps(Payload(marker)))
    directory.checkpoint_spec.write_text(json.dumps({"format": checkpoints.CHECKPOINT_FORMAT, "param_groups": []}))
    model, _ = load_model(run)
    with pytest.raises(RunError, match="checkpoint.safetensors"):
        checkpoints.load_checkpoint(directory, model, torch.optim.Adam(model.parameters()))
    assert not marker.exists()


def test_pickle_in_place_of_the_json_spec_is_refused(run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    (run / "model.json").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(RunError, match="model.json"):
        load_model(run)
    assert not marker.exists()


def test_wrong_shapes_are_refused(run: Path) -> None:
    weights = load_file(str(run / "model.safetensors"))
    key = "head.weight"
    weights[key] = torch.zeros(5, weights[key].shape[1])
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(RunError, match=r"'head.weight' has shape \(5, 128\)"):
        load_model(run)


def test_missing_tensors_are_refused(run: Path) -> None:
    weights = load_file(str(run / "model.safetensors"))
    del weights["head.bias"]
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(RunError, match="missing.*head.bias"):
        load_model(run)


def test_integer_tensor_in_place_of_weights_is_refused(run: Path) -> None:
    weights = load_file(str(run / "model.safetensors"))
    weights["head.weight"] = weights["head.weight"].to(torch.int64)
    save_file(weights, str(run / "model.safetensors"))
    with pytest.raises(RunError, match="int64"):
        load_model(run)


def test_safetensors_whose_first_byte_looks_like_pickle_still_loads(tmp_path: Path) -> None:
    # The 8-byte header length may start with 0x80, pickle's first byte; it must not be refused.
    path = tmp_path / "w.safetensors"
    for pad in range(0, 400, 8):
        save_file({"w": torch.arange(3.0)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(weights.read_weights(path)["w"], torch.arange(3.0))


def test_unknown_model_name_is_refused(run: Path) -> None:
    rewrite_spec(run, model="os.system")
    with pytest.raises(RunError, match="os.system"):
        load_model(run)


@pytest.mark.parametrize(
    "kwargs", [{"in_channels": 1, "num_classes": 2, "input_size": [16, 16], "evil": 1}, {"num_classes": -3}]
)
def test_kwargs_that_do_not_fit_the_model_are_refused(run: Path, kwargs: dict) -> None:
    rewrite_spec(run, kwargs=kwargs)
    with pytest.raises(RunError, match="kwargs do not fit|class names for a network with -3 outputs"):
        load_model(run)


def test_garbage_and_truncated_files_are_refused(run: Path) -> None:
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match="not a valid safetensors file"):
        load_model(run)
    (run / "model.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        load_model(run)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"color": "rgb"}, "3 channel"),
        ({"color": "cmyk"}, "not grayscale or rgb"),
        ({"input_size": [32, 32]}, "differs from the network"),
        ({"classes": ["a", "b", "c"]}, "3 class names"),
    ],
)
def test_spec_that_contradicts_its_network_is_refused_at_predict_time(run: Path, changes: dict, message: str):
    rewrite_spec(run, **changes)
    with pytest.raises(RunError, match=message):
        Predictor.from_run(run, PredictConfig(device="cpu"))


# ---------------------------------------------------------------------------------- URLs


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


SLOW_RELEASE = threading.Event()  # /slow answers only once the test sets this (or after 10 s)
SLOW_ANSWERED = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def send(self, body: bytes, kind: str, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path
        if path == "/image.png":
            data = png_bytes()
            self.send(data, "image/png", len(data))
        elif path == "/slow":
            SLOW_RELEASE.wait(10)
            SLOW_ANSWERED.set()
            self.send(png_bytes(), "image/png")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(40):  # a byte every 0.05 s: no single read times out, the whole does
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/loop":
            self.redirect("/loop")  # the same URL again
        elif path.startswith("/chain/"):
            self.redirect(f"/chain/{int(path.rsplit('/', 1)[1]) + 1}")  # a new URL every time
        elif path == "/big-declared":
            self.send(b"x" * 10, "image/png", 5000)
        elif path == "/big-undeclared":
            self.send(b"x" * 5000, "image/png")  # no length: read until close
            self.close_connection = True
        elif path == "/html":
            self.send(b"<html><body>Not found</body></html>", "text/html; charset=utf-8", 35)
        elif path == "/html-as-image":
            self.send(b"<html><body>Not found</body></html>", "image/png", 35)
        elif path == "/to-ftp":
            self.redirect("ftp://127.0.0.1/secret.png")
        elif path == "/to-file":
            self.redirect("file:///etc/hostname")
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch) -> None:
    # A proxy from the environment would send 127.0.0.1 elsewhere.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_good_url_loads(server: str) -> None:
    assert open_image(f"{server}/image.png").size == (4, 3)


def test_url_that_times_out(server: str) -> None:
    SLOW_RELEASE.clear()
    SLOW_ANSWERED.clear()
    try:
        with pytest.raises(ImageError, match="could not download.*timed out"):
            fetch_url(f"{server}/slow", timeout=0.3)
        assert not SLOW_ANSWERED.is_set()  # it gave up while the server was still silent
    finally:
        SLOW_RELEASE.set()


def test_url_that_drips_past_the_total_deadline(server: str) -> None:
    with pytest.raises(ImageError, match="longer than 0.5 s"):
        fetch_url(f"{server}/drip", timeout=0.5)


def test_a_host_name_that_resolves_slowly_is_within_the_deadline(server: str, monkeypatch) -> None:
    import socket

    real = socket.getaddrinfo

    def slow_resolver(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - getaddrinfo's signature
        time.sleep(3)
        return real("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    started = time.monotonic()
    with pytest.raises(ImageError, match="longer than 0.5 s"):
        fetch_url(server.replace("127.0.0.1", "slow-to-resolve.invalid") + "/image.png", timeout=0.5)
    assert time.monotonic() - started < 2


def test_a_proxy_that_drips_its_connect_answer_is_within_the_deadline(monkeypatch) -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:  # a proxy that answers CONNECT one byte at a time, for longer than the deadline
        conn, _ = listener.accept()
        with conn:
            for byte in b"HTTP/1.1 200 Connection established" + b"x" * 200:
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    started = time.monotonic()
    try:
        with pytest.raises(ImageError, match="longer than 0.5 s"):
            fetch_url("https://through-the-proxy.invalid/image.png", timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("path", ["/loop", "/chain/0"])
def test_url_that_redirects_forever(server: str, path: str) -> None:
    with pytest.raises(ImageError, match="too many redirects"):
        fetch_url(f"{server}{path}", timeout=2)


@pytest.mark.parametrize("path", ["/big-declared", "/big-undeclared"])
def test_url_over_the_size_limit(server: str, path: str) -> None:
    with pytest.raises(ImageError, match="1,000"):
        fetch_url(f"{server}{path}", timeout=2, max_bytes=1000)


def test_url_returning_html(server: str) -> None:
    with pytest.raises(ImageError, match="text/html, not an image"):
        fetch_url(f"{server}/html", timeout=2)
    with pytest.raises(ImageError, match="not an image file"):
        open_image(f"{server}/html-as-image")


@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://127.0.0.1/x.png", "data:image/png;base64,AAAA"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(ImageError, match="only http and https"):
        fetch_url(url)


@pytest.mark.parametrize("path", ["/to-ftp", "/to-file"])
def test_redirects_to_other_schemes_are_refused(server: str, path: str) -> None:
    with pytest.raises(ImageError, match="redirected to a .* URL; only http and https"):
        fetch_url(f"{server}{path}", timeout=2)
