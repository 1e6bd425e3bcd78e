"""A render that another process joins halfway (issue 29): `pixlearn render` as a whole process, its
thread count fixed at the machine's cores (`--threads N`, what every render did before) against the
default (`--threads 0`: re-decided band by band, core.devices.LoadFollower), idle and with one busy
Python loop started a moment after the render.

    python bench/bench_render_threads.py [--rounds 3] [--size 2048] [--model seed-deep]

Rounds interleave fixed and following (ABBA), so drift hits both alike. Prints each condition's median
wall seconds and the fixed / following ratio; the images written are compared byte for byte.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path

from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, header, median, spread  # noqa: E402

BUSY_LOOP = "while True: pass"
PIXLEARN = [sys.executable, "-m", "pixlearn"]


@contextmanager
def busy_after(delay_s: float | None):
    """One busy Python loop started `delay_s` seconds from now (None: none), killed on the way out."""
    if delay_s is None:
        yield
        return
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import time; time.sleep({delay_s}); exec({BUSY_LOOP!r})"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def render_seconds(run: Path, out: Path, size: int, threads: int, delay_s: float | None) -> float:
    cmd = [*PIXLEARN, "render", str(run), "--size", f"{size}x{size}", "--threads", str(threads), "-o", str(out)]
    with busy_after(delay_s):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048, help="square render side in pixels")
    parser.add_argument("--model", default="seed-deep")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds before the busy loop starts")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(header(f"render threads: {args.model} at {args.size}x{args.size}, fixed {cores} vs following the load"))
    with tempfile.TemporaryDirectory(prefix="pixlearn-render-threads-") as tmp:
        tmpdir = Path(tmp)
        run, photo = tmpdir / "run", tmpdir / "photo.png"
        Image.fromarray(data.astronaut()).save(photo)
        subprocess.run(
            [*PIXLEARN, "fit", str(photo), "--model", args.model, "--steps", "200", "--size", "128x128",
             "--out", str(run)],
            check=True, capture_output=True, cwd=REPO,
        )  # fmt: skip
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for load, delay in (("idle", None), ("joined", args.delay)):
                order = [("fixed", cores), ("following", 0)]
                for name, threads in order if r % 2 == 0 else order[::-1]:
                    out = tmpdir / f"{name}.png"
                    times.setdefault((name, load), []).append(render_seconds(run, out, args.size, threads, delay))
            same = (tmpdir / "fixed.png").read_bytes() == (tmpdir / "following.png").read_bytes()
            print(f"round {r + 1}: " + ", ".join(f"{k[0]} {k[1]} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
            assert same, "the two renders differ"
    print("\nmedian wall seconds (spread), whole `pixlearn render` processes")
    for load in ("idle", "joined"):
        fixed, following = times[("fixed", load)], times[("following", load)]
        print(
            f"  {load:7s} fixed {spread(fixed, 2)}  following {spread(following, 2)}  "
            f"fixed/following {median(fixed) / median(following):.2f}x"
        )
    print("images byte-identical in every round")


if __name__ == "__main__":
    main()
