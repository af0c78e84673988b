"""Benchmark 1: training images/s of paddy's learner, with each optimizer, against a hand-written
PyTorch + timm loop.

Same arch, size, per-step batch, one-cycle schedule, accumulation and precision; the same batches,
already decoded and on the device. paddy runs once per `opt` (fastai's Adam, torch's AdamW foreach
and fused, all with fastai's Adam defaults); the plain loop uses torch's AdamW with the same
defaults and torch's choice of kernel. All alternate in one run, so machine load hits them alike.
Target: paddy's default >= 0.9x plain.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import timm
import torch
from common import alternate, bench_entry, median, paddy_learner, parse, parser, quietly, sample_data, show, sync, timed
from fastai.vision.all import Callback, DataLoaders, Learner
from torch import nn

from paddy.settings.entry import ModelEntry, OptimizerChoice, default_of

Batch = tuple[torch.Tensor, torch.Tensor]


def in_memory_batches(learn: Learner, n_batches: int) -> list[Batch]:
    """`n_batches` batches out of paddy's real pipeline (decoded, augmented, fastai's tensor types), on the device."""
    batches: list[Batch] = []
    while len(batches) < n_batches:
        for x, y in learn.dls.train:
            batches.append((x.clone(), y.clone()))
            if len(batches) == n_batches:
                break
    return batches


def use_in_memory_batches(learn: Learner, batches: list[Batch]) -> None:
    """Make `learn` train on `batches` (and validate on the first), skipping image decoding."""
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    learn.dls = DataLoaders(loader, torch.utils.data.DataLoader(batches[:1], batch_size=None))


class TrainPhaseTimer(Callback):
    """Seconds spent in the training phase of the last epoch (validation and fit setup excluded)."""

    order = 100

    def before_train(self) -> None:
        sync()
        self.started = time.perf_counter()

    def after_train(self) -> None:
        sync()
        self.seconds = time.perf_counter() - self.started


class PlainLoop:
    """The loop a user writes by hand: timm model, AdamW, OneCycleLR, loss / accum, autocast + GradScaler."""

    def __init__(self, entry: ModelEntry, n_classes: int, device: str):
        self.entry, self.device, self.fp16 = entry, device, entry.precision == "fp16"
        self.model = timm.create_model(entry.arch, pretrained=False, num_classes=n_classes).to(device)
        # fastai's Adam defaults: betas (0.9, 0.99), eps 1e-5, decoupled weight decay 0.01
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=entry.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01
        )
        self.scaler = torch.amp.GradScaler(device, enabled=self.fp16)
        self.loss_func = nn.CrossEntropyLoss()

    def epoch(self, batches: list[Batch]) -> None:
        accum = self.entry.accum
        schedule = torch.optim.lr_scheduler.OneCycleLR(self.opt, self.entry.lr, total_steps=len(batches) // accum)
        self.model.train()
        for i, (x, y) in enumerate(batches):
            with torch.autocast(self.device, dtype=torch.float16, enabled=self.fp16):
                loss = self.loss_func(self.model(x), y) / accum
            self.scaler.scale(loss).backward()
            if (i + 1) % accum == 0:
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad()
                schedule.step()


def plain_tensors(batches: list[Batch]) -> list[Batch]:
    """The same batches as plain torch tensors, as a hand-written loop holds them."""
    return [(x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor)) for x, y in batches]


def timed_paddy_epoch(learn: Learner, batches: list[Batch], lr: float) -> Callable[[], float]:
    """One one-cycle epoch of `learn` on the in-memory `batches`, timed over its training phase."""
    use_in_memory_batches(learn, batches)
    timer = TrainPhaseTimer()
    learn.add_cb(timer)

    def epoch() -> float:
        quietly(lambda: learn.fit_one_cycle(1, lr))
        return timer.seconds

    return epoch


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args)
    step_bs = entry.bs // entry.accum
    data = sample_data(args)
    batches = in_memory_batches(paddy_learner(entry, data), args.batches)
    cases = {
        f"paddy, opt {choice}": timed_paddy_epoch(paddy_learner(bench_entry(args, opt=choice), data), batches, entry.lr)
        for choice in OptimizerChoice
    }
    plain, plain_batches = PlainLoop(entry, len(data.classes), args.device), plain_tensors(batches)
    cases["plain"] = lambda: timed(lambda: plain.epoch(plain_batches))
    seconds = alternate(cases, args.reps)
    images = len(batches) * step_bs
    speed = {name: images / median(times) for name, times in seconds.items()}
    fastai = speed[f"paddy, opt {OptimizerChoice.fastai}"]
    rows = [
        {
            "loop": name,
            "images/s": speed[name],
            "median s": median(times),
            "runs": len(times),
            "vs plain": speed[name] / speed["plain"],
            "vs fastai Adam": speed[name] / fastai,
        }
        for name, times in seconds.items()
    ]
    default = f"paddy, opt {default_of('opt')}"
    show(
        f"training throughput: {entry.arch} {args.size}px, step batch {step_bs} x accum {entry.accum}, "
        f"{args.precision} on {args.device}",
        rows,
        args,
        note=f"paddy default ({default}) / plain = {speed[default] / speed['plain']:.3f} (target >= 0.9), "
        f"{images} images per run",
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="batches per timed epoch (a multiple of --accum)")
    args = parse(p)
    if args.batches % args.accum:
        p.error("--batches must be a multiple of --accum (every epoch ends on an optimizer step)")
    main(args)
