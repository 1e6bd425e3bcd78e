"""Several processes: torchrun with gloo on the CPU, disjoint shares per epoch, same accuracy as one process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pixlearn.classify.training.inputs import epoch_batches
from pixlearn.classify.training.loop import TrainConfig, TrainResult, train
from pixlearn.core import distributed
from pixlearn.core.storage import rundir

TORCHRUN = Path(sys.executable).with_name("torchrun")
# The run both launches share: 140 training and 40 test photos (faces / not faces), 28x28 grey.
ARGS = [
    "--size", "28", "--color", "grayscale", "--epochs", "4", "--lr", "3e-3",
    "--optimizer", "adamw", "--schedule", "onecycle", "--seed", "0", "--val-split", "0",
]  # fmt: skip  # --val-split 0: every train/ file is trained on, test/ validates (the seed's pipeline)
GLOBAL_BATCH = 16  # images per optimiser step: 16 in one process, 8 in each of two


def config_of(batch_size: int, epochs: int = 4) -> TrainConfig:
    return TrainConfig(
        model="resnet-small", size=28, color="grayscale", epochs=epochs, batch_size=batch_size, lr=3e-3,
        optimizer="adamw", schedule="onecycle", seed=0, val_split=0.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pixlearn.classify.demo import make_faces_data

    return make_faces_data(tmp_path_factory.mktemp("faces") / "data")


@pytest.fixture(scope="module")
def single(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The run of one process that the launches are held against, trained once for the module: its test
    accuracy is the reference, and its checkpoint is the one resumed under two processes."""
    with pytest.MonkeyPatch.context() as patch:
        # Figures and evaluation files take much of a small run's time; neither use of the run reads them.
        patch.setattr("pixlearn.classify.evaluation.interpretation.write_evaluation", lambda *a, **k: None)
        return train(faces, tmp_path_factory.mktemp("single") / "run", config_of(GLOBAL_BATCH))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m pixlearn ...` on this machine, gloo, a free port."""
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed beside this Python")
    command = [
        str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        "-m", "pixlearn", *args,
    ]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=timeout)


def shares(folder: Path) -> dict[int, list[list[str]]]:
    """Rank -> the files it trained on, one list per epoch (from PIXLEARN_DEBUG_SHARDS)."""
    found = {}
    for rank in (0, 1):
        lines = (folder / f"rank{rank}.jsonl").read_text().splitlines()
        found[rank] = [json.loads(line)["paths"] for line in lines]
    return found


# ---------------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("n", [140, 23])
def test_epoch_batches_give_each_rank_a_disjoint_share_reshuffled_per_epoch(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = {}
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's environment; no process group is needed to cut shares
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        orders[rank] = [torch.cat(list(epoch_batches(n, 8, epoch, seed=0))).tolist() for epoch in (0, 1)]
    for epoch in (0, 1):
        a, b = orders[0][epoch], orders[1][epoch]
        assert len(a) == len(b) == -(-n // 2)
        assert set(a) | set(b) == set(range(n))
        # DistributedSampler pads an odd count by repeating one index; otherwise no overlap at all
        assert len(set(a) & set(b)) == n % 2
    assert orders[0][0] != orders[0][1]


def test_rank_and_world_size_are_one_pair_before_any_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain process is rank 0 of 1 even where a stray RANK is set: it writes the run and takes every image.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")
    assert (distributed.rank(), distributed.world_size()) == (0, 1) and distributed.is_main_process()
    assert [b.tolist() for b in epoch_batches(3, 8, epoch=0, seed=0, shuffle=False)] == [[0, 1, 2]]
    # Under torchrun, before the group is joined (and after it is left), both come from its environment.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert (distributed.rank(), distributed.world_size()) == (1, 2) and not distributed.is_main_process()


def test_without_torchrun_the_session_is_a_plain_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as device:
        assert device == torch.device("cpu")
        assert not torch.distributed.is_initialized()
        assert distributed.is_main_process() and distributed.world_size() == 1
        assert distributed.on_main(lambda: 42) == 42


def test_world_size_without_a_rendezvous_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"), distributed.session("cpu"):
        pass


def test_ranks_meet_before_the_group_is_torn_down_but_not_after_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A rank leaving while another still reads the last broadcast can make gloo abort it: on a clean
    # exit every rank waits at a barrier first; after an error (collectives may be unmatched) it does not.
    calls: list[str] = []
    monkeypatch.setattr(distributed, "init", lambda device: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(distributed, "teardown", lambda: calls.append("teardown"))
    with distributed.session("cpu"):
        pass
    assert calls == ["barrier", "teardown"]
    calls.clear()
    with pytest.raises(KeyError), distributed.session("cpu"):
        raise KeyError("a rank failed")
    assert calls == ["teardown"]


def test_the_wait_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout().total_seconds() == 30 * 60
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    assert distributed.timeout().total_seconds() == 90 * 60
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="PIXLEARN_DIST_TIMEOUT_MIN"):
        distributed.timeout()


# ---------------------------------------------------------------------------------- torchrun, end to end


@pytest.mark.slow
def test_two_processes_train_disjoint_shares_to_the_accuracy_of_one(
    faces: Path, single: TrainResult, tmp_path: Path
) -> None:
    out, shard_dir = tmp_path / "ddp", tmp_path / "shards"
    done = torchrun(
        ["train", str(faces), "--out", str(out), "--batch-size", str(GLOBAL_BATCH // 2), *ARGS],
        env={distributed.DEBUG_SHARDS_ENV: str(shard_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Run written to") == 1  # only rank 0 prints
    metrics = rundir.read_json(out / "metrics.json")
    assert metrics["epochs_run"] == 4 and metrics["test_images"] == 40

    seen = shares(shard_dir)
    assert len(seen[0]) == len(seen[1]) == 4
    train_files = {str(p) for p in (faces / "train").rglob("*.png")}
    for epoch in range(4):
        a, b = seen[0][epoch], seen[1][epoch]
        assert not set(a) & set(b), f"epoch {epoch}: both ranks trained on the same files"
        assert set(a) | set(b) == train_files and len(a) == len(b) == 70
    assert seen[0][0] != seen[0][1]  # reshuffled every epoch

    ddp_accuracy, one_accuracy = metrics["test_accuracy"], single.metrics.test_accuracy
    # 40 test images: one image is 2.5 points; both learn the task, and agree within a few images.
    assert one_accuracy >= 0.75 and ddp_accuracy >= 0.75
    assert abs(ddp_accuracy - one_accuracy) <= 0.125, (ddp_accuracy, one_accuracy)


@pytest.mark.slow
def test_a_checkpoint_of_one_process_resumes_under_two_with_a_cache(
    faces: Path, single: TrainResult, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(single.run.path, out)  # the shared run stays as it was
    (out / "metrics.json").unlink()  # as if stopped after epoch 4 of 5
    # Resumed from memory into the cached streaming mode: rank 0 builds the cache, rank 1 maps it.
    cache = tmp_path / "cache"
    done = torchrun(["train", str(faces), "--out", str(out), "--resume", "--epochs", "5", "--cache", str(cache)])
    assert done.returncode == 0, done.stderr[-3000:]
    history = rundir.read_csv(out / "history.csv")
    assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4, 5]
    assert rundir.read_json(out / "metrics.json")["epochs_run"] == 5
    assert len(list(cache.glob("*.npy"))) == 2  # train and test


@pytest.mark.slow
def test_a_bad_out_stops_every_rank_with_the_message(faces: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the run directory should be")
    done = torchrun(["train", str(faces), "--out", str(blocker), *ARGS], timeout=120)
    assert done.returncode != 0
    # Rank 0 fails in prepare and tells rank 1, which stops too instead of waiting out the 30-minute
    # timeout (the 120 s limit above); torchrun may end rank 1 before it prints, so one message suffices.
    assert "exists and is not a directory" in done.stderr
