"""The optimizer a run steps with: fastai's Adam, or torch's AdamW (multi-tensor `foreach`, or
`fused`) doing the same maths in a few kernels instead of one loop per parameter tensor.

torch's AdamW goes through fastai's `OptimWrapper`, so fastai's parameter groups stay what the
splitter made them: discriminative learning rates, one-cycle schedules and fine_tune's
freeze/unfreeze work unchanged. OptimWrapper leaves out one fastai rule: no weight decay on
normalisation and bias parameters (the Learner marks them `do_wd = False` in the optimizer's
state, which torch never reads). `FastaiDecayOptimWrapper` applies the decay itself, before
torch's step and only where fastai would, so a step equals fastai's Adam step.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any, Callable

import torch
from fastai.optimizer import Adam, OptimWrapper

from paddy.settings.entry import OptimizerChoice


def fastai_adam_defaults() -> dict[str, Any]:
    """fastai Adam's betas, eps and weight decay (read from its signature: written once, in fastai)."""
    defaults = {name: p.default for name, p in inspect.signature(Adam).parameters.items()}
    return {"betas": (defaults["mom"], defaults["sqr_mom"]), "eps": defaults["eps"], "weight_decay": defaults["wd"]}


class FastaiDecayOptimWrapper(OptimWrapper):
    """A torch optimizer under fastai's OptimWrapper, with fastai's decoupled weight decay: `p *= 1 - lr*wd`
    before the step, on parameters with a gradient that the Learner did not mark `do_wd = False`."""

    def step(self, closure: Callable | None = None) -> Any:
        groups = self.opt.param_groups
        decays = [group["weight_decay"] for group in groups]
        with torch.no_grad():
            for group, wd in zip(groups, decays):
                decayed = [p for p in group["params"] if p.grad is not None and self.state[p].get("do_wd", True)]
                if decayed and wd:
                    torch._foreach_mul_(decayed, 1 - group["lr"] * wd)
                group["weight_decay"] = 0.0  # done above: torch must not decay everything again
        try:
            return self.opt.step(closure)
        finally:
            for group, wd in zip(groups, decays):
                group["weight_decay"] = wd


def opt_func(choice: OptimizerChoice) -> Callable:
    """The `opt_func` a fastai Learner builds its optimizer with."""
    if choice == OptimizerChoice.fastai:
        return Adam
    kernels = {"foreach": True} if choice == OptimizerChoice.adamw_foreach else {"fused": True}
    return partial(FastaiDecayOptimWrapper, opt=partial(torch.optim.AdamW, **kernels), **fastai_adam_defaults())
