"""Benchmark 2: epoch time reading the original 480x640 JPEGs against the `paddy presize` copy.

The same model and settings train one epoch on each (paddy's real data pipeline, default
workers), alternating. The loader alone is timed too, twice: whole (decode, item resize,
batch augmentation on this device) and its CPU side only (decode, item resize, collate in
the workers): with a GPU, the batch augmentation runs on the GPU and the CPU side's
images/s is what a 2-vCPU machine can feed the model.
"""

from __future__ import annotations

import argparse
from typing import Callable

from common import alternate, bench_entry, median, paddy_learner, parse, parser, presized_data, sample_data, show, timed
from fastai.vision.all import DataLoader, Learner


def epoch(learn: Learner, lr: float) -> float:
    """Seconds of one training epoch with validation, as `paddy train` runs it."""
    return timed(lambda: learn.fit_one_cycle(1, lr))


def loader_pass(loader: DataLoader) -> float:
    """Seconds to produce every batch once, with no model."""
    return timed(lambda: sum(1 for _ in loader))


def cpu_side(learn: Learner) -> DataLoader:
    """The training loader without its batch transforms: only what the CPU does whatever the device."""
    return learn.dls.train.new(after_batch=[])


def timings(learn: Learner, lr: float, with_epoch: bool) -> dict[str, Callable[[], float]]:
    """What is timed for one source of images, by column name."""
    loader, cpu_loader = learn.dls.train, cpu_side(learn)
    cases = {"epoch s": lambda: epoch(learn, lr)} if with_epoch else {}
    return {**cases, "loader s": lambda: loader_pass(loader), "CPU side s": lambda: loader_pass(cpu_loader)}


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args, item_size=args.item)
    original = sample_data(args)
    sources = {"original 480x640": original, f"presized {args.longest}": presized_data(original, args.longest)}
    learners = {name: paddy_learner(entry, data, args.workers) for name, data in sources.items()}
    cases = {
        f"{name} | {column}": run
        for name, learn in learners.items()
        for column, run in timings(learn, entry.lr, not args.skip_epoch).items()
    }
    seconds = alternate(cases, args.reps)
    n_train = len(learners[next(iter(sources))].dls.train_ds)
    columns = list(timings(learners[next(iter(sources))], entry.lr, not args.skip_epoch))
    rows = []
    for name in sources:
        row = {"images": name, **{column: median(seconds[f"{name} | {column}"]) for column in columns}}
        rows.append(
            {**row, "loader images/s": n_train / row["loader s"], "CPU side images/s": n_train / row["CPU side s"]}
        )
    ratios = [f"{column} original / presized = {rows[0][column] / rows[1][column]:.2f}" for column in columns]
    show(
        f"data loading: {entry.arch} {args.size}px, item resize {entry.resize_to[0]}, bs {entry.bs}, "
        f"{n_train} training images, workers {'default' if args.workers is None else args.workers}, {args.device}",
        rows,
        args,
        note="; ".join(ratios),
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--longest", type=int, default=256, help="presize: longest side in pixels")
    p.add_argument("--item", type=int, default=None, help="item resize before augmentation (default: paddy's, 2x size)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default: paddy's)")
    p.add_argument("--skip-epoch", action="store_true", help="time the loader only (large sizes on CPU)")
    main(parse(p))
