"""Device choice, made once and passed down (never a hard-coded .cuda())."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator

import torch

from pixlearn.core.errors import ConfigError
from pixlearn.core.options import MAX_THREADS  # noqa: F401  (its home is core.options, beside --threads)

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cpu`, `cuda` or `cuda:N` force one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return device


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a network runs in bfloat16: `bf16` or `fp32` as asked; `auto` where the hardware has it.

    `auto` means bf16 only where the device computes it natively (AVX512-BF16/AMX CPUs, GPUs that
    support it): emulated bf16 is slower than float32. Training then runs under autocast and
    inference in bf16 weights (pixlearn.batches.inference_model).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


# glibc mallopt parameters (malloc.h) and glibc's documented defaults for the two we change
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024


def _mallopt() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl or another C library: keep its defaults
        return None


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks for reuse instead of handing them back to the system,
    process-wide, until `restore_allocator()`. Returns whether it took (False off glibc).

    Why: PyTorch takes every CPU activation from malloc. Blocks over 128 KB come as fresh mmap
    pages and go back to the system when freed, so every forward pass faults its activations in
    again, page by page. Keeping blocks up to 32 MB in the heap and never trimming it: seed-cnn
    trained 5-15% more images per second in fresh processes (inference: 0-14%)
    (`bench/bench_predict.py --allocator`, bench/README.md); PyTorch's CPU tuning guide gets the
    same from jemalloc or tcmalloc via LD_PRELOAD. Cost: the process holds its peak memory.
    train, fit and predict use it for their own duration (`freed_memory_kept`); a Predictor only
    when asked (`tune_allocator=True`), since it changes the whole process.
    """
    global _allocator_tuned
    mallopt = _mallopt()
    if mallopt is None:
        return False
    took = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    _allocator_tuned = _allocator_tuned or took
    return took


def restore_allocator() -> None:
    """glibc's default thresholds (128 KB) again. glibc's sliding mmap threshold stays off (any
    explicit setting turns it off); 128 KB is the value it starts from."""
    global _allocator_tuned
    mallopt = _mallopt()
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
    _allocator_tuned = False


_allocator_tuned = False  # set by keep_freed_memory: a block inside it must leave it as it was


@contextlib.contextmanager
def freed_memory_kept(enabled: bool = True) -> Iterator[bool]:
    """`keep_freed_memory` for the block only, then the allocator as it was before (still tuned
    where the caller had tuned it, e.g. a Predictor with tune_allocator=True); yields whether it is on."""
    if _allocator_tuned or not enabled:
        yield _allocator_tuned
        return
    tuned = keep_freed_memory()
    try:
        yield tuned
    finally:
        if tuned:
            restore_allocator()


def own_running_threads() -> int:
    """Threads of this process the kernel counts as runnable (state R), the caller among them; at least 1.

    Why: between two ops an OpenMP worker spins, runnable, waiting for the next one, so right after a
    band of work `procs_running` counts this process's own idle workers as load."""
    running = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended while we looked
            continue
        end = stat.rfind(b")")  # the name may hold spaces and parentheses; the state follows the last ')'
        running += stat[end + 2 : end + 3] == b"R"
    return max(1, running)


def busy_cores(samples: int = 5, interval_s: float = 0.02) -> float:
    """How many cores other work keeps busy right now: the kernel's count of runnable threads
    (`procs_running` in /proc/stat) less this process's own runnable threads (`own_running_threads`),
    sampled a few times, the median. Where /proc is missing, the 1-minute load average (which lags by
    tens of seconds)."""
    counts = []
    for k in range(samples):
        try:
            with open("/proc/stat", encoding="ascii") as f:
                line = next((x for x in f if x.startswith("procs_running")), None)
        except OSError:
            line = None
        if line is None:
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        counts.append(int(line.split()[1]) - own_running_threads())
        if k + 1 < samples:
            time.sleep(interval_s)
    return max(0.0, statistics.median(counts))


def choose_threads(requested: int = 0, adapt_to_load: bool = False) -> int:
    """CPU threads for the network: `requested` when positive; with 0, one per core or, with
    `adapt_to_load`, one per core that other work leaves free (`busy_cores`), at least one.

    Why adapt: OpenMP threads wait for each other at the end of every op, so when another process holds
    a core the descheduled thread stalls each of the thousands of small ops, and the waiting threads
    spin: beside one busy loop, one thread trains faster than two, and OMP_WAIT_POLICY=PASSIVE does
    worse still (bench/README.md, "Training threads and the fashion-mnist recipe's length"). The count
    is decided once, when a run starts, and never follows the load during the run: the count changes the
    order of floating-point sums, so a run must keep one count to repeat with its seed. Training records
    the count it chose in config.json (its `threads` option), so `--resume` and a rerun with
    `--threads N` repeat it exactly; image fitting decides the same way. A process started with
    OMP_NUM_THREADS set keeps torch's count (the test suite does, so runs it compares use one count).
    """
    if requested > 0:
        return requested
    cores = torch.get_num_threads()
    if not adapt_to_load or os.environ.get("OMP_NUM_THREADS"):  # a count set for the process is a choice
        return cores
    return max(1, min(cores, cores - round(busy_cores())))


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[None]:
    """Run a block with `threads` intra-op threads, restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LoadFollower:
    """Re-decides the CPU thread count during a long job, for work whose result does not depend on it.

    `choose_threads` decides once per run because a run's sums must keep one order to repeat; a render
    gives the same bytes on any count (each pixel is computed alone; tests/field/test_render_threads.py),
    so it can follow the load band by band: a 2-thread render that another process joins halfway
    drops to one thread instead of stalling at every op. Call it between pieces of work; it samples
    the load at most every `every_s` seconds. A positive `requested`, or OMP_NUM_THREADS set for the
    process, is a choice and is kept. Use as a context manager: the previous count comes back after.
    """

    def __init__(self, requested: int = 0, every_s: float = 0.5):
        self.previous = torch.get_num_threads()
        self.cores, self.every_s = self.previous, every_s
        self.fixed = requested > 0 or bool(os.environ.get("OMP_NUM_THREADS"))
        self.threads = requested if requested > 0 else self.cores
        self.decided_at = -float("inf")

    def __enter__(self) -> LoadFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.previous)

    def __call__(self) -> int:
        """The count for the next piece of work, set for torch."""
        now = time.monotonic()
        if not self.fixed and now - self.decided_at >= self.every_s:
            self.decided_at = now
            self.threads = max(1, min(self.cores, self.cores - round(busy_cores(samples=3, interval_s=0.005))))
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return self.threads


def import_soon(*modules: str) -> threading.Thread:
    """Start importing `modules`, in order, on a thread; returned, to be joined before timing anything.

    For imports a command will need later and that cost noticeable time: started before images
    decode, which Pillow does without the GIL, they mostly happen while the process would be
    waiting. The later import of each then finds it done (or waits for it on the module lock). An
    import that fails there fails again, with its traceback, where the module is used.
    """

    def run() -> None:
        for module in modules:
            importlib.import_module(module)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
