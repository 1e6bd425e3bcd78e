"""A fit's optimiser at start-up: torch.optim.Adam against core.optim.Adam, each in a fresh process.

core/optim.py keeps its own Adam (torch's step function, without torch.optim's Optimizer wrapper)
for one reason: the wrapper imports torch._dynamo the first time it is used, which a time-budgeted
`pixlearn fit` waits for before it trains. This measures that reason again, as a fit meets it: a
fresh process imports torch and the field's modules, builds the fit's model (hashgrid by default),
then times making the optimiser plus its first step (forward, backward, step), and the second step
alone; the two optimisers take turns, so the machine's load falls on both alike. Each process also
says whether torch._dynamo was imported.

    python bench/bench_adam.py                 # 5 rounds, hashgrid
    python bench/bench_adam.py --rounds 8 --model siren

Figures measured and the command used: bench/README.md, "One Adam".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import header

REPO = Path(__file__).resolve().parent.parent

# Run in the child: torch and the field's modules imported, the model built, then the optimiser timed.
CHILD = """
import json, sys, time
import torch
from pixlearn.core.optim import Adam as OwnAdam
from pixlearn.field.config import FitConfig
from pixlearn.models.registry import create_model

kind, model_name = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
config = FitConfig(model=model_name).resolved()
preset = config.preset()
torch.manual_seed(0)
model = create_model(config.model, "field", in_features=2, out_features=3)  # as field.fit.build_model
coords = torch.rand(config.batch or 4096, 2) * 2 - 1
target = torch.rand(len(coords), 3)
made = time.perf_counter()
if kind == "torch":
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=preset.betas, eps=preset.eps)
else:
    optimizer = OwnAdam(model.parameters(), lr=config.lr, betas=preset.betas, eps=preset.eps)
made = time.perf_counter() - made
steps = []
for _ in range(2):
    started = time.perf_counter()
    loss = ((model(coords) - target) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    steps.append(time.perf_counter() - started)
found = {"made": made, "first": made + steps[0], "second": steps[1], "dynamo": "torch._dynamo" in sys.modules}
print(json.dumps(found))
"""


def one(kind: str, model: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, kind, model], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"the {kind} process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="hashgrid")
    args = parser.parse_args()
    print(header(f"A fit's Adam at start-up, {args.model}, {args.rounds} fresh processes each"))
    found: dict[str, list[dict]] = {"torch": [], "own": []}
    for _ in range(args.rounds):
        for kind in found:  # taking turns: a busy minute falls on both
            found[kind].append(one(kind, args.model))
    for kind, label in (("torch", "torch.optim.Adam"), ("own", "core.optim.Adam")):
        rows = found[kind]
        firsts = [r["first"] for r in rows]
        print(
            f"{label:17s} made + first step: median {statistics.median(firsts):.3f} s (runs "
            f"{', '.join(f'{v:.3f}' for v in firsts)}; making it {statistics.median(r['made'] for r in rows):.3f}); "
            f"second step {statistics.median(r['second'] for r in rows):.4f} s; "
            f"torch._dynamo imported in {sum(r['dynamo'] for r in rows)} of {len(rows)}"
        )
    gap = statistics.median(r["first"] for r in found["torch"]) - statistics.median(r["first"] for r in found["own"])
    print(f"made + first step, difference of the medians: {gap:.3f} s")


if __name__ == "__main__":
    main()
