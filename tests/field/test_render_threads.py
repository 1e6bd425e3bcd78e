"""A render follows the machine's load band by band (issue 29): another process arriving halfway takes
a thread away, the image stays the same bytes whatever the count, and an explicit count is kept.
The load is faked (`devices.busy_cores`): no assertion depends on what else runs on the machine."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from pixlearn.core import devices
from pixlearn.core.devices import LoadFollower, own_running_threads
from pixlearn.field.rendering import renderer as rendering_module
from pixlearn.field.rendering.renderer import render_array
from pixlearn.models.registry import create_model

FIELD_MODELS = ("seed-linear", "seed-deep", "siren", "fourier", "hashgrid")


@pytest.fixture
def two_cores(monkeypatch):
    """torch on two threads, as a 2-core machine gives it, with no OMP_NUM_THREADS choice in the way."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def field_model(name: str) -> torch.nn.Module:
    torch.manual_seed(3)
    model = create_model(name, "field", in_features=2, out_features=3).eval()
    with torch.no_grad():  # away from the initialisation's near-constant output, so every pixel differs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


@pytest.mark.parametrize("name", FIELD_MODELS)
def test_a_render_is_the_same_bytes_on_one_thread_and_on_two(name) -> None:
    model = field_model(name)
    height, width = 96, 700  # 700 wide: several bands of rows, each split across the threads
    with devices.thread_count(1):
        one = render_array(model, height, width, "normalized")
    with devices.thread_count(2):
        two = render_array(model, height, width, "normalized")
    assert len(np.unique(one)) > 20
    assert np.array_equal(one, two)


def test_a_render_drops_a_thread_when_another_process_arrives_halfway(two_cores, monkeypatch) -> None:
    load = iter([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(devices, "busy_cores", lambda **_: next(load))
    used: list[int] = []

    class Recording(LoadFollower):
        def __call__(self) -> int:
            self.decided_at = -float("inf")  # decide before every band, for the test
            used.append(super().__call__())
            return used[-1]

    monkeypatch.setattr(rendering_module, "LoadFollower", Recording)
    model = field_model("seed-deep")
    image = render_array(model, 400, 640, "normalized", threads=0)  # 640 wide: 102 rows a band, 4 bands
    assert used == [2, 2, 1, 1]
    assert torch.get_num_threads() == 2  # the caller's count comes back
    with devices.thread_count(2):
        assert np.array_equal(image, render_array(model, 400, 640, "normalized"))


def test_an_explicit_count_or_omp_num_threads_is_kept(two_cores, monkeypatch) -> None:
    monkeypatch.setattr(devices, "busy_cores", lambda **_: 1.0)
    with LoadFollower(requested=2) as follower:
        assert follower() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with LoadFollower() as follower:
        assert follower() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    with LoadFollower() as follower:
        assert follower() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_the_load_is_sampled_at_most_every_interval(two_cores, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(devices, "busy_cores", lambda **_: calls.append(1) or 0.0)
    with LoadFollower(every_s=3600) as follower:
        for _ in range(50):
            follower()
    assert len(calls) == 1


def test_this_process_s_own_busy_threads_are_not_counted_as_other_work() -> None:
    stop = threading.Event()
    a, b = torch.randn(300, 300), torch.randn(300, 300)

    def spin() -> None:
        with torch.inference_mode():
            while not stop.is_set():
                a @ b  # releases the GIL: this thread stays runnable beside the caller

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        seen = max(own_running_threads() for _ in range(200))
    finally:
        stop.set()
        worker.join()
    assert seen >= 2
    assert own_running_threads() >= 1  # the caller itself
