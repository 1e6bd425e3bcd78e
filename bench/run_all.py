"""What `make bench` runs: every benchmark, one after another, each with its default settings.

    python bench/run_all.py                  # about 90 minutes on a 2-core machine
    python bench/run_all.py train predict    # only the named ones

Each script prints its own header (hardware, versions, date, load) and ratios measured side by
side in one run; the figures recorded in bench/README.md come from these commands.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Cheap first; the whole-command runs idle and loaded (about 30 minutes) and the 30-minute
# Fashion-MNIST run last. bench_fit.py is fitting an image.
BENCHMARKS = ["predict", "load", "train", "fit", "gaussians", "codec", "memory_stream", "transfer", "check", "e2e",
              "fashion"]  # fmt: skip


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names or BENCHMARKS:
        script = HERE / f"bench_{name}.py"
        if not script.exists():
            print(f"\n-- {script.name}: not present, skipped")
            continue
        print(f"\n-- {script.name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        print(f"-- {script.name}: exit {code}, {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
