"""Adam for a time-budgeted fit: torch's own Adam step (`torch.optim.adam.adam`, the function
`torch.optim.Adam.step` calls) on a fixed list of parameters, without `torch.optim.Optimizer`.

Why: the Optimizer base class wraps its methods to keep torch.compile out, and its first use imports
torch._dynamo, a heavy import that a `pixlearn fit` would wait for between decoding its image and training.
That is the one reason pixlearn has an Adam of its own, measured in bench/README.md, "One Adam (issue 27,
item 3)" (`bench/bench_adam.py`; the history in "Start-up: imports, the collector and the early decode").
The step itself is torch's, with the same arguments and state as torch.optim.Adam, so both give equal
parameters step for step (test).

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

import torch
from torch.optim.adam import adam


class Adam:
    """torch.optim.Adam(params, lr, betas, eps) without weight decay, AMSGrad or a closure; the
    learning rate is `param_groups[0]["lr"]`, as a schedule sets it on a torch optimizer."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = [p for p in params if p.requires_grad]
        self.has_complex = any(torch.is_complex(p) for p in self.params)
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps}]
        # the state torch.optim.Adam creates at its first step (step counts on the CPU, as float32)
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        self.steps = [torch.tensor(0.0, dtype=dtype) for _ in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        beta1, beta2 = group["betas"]
        adam(
            [self.params[i] for i in live],
            [self.params[i].grad for i in live],
            [self.exp_avgs[i] for i in live],
            [self.exp_avg_sqs[i] for i in live],
            [],
            [self.steps[i] for i in live],
            amsgrad=False,
            has_complex=self.has_complex,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=0.0,
            eps=group["eps"],
            maximize=False,
            foreach=None,  # torch.optim.Adam's defaults: the implementation is chosen as it chooses
            capturable=False,
            differentiable=False,
            fused=None,
            grad_scale=None,
            found_inf=None,
            decoupled_weight_decay=False,
        )
