"""End to end: whole commands as processes, as a user waits for them, idle and under a competing CPU load.

Each command runs as a child process; its wall seconds (perf_counter around subprocess.run) and
CPU seconds (user + sys of the child and the helpers it waited for, from RUSAGE_CHILDREN) are
taken under two conditions: an idle machine, and a competing CPU-bound load of one busy process
per core but one (`python -c "while True: pass"`, os.cpu_count() - 1, at least 1), which this
script starts before and kills (the whole process group) after each loaded measurement. Rounds
interleave conditions and contenders, in reversed order every other round (ABBA), so drifting
load hits every contender alike.

- train, against the Keras peer: the seed pipeline on Fashion-MNIST "tops vs other" at 150x150 PNG
  (default 3,000 train / 500 test): `keras_seed.py ROOT --epochs 3` (load, 3 epochs, predict,
  evaluate) against `pixlearn train ROOT --model seed-cnn --size 150 --color grayscale --epochs 3
  --batch-size 10 --head sigmoid --val-split 0` (validating on the test set, as the peer; it also evaluates
  and writes its report).
- evaluate, predict, fit, pixlearn alone: `pixlearn evaluate RUN ROOT/test`, `pixlearn predict RUN
  ROOT/test --csv ...`, and `pixlearn fit astronaut.png --model hashgrid --time 10s` (512x512 RGB).

Prints medians (min-max) per command and condition, the speed ratio against the peer and
pixlearn's loaded/idle ratios, then verdicts: idle >= 2.5x the peer, loaded >= 1.5x the peer,
and per command loaded wall <= 2.2x idle wall and loaded CPU seconds <= 1.3x idle. If the peer
cannot run the benchmark exits 1; --no-peer measures pixlearn alone on purpose.

    cd bench && python bench_e2e.py                  # 3,000/500 images, 3 rounds: about 30-40 minutes on 2 cores
    python bench/bench_e2e.py --quick                # smoke test: 300/100 images, 1 round, a few minutes
    python bench/bench_e2e.py --no-peer --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from common import header, median, peer_python, peer_script, scratch, tops_tree, verdict

IDLE, LOADED = "idle", "loaded"
PIXLEARN, PEER = "pixlearn", "peer"
COMMANDS = ("train", "evaluate", "predict", "fit")
BUSY_LOOP = "while True: pass"
SPIN_UP_S = 1.0  # the busy processes run this long before a loaded measurement starts
TIMEOUT_S = 3600.0  # per command

TARGET_IDLE_VS_PEER = 2.5
TARGET_LOADED_VS_PEER = 1.5
TARGET_WALL_LOADED_OVER_IDLE = 2.2  # at most
TARGET_CPU_LOADED_OVER_IDLE = 1.3  # at most


class BenchmarkFailed(RuntimeError):
    """A measured command could not run or failed: the figures would be meaningless."""


@dataclass
class Timing:
    wall: float
    cpu: float


# ---------------------------------------------------------------------------------- the competing load


def busy_processes() -> int:
    return max(1, (os.cpu_count() or 1) - 1)


def _die_with_parent() -> None:
    """In the busy child before exec: SIGKILL it when this benchmark dies, even by SIGKILL (Linux)."""
    with suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextmanager
def competing_load(n: int) -> Iterator[None]:
    """n busy Python loops in one process group of their own; always killed and reaped on the way out."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            group = procs[0].pid if procs else 0  # the first one leads the group
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", BUSY_LOOP],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    process_group=group,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            )
        time.sleep(SPIN_UP_S)
        yield
    finally:
        if procs:
            with suppress(ProcessLookupError):
                os.killpg(procs[0].pid, signal.SIGKILL)
            for proc in procs:
                with suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks run and the busy processes are killed


# ---------------------------------------------------------------------------------- one measurement


def timed(cmd: Sequence[str], cwd: Path) -> tuple[Timing, str]:
    """Wall and CPU seconds of one command run to its end; its output. Raises if it fails.

    The busy processes are reaped only after the command, so the RUSAGE_CHILDREN difference is
    the command's own (with the worker processes it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchmarkFailed(f"{' '.join(map(str, cmd))}\n  could not run: {e}") from e
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = "\n    ".join((proc.stdout + proc.stderr).strip().splitlines()[-15:]) or "(no output)"
        raise BenchmarkFailed(f"{' '.join(map(str, cmd))}\n  exit {proc.returncode}; last lines:\n    {tail}")
    return Timing(wall, cpu), proc.stdout


def seconds_of(budget: str) -> float:
    """`10s`, `2m`, `1h` or plain seconds, as pixlearn fit --time reads them."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", budget)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {budget!r} (e.g. 10s, 2m)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


# ---------------------------------------------------------------------------------- the commands


PIXLEARN_SRC: str | None = None  # --src: the src folder of another checkout whose commands are timed


def pixlearn_cmd(*args: object) -> list[str]:
    """`python -m pixlearn ARGS`: this checkout's pixlearn, or with --src another checkout's (on PYTHONPATH
    of that command alone, so this script keeps its own imports)."""
    prefix = ["env", f"PYTHONPATH={PIXLEARN_SRC}"] if PIXLEARN_SRC else []
    return [*prefix, sys.executable, "-m", "pixlearn", *map(str, args)]


def build_commands(tmp: Path, root: Path, photo: Path, args: argparse.Namespace) -> dict:
    """(command, contender, condition) -> argv. Every output lands under tmp."""
    run = tmp / "runs" / "train-idle"  # evaluate and predict read the run the idle train writes
    cmds: dict[tuple[str, str, str], list[str]] = {}
    for cond in (IDLE, LOADED):
        train = pixlearn_cmd("train", root, "--model", "seed-cnn", "--size", 150, "--color", "grayscale")
        train += ["--epochs", "3", "--batch-size", "10", "--head", "sigmoid", "--val-split", "0"]  # as the peer
        train += ["--out", str(tmp / "runs" / f"train-{cond}"), "--overwrite"]
        if args.threads is not None:
            train += ["--threads", str(args.threads)]
        cmds["train", PIXLEARN, cond] = train
        if not args.no_peer:
            cmds["train", PEER, cond] = [str(peer_python()), str(peer_script()), str(root), "--epochs", "3"]
        cmds["evaluate", PIXLEARN, cond] = pixlearn_cmd("evaluate", run, root / "test", "--out", tmp / "eval" / cond)
        cmds["predict", PIXLEARN, cond] = pixlearn_cmd(
            "predict", run, root / "test", "--csv", tmp / "predict" / cond / "predictions.csv"
        )
        cmds["fit", PIXLEARN, cond] = pixlearn_cmd(
            "fit", photo, "--model", "hashgrid", "--time", args.fit_time, "--out", tmp / "fit" / cond, "--overwrite"
        )
    return cmds


def round_order(cmds: dict, r: int) -> list[tuple[str, str, str]]:
    """Round r: per command (train first: it writes the run the others read) idle pixlearn, idle peer,
    loaded pixlearn, loaded peer; every other round in reverse."""
    order = []
    for command in COMMANDS:
        keys = [(command, who, cond) for cond in (IDLE, LOADED) for who in (PIXLEARN, PEER)]
        keys = [k for k in keys if k in cmds]
        order += keys if r % 2 == 0 else keys[::-1]
    return order


def check_peer() -> None:
    python, script = peer_python(), peer_script()
    missing = [str(p) for p in (python, script) if not p.exists()]
    if missing:
        raise BenchmarkFailed(
            f"the Keras peer cannot run: {', '.join(missing)} missing (make bench creates .cache/peer; "
            "set PIXLEARN_PEER_PYTHON / PIXLEARN_SHARED), or pass --no-peer to measure pixlearn alone"
        )


# ---------------------------------------------------------------------------------- report


def wall_spread(values: Sequence[Timing]) -> str:
    walls = [t.wall for t in values]
    return f"{median(walls):,.1f} ({min(walls):,.1f}-{max(walls):,.1f})"


def at_most(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x (target at most {target:g}x: {'met' if ratio <= target else 'NOT met'})"


def report(results: dict[tuple[str, str, str], list[Timing]], budget_s: float, peer_acc: dict) -> None:
    def med(command: str, who: str, cond: str, field: str) -> float:
        return median([getattr(t, field) for t in results[command, who, cond]])

    rounds = len(results["train", PIXLEARN, IDLE])
    print(
        f"\nwall seconds, median (min-max) of {rounds} round(s); CPU seconds, median; speed = peer wall / pixlearn wall"
    )
    print(
        f"{'command':<9} {'condition':<9} {'pixlearn wall':>22} {'CPU':>7}   {'peer wall':>22} {'CPU':>7}   "
        f"{'pixlearn/peer':>13}"
    )
    for command in COMMANDS:
        for cond in (IDLE, LOADED):
            ours = results[command, PIXLEARN, cond]
            line = f"{command:<9} {cond:<9} {wall_spread(ours):>22} {med(command, PIXLEARN, cond, 'cpu'):>7.1f}   "
            if (command, PEER, cond) in results:
                peer = results[command, PEER, cond]
                speed = med(command, PEER, cond, "wall") / med(command, PIXLEARN, cond, "wall")
                line += f"{wall_spread(peer):>22} {med(command, PEER, cond, 'cpu'):>7.1f}   {speed:>12.2f}x"
            else:
                line += f"{'-':>22} {'-':>7}   {'-':>13}"
            print(line)

    print("\npixlearn loaded / idle, medians")
    print(f"{'command':<9} {'wall':>7} {'CPU':>7}")
    for command in COMMANDS:
        wall = med(command, PIXLEARN, LOADED, "wall") / med(command, PIXLEARN, IDLE, "wall")
        cpu = med(command, PIXLEARN, LOADED, "cpu") / med(command, PIXLEARN, IDLE, "cpu")
        print(f"{command:<9} {wall:>6.2f}x {cpu:>6.2f}x")
    fit_idle, fit_loaded = med("fit", PIXLEARN, IDLE, "wall"), med("fit", PIXLEARN, LOADED, "wall")
    rest_idle, rest_loaded = fit_idle - budget_s, fit_loaded - budget_s
    print(
        f"fit without its {budget_s:g} s training budget (wall - budget): idle {rest_idle:.1f} s, "
        f"loaded {rest_loaded:.1f} s, loaded/idle {rest_loaded / max(rest_idle, 1e-9):.2f}x"
    )
    if peer_acc:
        print("peer test accuracy (its RESULT line): " + ", ".join(f"{c} {a}" for c, a in peer_acc.items()))

    print()
    if ("train", PEER, IDLE) in results:
        for cond, target in ((IDLE, TARGET_IDLE_VS_PEER), (LOADED, TARGET_LOADED_VS_PEER)):
            speed = med("train", PEER, cond, "wall") / med("train", PIXLEARN, cond, "wall")
            print(f"train {cond:<6} pixlearn vs Keras peer (wall)       : {verdict(speed, target)}")
    else:
        print("train pixlearn vs Keras peer: not measured (--no-peer)")
    for command in COMMANDS:
        wall = med(command, PIXLEARN, LOADED, "wall") / med(command, PIXLEARN, IDLE, "wall")
        cpu = med(command, PIXLEARN, LOADED, "cpu") / med(command, PIXLEARN, IDLE, "cpu")
        print(f"{command:<9} pixlearn loaded/idle wall        : {at_most(wall, TARGET_WALL_LOADED_OVER_IDLE)}")
        print(f"{command:<9} pixlearn loaded/idle CPU seconds : {at_most(cpu, TARGET_CPU_LOADED_OVER_IDLE)}")


# ---------------------------------------------------------------------------------- main


def run_benchmark(args: argparse.Namespace) -> None:
    budget_s = seconds_of(args.fit_time)
    n_busy = busy_processes()
    print(header("bench_e2e: whole commands as processes, idle and under a competing CPU load"))
    print(f"pixlearn {PIXLEARN_SRC or 'this checkout'}")
    print(
        f'competing load: {n_busy} x `python -c "{BUSY_LOOP}"` ({os.cpu_count()} cores); '
        f"train {args.train} / test {args.test} images 150x150 PNG, {args.rounds} round(s), fit --time {args.fit_time}"
    )
    if not args.no_peer:
        check_peer()
        print(f"peer     {peer_python()} {peer_script()}")
    with scratch("e2e") as tmp_name:
        tmp = Path(tmp_name)
        print("writing the data ...", flush=True)
        root = tops_tree(tmp / "tree", args.train, args.test)
        photo = tmp / "astronaut.png"
        import skimage.data
        from PIL import Image

        Image.fromarray(skimage.data.astronaut()).save(photo)  # 512x512 RGB
        cmds = build_commands(tmp, root, photo, args)
        results: dict[tuple[str, str, str], list[Timing]] = {key: [] for key in cmds}
        peer_acc: dict[str, str] = {}
        for r in range(args.rounds):
            for key in round_order(cmds, r):
                command, who, cond = key
                print(f"  round {r + 1}/{args.rounds}: {command:<8} {who:<8} {cond:<6} ", end="", flush=True)
                if cond == LOADED:
                    with competing_load(n_busy):
                        timing, out = timed(cmds[key], tmp)
                else:
                    timing, out = timed(cmds[key], tmp)
                if who == PEER:
                    match = re.search(r"^RESULT .*test_acc=(\S+)", out, re.M)
                    if match is None:
                        raise BenchmarkFailed(f"the Keras peer printed no RESULT line:\n{out[-1000:]}")
                    peer_acc[cond] = match.group(1)
                results[key].append(timing)
                print(f"{timing.wall:7.1f} s wall, {timing.cpu:7.1f} s CPU", flush=True)
    report(results, budget_s, peer_acc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=None, help="training images (default 3000; --quick 300)")
    parser.add_argument("--test", type=int, default=None, help="test images (default 500; --quick 100)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --quick 1)")
    parser.add_argument("--no-peer", action="store_true", help="measure pixlearn alone, without the Keras peer")
    parser.add_argument("--fit-time", default="10s", help="pixlearn fit --time budget (default 10s)")
    parser.add_argument("--threads", type=int, default=None, help="passed to pixlearn train as --threads")
    parser.add_argument("--quick", action="store_true", help="smoke test: 300/100 images, 1 round")
    parser.add_argument("--src", help="time the pixlearn of another checkout (its src folder), e.g. a revision before")
    args = parser.parse_args()
    global PIXLEARN_SRC
    PIXLEARN_SRC = str(Path(args.src).resolve()) if args.src else None
    quick = args.quick
    args.train = args.train if args.train is not None else (300 if quick else 3000)
    args.test = args.test if args.test is not None else (100 if quick else 500)
    args.rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    try:
        seconds_of(args.fit_time)  # refuse a bad budget before any work
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    try:
        run_benchmark(args)
    except BenchmarkFailed as e:
        print(f"\nbench_e2e FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench_e2e interrupted; the busy processes are stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
