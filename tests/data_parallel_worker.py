"""Run by tests/test_data_parallel.py as 2 processes (torchrun): a BatchNorm-free MLP trained with paddy's
accumulation rule under paddy's data-parallel context, for each case in argv; rank 0 writes the weights."""

from __future__ import annotations

import json
import sys

import torch
from fastai.vision.all import SGD, CrossEntropyLossFlat, DataLoader, DataLoaders, GradientAccumulation, Learner

from paddy.core.ranks import is_main_process, world_size
from paddy.training.distributed import distributed, finish
from paddy.training.plan import accumulation

N, BS = 64, 16


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N, 8, generator=generator)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def mlp() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def trained_weights(order: list[int], step_bs: int, callbacks: list) -> list[float]:
    """Two epochs of plain SGD at a constant rate (fastai's schedules advance per micro-batch)."""
    x, y = data()
    samples = [(x[i], y[i]) for i in order]
    dls = DataLoaders(DataLoader(samples, bs=step_bs), DataLoader(samples[:8], bs=8), device="cpu")
    learn = Learner(dls, mlp(), loss_func=CrossEntropyLossFlat(), opt_func=SGD, lr=0.1, cbs=callbacks, wd=0.0)
    with learn.no_bar(), learn.no_logging(), distributed(learn):
        learn.fit(2)
    return torch.cat([p.detach().flatten() for p in learn.model.parameters()]).tolist()


def case_callbacks(case: str, accum: int) -> tuple[int, list]:
    """paddy's rule (each process's share of bs) or the control without the per-process correction."""
    if case == "paddy":
        return accumulation(BS // world_size(), accum)
    step_bs = BS // world_size() // accum
    return step_bs, [GradientAccumulation(n_acc=BS)]


if __name__ == "__main__":
    out, cases = sys.argv[1], sys.argv[2:]
    results = {}
    for name in cases:
        case, accum = name.split("-")
        step_bs, callbacks = case_callbacks(case, int(accum))
        results[name] = trained_weights(list(range(N)), step_bs, callbacks)
    if is_main_process():
        with open(out, "w") as f:
            json.dump(results, f)
    finish()
