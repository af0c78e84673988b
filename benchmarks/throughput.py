"""Benchmark 1: training images/s of paddy's learner against a hand-written PyTorch + timm loop.

Same arch, size, per-step batch, optimizer (AdamW with fastai's Adam defaults), one-cycle
schedule, accumulation and precision; the same batches, already decoded and on the device.
The two alternate in one run, so machine load hits both alike. Target: paddy >= 0.9x.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from common import alternate, bench_entry, median, paddy_learner, parse, parser, quietly, sample_data, show, sync, timed
from fastai.vision.all import Callback, DataLoaders, Learner
from torch import nn

from paddy.config import ModelEntry

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


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args)
    step_bs = entry.bs // entry.accum
    data = sample_data(args)
    learn = paddy_learner(entry, data)
    batches = in_memory_batches(learn, args.batches)
    use_in_memory_batches(learn, batches)
    timer = TrainPhaseTimer()
    learn.add_cb(timer)
    plain, plain_batches = PlainLoop(entry, len(data.classes), args.device), plain_tensors(batches)

    def paddy_epoch() -> float:
        quietly(lambda: learn.fit_one_cycle(1, entry.lr))
        return timer.seconds

    seconds = alternate({"paddy": paddy_epoch, "plain": lambda: timed(lambda: plain.epoch(plain_batches))}, args.reps)
    images = len(batches) * step_bs
    speed = {name: images / median(times) for name, times in seconds.items()}
    rows = [
        {
            "loop": name,
            "images/s": speed[name],
            "median s": median(times),
            "runs": len(times),
            "vs plain": speed[name] / speed["plain"],
        }
        for name, times in seconds.items()
    ]
    show(
        f"training throughput: {entry.arch} {args.size}px, step batch {step_bs} x accum {entry.accum}, "
        f"{args.precision} on {args.device}",
        rows,
        args,
        note=f"paddy / plain = {speed['paddy'] / speed['plain']:.3f} (target >= 0.9), {images} images per run",
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="batches per timed epoch (a multiple of --accum)")
    args = parse(p)
    if args.batches % args.accum:
        p.error("--batches must be a multiple of --accum (every epoch ends on an optimizer step)")
    main(args)
