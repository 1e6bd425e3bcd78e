"""pixlearn's optimizers (core.optim) step as torch.optim's do, bit for bit, with parameter groups,
weight decay and momentum, and read and write torch.optim's state dicts, so checkpoints of runs trained
with torch.optim resume; a run trains without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pixlearn.core import optim

CASES = {
    "adam": (
        lambda p: optim.Adam(p, lr=3e-3, weight_decay=1e-4),
        lambda p: torch.optim.Adam(p, lr=3e-3, weight_decay=1e-4),
    ),
    "adamw": (
        lambda p: optim.AdamW(p, lr=3e-3, weight_decay=0.05),
        lambda p: torch.optim.AdamW(p, lr=3e-3, weight_decay=0.05),
    ),
    "sgd": (
        lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    ),
}  # fmt: skip


def two_nets() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def groups(net: torch.nn.Module) -> list[dict]:
    """Two groups as transfer learning makes them (head, backbone), each with its own "lr_scale"."""
    return [{"params": list(net[2].parameters()), "lr_scale": 1.0},
            {"params": list(net[0].parameters()), "lr_scale": 0.1}]  # fmt: skip


def train(net: torch.nn.Module, optimizer, steps: range) -> None:
    for step in steps:
        data = torch.Generator().manual_seed(step)  # each step's batch, whichever call runs it
        x, y = torch.randn(16, 6, generator=data), torch.randn(16, 3, generator=data)
        for group in optimizer.param_groups:  # as the schedules set it, per group
            group["lr"] = 0.01 * 0.9**step * group["lr_scale"]
        optimizer.zero_grad(set_to_none=True)
        ((net(x) - y) ** 2).mean().backward()
        net[0].bias.grad = None if step % 3 == 0 else net[0].bias.grad  # a parameter without a gradient
        optimizer.step()


@pytest.mark.parametrize("name", CASES)
def test_each_optimizer_steps_as_torchs_does(name) -> None:
    make_ours, make_theirs = CASES[name]
    ours, theirs = two_nets()
    before = [p.detach().clone() for p in ours.parameters()]
    a, b = make_ours(groups(ours)), make_theirs(groups(theirs))
    train(ours, a, range(8))
    train(theirs, b, range(8))
    assert all(torch.equal(x, y) for x, y in zip(ours.parameters(), theirs.parameters(), strict=True))
    assert all(not torch.equal(x, y) for x, y in zip(ours.parameters(), before, strict=True))


@pytest.mark.parametrize("name", CASES)
def test_state_dicts_cross_both_ways_and_resume_exactly(name) -> None:
    make_ours, make_theirs = CASES[name]
    straight, _ = two_nets()
    train(straight, make_ours(groups(straight)), range(10))
    # 5 steps with torch's optimizer, its state loaded into ours (an old checkpoint), 5 more
    resumed, _ = two_nets()
    first = make_theirs(groups(resumed))
    train(resumed, first, range(5))
    saved = first.state_dict()
    second = make_ours(groups(resumed))
    second.load_state_dict(saved)
    assert second.state_dict()["param_groups"] == saved["param_groups"]
    train(resumed, second, range(5, 10))
    assert all(torch.equal(x, y) for x, y in zip(straight.parameters(), resumed.parameters(), strict=True))
    back = make_theirs(groups(resumed))
    back.load_state_dict(second.state_dict())  # and ours into torch's
    assert back.state_dict()["param_groups"] == second.state_dict()["param_groups"]
    with pytest.raises(ValueError, match="number of parameter groups"):
        make_ours(list(resumed.parameters())).load_state_dict(saved)


def test_a_training_run_imports_neither_torch_dynamo_nor_torchmetrics(tmp_path) -> None:
    from tests.conftest import make_tree

    data = make_tree(tmp_path / "data", per_leaf={"train": 3, "test": 1})
    code = (
        "import sys\n"
        "from pixlearn import TrainConfig, train\n"
        f"train({str(data)!r}, {str(tmp_path / 'run')!r}, TrainConfig(size=28, epochs=1), progress=False)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch._dynamo', 'torchmetrics'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
