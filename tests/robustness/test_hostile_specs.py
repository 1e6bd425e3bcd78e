"""Hostile specs and hostile servers: refused at once, in bounded memory and time, with one error line.

A tampered model.json (or weights file) claiming a huge input, image or network is refused before
anything is built: by the spec's limits (core.spec), the weights file's size and header, and a
build on the meta device compared with the header. A server that drips bytes, sends malformed
headers or status lines, or closes early gives an ImageError naming the URL within the download's
one deadline. Every hostile case is built here: tampered copies of real tiny runs, raw-socket
servers on 127.0.0.1 that stop themselves.
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pixlearn.classify.config import TrainConfig
from pixlearn.classify.data.folders import LabelRule, find_splits
from pixlearn.cli import app
from pixlearn.core.errors import ConfigError, DataError, ImageError, RunError
from pixlearn.core.imaging import downloads
from pixlearn.core.storage.spec import (
    MAX_CLASSES,
    MAX_FIELD_CHANNELS,
    MAX_FIELD_PIXELS,
    MAX_FIELD_SIDE,
    MAX_INPUT_SIDE,
    MAX_SPEC_BYTES,
    MAX_WEIGHT_BYTES,
    MAX_WEIGHT_HEADER_BYTES,
)
from pixlearn.field.config import FitConfig
from pixlearn.field.fit import fit_image
from pixlearn.models.loading import load_model
from pixlearn.models.registry import create_model, describe_models
from tests.corpus import fake_run
from tests.hostile import tried

HANG_S = 10  # a call still running after this long is hanging (a hang check, not a speed threshold)
runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_torch_thread", "cli_built_once")


def bounded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn's result or exception, from a thread given HANG_S seconds; still running then fails the test."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {HANG_S} s: it hangs"
    return outcome


def one_error_line(result: Any) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


# ---------------------------------------------------------------------------------- tampered specs


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, figures_off) -> dict[str, Path]:
    """Real tiny runs, built once: a classifier, a seed-small fit and a siren fit (without figures: the
    tampering is in model.json and the weights, and a report shows a fit's figures only when present)."""
    root = tmp_path_factory.mktemp("templates")
    image = (np.indices((12, 12)).sum(0) * 10).astype(np.uint8)
    made = {"classify": fake_run(root / "classify", ["dark", "light"])}
    with figures_off():
        for name in ("seed-small", "siren"):
            made[name] = fit_image(image, root / name, FitConfig(model=name, steps=5, seed=0)).run.path
    return made


def edit_spec(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        spec = json.loads((run / "model.json").read_text())
        change(spec)
        (run / "model.json").write_text(json.dumps(spec))

    return apply


def input_size(side: int) -> Callable[[Path], None]:
    return edit_spec(lambda s: (s.update(input_size=[side, side]), s["kwargs"].update(input_size=[side, side])))


def classes(n: int) -> Callable[[Path], None]:
    return edit_spec(lambda s: (s.update(classes=[f"c{i}" for i in range(n)]), s["kwargs"].update(num_classes=n)))


def image(**sizes: int) -> Callable[[Path], None]:
    def change(spec: dict) -> None:
        spec["image"].update(sizes)
        if "channels" in sizes:
            spec["kwargs"]["out_features"] = sizes["channels"]

    return edit_spec(change)


def kwargs(**values: int) -> Callable[[Path], None]:
    return edit_spec(lambda s: s["kwargs"].update(values))


def huge_spec(run: Path) -> None:
    spec = json.loads((run / "model.json").read_text())
    spec["classes"] = ["a" * (MAX_SPEC_BYTES // 2), "b" * (MAX_SPEC_BYTES // 2)]
    (run / "model.json").write_text(json.dumps(spec))


def sparse_weights(run: Path) -> None:
    # A valid header at the start, then a hole: the file claims more than the limit, costing no disk.
    with open(run / "model.safetensors", "r+b") as f:
        f.truncate(MAX_WEIGHT_BYTES + 1)


def huge_header(run: Path) -> None:
    (run / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b'{"w": ' + b" " * 64)


# (template, tampering, the file the error names, what the message must say)
CLAIMS: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    "input 30000x30000": ("classify", input_size(30_000), "model.json", f"{MAX_INPUT_SIDE:,} pixels a side"),
    "input 4000x4000": ("classify", input_size(4000), "model.json", f"{MAX_INPUT_SIDE:,} pixels a side"),
    "5000 classes": ("classify", classes(5000), "model.json", f"limit of {MAX_CLASSES:,}"),
    "a 4 MiB model.json": ("classify", huge_spec, "model.json", f"limit of {MAX_SPEC_BYTES:,} bytes"),
    "weights over 2 GiB": ("classify", sparse_weights, "model.safetensors", f"limit of {MAX_WEIGHT_BYTES:,} bytes"),
    "a 1 TiB header": ("classify", huge_header, "model.safetensors", f"limit of {MAX_WEIGHT_HEADER_BYTES:,} bytes"),
    "image 20000x20000": ("seed-small", image(width=20_000, height=20_000), "model.json", f"{MAX_FIELD_PIXELS:,}"),
    "image 100000 wide": ("seed-small", image(width=100_000, height=1), "model.json", f"{MAX_FIELD_SIDE:,} pixels"),
    "50 channels": ("seed-small", image(channels=50), "model.json", f"limit of {MAX_FIELD_CHANNELS}"),
    "siren hidden 20000": ("siren", kwargs(hidden=20_000), "model.json", "needs (20000, 2)"),
    "siren hidden 10^12": ("siren", kwargs(hidden=10**12), "model.json", "model.json"),
    "siren 10^8 layers": ("siren", kwargs(layers=10**8), "model.json", "more than 36 tensors"),
}

# Claims that the spec's own check passes (the weights file, or the network's shapes, refuse them).
SPEC_WITHIN_LIMITS = {c for c in CLAIMS if c.startswith("siren") or CLAIMS[c][2] == "model.safetensors"}


@pytest.fixture
def tampered(templates: dict[str, Path], tmp_path: Path) -> Callable[[str], Path]:
    def make(claim: str) -> Path:
        template, tamper, _, _ = CLAIMS[claim]
        run = Path(shutil.copytree(templates[template], tmp_path / claim.replace(" ", "_")))
        tamper(run)
        return run

    return make


def test_the_untampered_runs_load(templates: dict[str, Path]) -> None:
    for run in templates.values():
        assert load_model(run)[0] is not None


@pytest.mark.parametrize("entry", describe_models(), ids=lambda e: e.name)
def test_every_registered_model_builds_on_the_meta_device_with_its_real_shapes(entry: Any) -> None:
    # load_model compares the header with a build on the meta device: a constructor that cannot
    # run there (`.item()`, numpy on a tensor) would make every saved run of that model unloadable.
    if entry.task == "classify":
        args = {"in_channels": 3, "num_classes": 4, "input_size": (entry.default_size or 64,) * 2}
    else:
        args = {"in_features": 2, "out_features": 3}
    with torch.device("meta"):
        meta = create_model(entry.name, **args).state_dict()
    real = create_model(entry.name, **args).state_dict()
    assert {k: tuple(t.shape) for k, t in meta.items()} == {k: tuple(t.shape) for k, t in real.items()}
    assert all(t.is_meta for t in meta.values())


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_each_oversized_claim_is_refused_before_anything_is_built(claim: str, tampered: Callable) -> None:
    _, _, names, says = CLAIMS[claim]
    tried("tampered model specs and weights")
    with pytest.raises(RunError) as info:
        load_model(tampered(claim))
    assert names in str(info.value) and says in str(info.value)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_every_command_reading_the_run_exits_2_with_one_error_line(
    claim: str, tampered: Callable, tmp_path: Path
) -> None:
    run = tampered(claim)
    template, _, _, says = CLAIMS[claim]
    if template == "classify":
        Image.new("L", (20, 20), 128).save(tmp_path / "new.png")
        reading = [["predict", str(run), str(tmp_path / "new.png"), "--csv", str(tmp_path / "p.csv")]]
    else:
        reading = [["render", str(run), "--out", str(tmp_path / "r.png")]]
    reading += [["summary", str(run)]]
    for args in reading:
        assert says in one_error_line(runner.invoke(app, args))
    report = runner.invoke(app, ["report", str(run)])
    if claim in SPEC_WITHIN_LIMITS:
        # model.json itself is within its limits, the weights are what do not fit: the report is
        # written and says why the model cannot be rebuilt for its summary.
        assert report.exit_code == 0, report.output
        assert "could not be rebuilt" in (run / "report.html").read_text()
    else:
        assert says in one_error_line(report)
    assert not (tmp_path / "r.png").exists() and not (tmp_path / "p.csv").exists()


MEASURE = """
import resource, sys
from pixlearn.core.errors import RunError
from pixlearn.models.loading import load_model
from pixlearn.models.registry import create_model, describe_models
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for run in sys.argv[1:]:
    try:
        load_model(run)
        print("LOADED", run)
    except RunError:
        pass
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_refusing_every_claim_keeps_peak_memory_bounded(tampered: Callable) -> None:
    # In a fresh process, so the suite's own memory does not count: peak RSS after refusing all of
    # them minus peak RSS after the imports (ru_maxrss is in KiB on Linux).
    paths = [str(tampered(claim)) for claim in CLAIMS]
    done = subprocess.run([sys.executable, "-c", MEASURE, *paths], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED" not in done.stdout, done.stdout
    growth_kb = int(done.stdout.split("GROWTH_KB")[1])
    assert growth_kb < 200 * 1024, f"peak memory grew by {growth_kb / 1024:.0f} MiB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0  # the measure exists on this system


def test_fitting_an_image_over_the_spec_limit_is_refused_before_it_starts(tmp_path: Path) -> None:
    # Every run a fit writes must load again, so the fit refuses what loading would.
    tiny = np.zeros((2, 2), dtype=np.uint8)
    config = FitConfig(model="seed-linear", steps=1, size=(MAX_FIELD_SIDE + 1, 1))
    with pytest.raises(ImageError, match=f"{MAX_FIELD_SIDE:,} pixels a side"):
        fit_image(tiny, tmp_path / "run", config)
    assert not (tmp_path / "run").exists()


def test_training_refuses_an_input_side_over_the_spec_limit() -> None:
    with pytest.raises(ConfigError, match=f"size \\(--size\\): must be at most {MAX_INPUT_SIDE}"):
        TrainConfig(model="resnet-small", size=MAX_INPUT_SIDE + 1).resolved()


def test_training_refuses_more_classes_than_the_spec_limit(tmp_path: Path) -> None:
    pixel = tmp_path / "pixel.png"
    Image.new("L", (1, 1)).save(pixel)
    for i in range(MAX_CLASSES + 1):
        (tmp_path / "data" / f"c{i:04d}").mkdir(parents=True)
        shutil.copyfile(pixel, tmp_path / "data" / f"c{i:04d}" / "x.png")
    with pytest.raises(DataError, match=f"{MAX_CLASSES + 1:,} classes, over the limit of {MAX_CLASSES:,}"):
        find_splits(tmp_path / "data", LabelRule())


# ---------------------------------------------------------------------------------- hostile servers


class RawServer:
    """A server on 127.0.0.1 answering up to `connections` connections with `script(conn, stop)`:
    raw bytes, as malformed as the test likes. It stops itself: accept() waits in short steps for at
    most HANG_S, scripts' loops are bounded and their waits end as soon as `stop` is set."""

    def __init__(self, script: Callable[[socket.socket, threading.Event], None], connections: int = 1):
        self.script, self.connections = script, connections
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/image.png"
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(HANG_S)
        self.listener.close()

    def _serve(self) -> None:
        served = 0
        for _ in range(HANG_S * 10):
            if self.stop.is_set() or served == self.connections:
                return
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            served += 1
            with conn:
                conn.settimeout(HANG_S)
                try:
                    self._read_request(conn)
                    self.script(conn, self.stop)
                except OSError:
                    pass  # the client gave up and closed the connection: what the test is after

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65_536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk


def sends(data: bytes) -> Callable:
    return lambda conn, stop: conn.sendall(data)


DRIP_EVERY_S = 0.2
DRIP_DEADLINE_S = 1.0  # several drips arrive within it: each read is in time, the whole request is not
DEADLINE_S = 2.0  # for the other servers: room for the redirects' bodies on a busy machine


def drips(prefix: bytes, byte: bytes) -> Callable:
    """`prefix`, then one byte every DRIP_EVERY_S, 100 times (20 s: past the harness's HANG_S)."""

    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        for _ in range(100):
            if stop.wait(DRIP_EVERY_S):
                return
            conn.sendall(byte)

    return script


def endless_redirect_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 1000000000\r\n\r\n")
    for _ in range(200):  # 12.5 MiB of the announced gigabyte, as fast as the client takes it
        if stop.is_set():
            return
        conn.sendall(b"x" * 65_536)


OK = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
# (script, connections, what the ImageError says)
SERVERS: dict[str, tuple[Callable, int, str]] = {
    "drip in the body": (drips(OK + b"Content-Length: 1000\r\n\r\n", b"x"), 1, "timed out (took longer than 1 s)"),
    "drip in the headers": (drips(OK + b"X-Slow: ", b"a"), 1, "timed out (took longer than 1 s)"),
    "drip in the status line": (drips(b"HTTP/1.1 2", b"0"), 1, "timed out (took longer than 1 s)"),
    "200 headers": (sends(OK + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n"), 1, "100 headers"),
    "a 70 kB header line": (sends(OK + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n"), 1, "header line"),
    "a 70 kB status line": (sends(b"HTTP/1.1 200 " + b"O" * 70_000 + b"\r\n\r\n"), 1, "status line"),
    "a bad status line": (sends(b"HTTP/1.1 two-hundred OK\r\n\r\n"), 1, "status line 'HTTP/1.1 two-hundred"),
    "an HTTP/0.9 reply": (sends(b"\x89PNG\r\n\x1a\n" + bytes(range(256))), 1, "status line '\\x89PNG"),
    "terminal escapes": (sends(b"\x1b]0;owned\x07\x1b[2J\r\n\r\n"), 1, "status line '\\x1b]0;owned"),
    "no reply at all": (sends(b""), 1, "closed the connection without one"),
    "closed mid-body": (sends(OK + b"Content-Length: 1000\r\n\r\n" + b"x" * 100), 1, "after 100 of 1,000 bytes"),
    "closed mid-chunk": (sends(OK + b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 100), 1, "cut short"),
    "a bad chunk size": (sends(OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"), 1, "malformed"),
    "redirects with endless bodies": (endless_redirect_body, 6, "too many redirects"),
}


def deadline(case: str) -> float:
    return DRIP_DEADLINE_S if case.startswith("drip") else DEADLINE_S


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would send 127.0.0.1 elsewhere.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", list(SERVERS))
def test_a_hostile_server_gives_an_image_error_naming_the_url(case: str) -> None:
    script, connections, says = SERVERS[case]
    tried("hostile HTTP servers")
    with RawServer(script, connections) as server:
        outcome = bounded(downloads.fetch_url, server.url, timeout=deadline(case))
    error = outcome.get("error")
    assert isinstance(error, ImageError), outcome
    assert str(error).startswith(server.url + ": ") and says in str(error)
    assert "\n" not in str(error) and "\x1b" not in str(error) and len(str(error)) < 300


@pytest.mark.parametrize("case", list(SERVERS))
def test_pixlearn_fit_of_a_hostile_url_exits_2_with_one_error_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(downloads, "URL_TIMEOUT_S", deadline(case))  # the command line's default deadline, shortened
    script, connections, says = SERVERS[case]
    with RawServer(script, connections) as server:
        args = ["fit", server.url, "--steps", "1", "--out", str(tmp_path / "run")]
        outcome = bounded(runner.invoke, app, args)
    assert says in one_error_line(outcome["value"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://[::1/x.png", "Invalid IPv6 URL"),
        ("http://127.0.0.1:abc/x.png", "nonnumeric port"),
        ("http://exa mple.com/x.png", "control characters"),
        ("http://" + "a" * 70 + ".com/x.png", "idna"),
    ],
)
def test_a_malformed_url_gives_an_image_error(url: str, says: str) -> None:
    with pytest.raises(ImageError, match="not a valid URL") as info:
        downloads.fetch_url(url, timeout=2)
    assert str(info.value).startswith(url) and says in str(info.value)
