"""Several processes, one training run: torch.distributed set up from torchrun's environment.

torchrun starts one process per device and hands each its place in environment variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). `session` reads them, joins the
process group (gloo on the CPU, nccl on CUDA), picks this process's device and leaves the
group at the end. Run without torchrun, it does nothing and training stays single-process.

    >>> from pixlearn.core.distributed import session
    >>> with session("cpu") as device:      # a plain process: no group, just the device
    ...     device
    device(type='cpu')

Launch, on one machine with 4 processes:

    torchrun --nproc_per_node=4 -m pixlearn train data --out runs/city
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from pixlearn.core.devices import resolve_device
from pixlearn.core.errors import ConfigError

T = TypeVar("T")

# A rank that waits longer than this for the others (a crashed peer, a lost node) fails with an
# error instead of hanging for ever. Rank 0 alone checks every file of a --stream run first while
# the others wait, which takes minutes on big folders: raise it there (minutes, an environment
# variable so that every process of a torchrun launch reads the same value).
TIMEOUT_ENV = "PIXLEARN_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 30.0
DEBUG_SHARDS_ENV = "PIXLEARN_DEBUG_SHARDS"  # a folder: each rank writes the files it trained on per epoch


def launched() -> bool:
    """True in a process started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's place in the run (0 to world_size() - 1): the process group's once it is joined;
    before (and after) that, torchrun's RANK, so that only rank 0 prints; 0 in a plain process, even
    where a stray RANK is set (without WORLD_SIZE > 1 there is no one to share with)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    """How many processes share the run: the process group's once it is joined, else torchrun's
    WORLD_SIZE, else 1. With `rank()` it is the one pair every share of an epoch is cut by."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1")) if launched() else 1


def is_main_process() -> bool:
    """Rank 0 (or a plain process): the one that writes files and prints."""
    return rank() == 0


def process_device(name: str = "auto") -> torch.device:
    """The device of this process: under torchrun, `auto` and `cuda` mean cuda:LOCAL_RANK.

    An explicit `cuda:N` is kept as given; the CPU is shared by every process.
    """
    device = resolve_device(name)
    if device.type == "cuda" and launched() and name in ("auto", "cuda"):
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init(device: torch.device) -> bool:
    """Join the process group torchrun describes; True when this call created it."""
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run one process instead of torchrun")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    # 1x1 convolutions' gradients differ from DDP's buckets only in the strides of size-1
    # dimensions (the same bytes), yet each process warns about it once; say nothing.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    dist.init_process_group(backend, timeout=timeout(), device_id=device if device.type == "cuda" else None)
    return True


def timeout() -> datetime.timedelta:
    """How long a process waits for the others: $PIXLEARN_DIST_TIMEOUT_MIN minutes, 30 by default."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_MIN))
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if minutes <= 0:
        raise ConfigError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of minutes")
    return datetime.timedelta(minutes=minutes)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device_name: str = "auto") -> Iterator[torch.device]:
    """Join the process group for the duration of the block (if launched) and yield the device."""
    device = process_device(device_name)
    created = init(device)
    try:
        yield device
        if created:
            # Every rank leaves together: a rank that tears its connections down while another is
            # still reading the last broadcast can make gloo abort that rank ("terminate called
            # without an active exception"), failing a run that finished.
            dist.barrier()
    finally:
        if created:
            teardown()


def broadcast(obj: T) -> T:
    """Rank 0's `obj` on every process (a picklable value made by this package, never user data)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gathered(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor concatenated (dim 0) over every process's share, in rank order; the tensors
    themselves in a single process. For figures that need every row at once (a ranking)."""
    if world_size() == 1:
        return tensors
    shares: list[Any] = [None] * world_size()
    dist.all_gather_object(shares, [t.cpu() for t in tensors])
    return tuple(torch.cat([share[i] for share in shares]) for i in range(len(tensors)))


def on_main(fn: Callable[[], T], error: type[Exception] = RuntimeError) -> T:
    """Run `fn` on rank 0 only and hand its result to every rank; if it raises, every rank raises.

    Without this a bad --out would stop rank 0 while the others wait for it until the timeout.
    """
    if is_main_process():
        try:
            result = fn()
        except Exception as exc:
            broadcast((False, str(exc)))
            raise
        broadcast((True, result))
        return result
    ok, value = broadcast((True, None))
    if not ok:
        raise error(value)
    return value


def record_shard(epoch: int, paths: Callable[[], list[str]]) -> None:
    """Append the files this rank trains on in `epoch` to $PIXLEARN_DEBUG_SHARDS/rank<R>.jsonl.

    Off unless the variable is set; tests use it to check that ranks see disjoint shares.
    """
    folder = os.environ.get(DEBUG_SHARDS_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"rank{rank()}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": epoch, "world": world_size(), "paths": paths()}, allow_nan=False) + "\n")


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)
