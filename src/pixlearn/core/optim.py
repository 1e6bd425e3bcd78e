"""pixlearn's optimizers: torch's own update steps (`torch.optim.adam.adam`, `torch.optim.sgd.sgd`, the
functions `torch.optim.Adam.step` and `torch.optim.SGD.step` call) on parameter groups, without the
`torch.optim.Optimizer` base class.

Why: that base class wraps its methods to keep torch.compile out, and every optimizer it builds or steps
imports torch._dynamo, a heavy import that every `train`, `fit`, `compress` and `check` paid at start-up,
often more than a small run's training (bench/README.md, "One Adam (issue 27, item 3)" and "Start-up: the
evaluation's imports"). pixlearn compiles nothing, so the wrappers do nothing for it.

The classes keep torch.optim's interface where pixlearn uses it: `param_groups` (dicts with "params" and
the settings, extra keys such as transfer's "lr_scale" kept), `state` per parameter, `zero_grad`, `step`,
and `state_dict` / `load_state_dict` in torch.optim's format, with its group keys and defaults, so a
checkpoint written by torch.optim.Adam, AdamW or SGD (runs of earlier pixlearn) resumes here and one
written here loads into torch's. Tests hold each to torch's, step for step, bit for bit.

    >>> import torch
    >>> weight = torch.nn.Parameter(torch.ones(2))
    >>> optimizer = Adam([weight], lr=0.1)
    >>> (weight ** 2).sum().backward()
    >>> optimizer.step()
    >>> [round(v, 4) for v in weight.tolist()]
    [0.9, 0.9]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd

# torch.optim's group settings that select implementations pixlearn leaves to torch (its defaults)
_IMPLEMENTATION = {"maximize": False, "foreach": None, "differentiable": False, "fused": None}


class Optimizer:
    """Parameter groups, per-parameter state and torch.optim's state-dict format; `step` is the subclass's."""

    defaults: dict[str, Any]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]):
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: {name: value}}, "param_groups": [{settings..., "params": [index, ...]}]}, the
        parameters numbered in group order as torch.optim numbers them; tensors are the live ones."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(slot) for p, slot in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch.optim's rules: the same number of groups and of parameters in each; the saved settings
        replace the groups' own; moments take each parameter's dtype and device, step counts stay as saved."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        by_index: dict[int, torch.Tensor] = {}
        for old, group in zip(saved, self.param_groups, strict=True):
            if len(old["params"]) != len(group["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
                )
            by_index.update(zip(old["params"], group["params"], strict=True))
        self.state = {}
        for key, slot in state_dict["state"].items():
            p = by_index[int(key)]
            self.state[p] = {name: _placed(name, value, p) for name, value in slot.items()}
        for old, group in zip(saved, self.param_groups, strict=True):
            group.update({k: v for k, v in old.items() if k != "params"})

    def _with_grads(self, group: dict[str, Any]) -> list[torch.Tensor]:
        return [p for p in group["params"] if p.grad is not None]


def _placed(name: str, value: Any, p: torch.Tensor) -> Any:
    if not isinstance(value, torch.Tensor) or name == "step":
        return value
    return value.to(dtype=p.dtype, device=p.device) if value.is_floating_point() else value.to(device=p.device)


class Adam(Optimizer):
    """torch.optim.Adam (weight_decay added to the gradient) without AMSGrad or a closure; `decoupled`:
    AdamW's decay, applied to the weights (torch.optim.AdamW is Adam with this one setting)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ):
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
                    **_IMPLEMENTATION, "capturable": False, "decoupled_weight_decay": decoupled}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = self._with_grads(group)
            if not params:
                continue
            slots = [self._slot(p) for p in params]
            beta1, beta2 = group["betas"]
            adam(
                params,
                [p.grad for p in params],
                [s["exp_avg"] for s in slots],
                [s["exp_avg_sq"] for s in slots],
                [],
                [s["step"] for s in slots],
                amsgrad=False,
                has_complex=any(torch.is_complex(p) for p in params),
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                foreach=group["foreach"],  # None: the implementation is chosen as torch.optim.Adam chooses
                capturable=False,
                differentiable=False,
                fused=group["fused"],
                grad_scale=None,
                found_inf=None,
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )

    def _slot(self, p: torch.Tensor) -> dict[str, Any]:
        slot = self.state.get(p)
        if not slot:  # what torch.optim.Adam creates at a parameter's first step (the count as float32)
            dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            slot = self.state[p] = {
                "step": torch.tensor(0.0, dtype=dtype),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        return slot


def AdamW(params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          weight_decay: float = 1e-2) -> Adam:  # fmt: skip
    """torch.optim.AdamW: Adam with decoupled weight decay (torch's default decay 0.01)."""
    return Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=True)


class SGD(Optimizer):
    """torch.optim.SGD: momentum (optionally Nesterov), dampening and weight decay, without a closure."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov, **_IMPLEMENTATION}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = self._with_grads(group)
            if not params:
                continue
            buffers = [self.state.get(p, {}).get("momentum_buffer") for p in params]
            sgd(
                params,
                [p.grad for p in params],
                buffers,
                has_sparse_grad=any(p.grad.is_sparse for p in params),
                foreach=group["foreach"],
                fused=group["fused"],
                grad_scale=None,
                found_inf=None,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=group["lr"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                maximize=False,
            )
            if group["momentum"] != 0:  # sgd() filled the list with the buffers it created
                for p, buffer in zip(params, buffers, strict=True):
                    self.state.setdefault(p, {})["momentum_buffer"] = buffer
