"""Benchmark 5: what paddy's per-epoch checkpoint costs, as a share of one epoch of training.

After every epoch `paddy train` saves `checkpoint.pt` (model, optimizer state, random states,
history; `paddy.checkpoints.save_checkpoint`, written atomically). One training epoch and one
checkpoint save of the same learner alternate in one run; the table gives the checkpoint's size,
its time and that time as a share of the epoch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import alternate, bench_entry, median, paddy_learner, parse, parser, quietly, sample_data, show, timed

from paddy.training.checkpoint import Position, save_checkpoint

MIB = 2**20


def main(args: argparse.Namespace) -> None:
    entry = bench_entry(args)
    data = sample_data(args)
    learn = paddy_learner(entry, data)
    quietly(lambda: learn.fit(1, entry.lr))  # the optimizer state exists from the first step on
    path = Path(tempfile.mkdtemp(prefix="paddy-bench-checkpoint-")) / "checkpoint.pt"
    cases = {
        "one training epoch": lambda: timed(lambda: learn.fit(1, entry.lr)),
        "one checkpoint save": lambda: timed(lambda: save_checkpoint(path, learn, {}, Position(1, 1), [])),
    }
    seconds = alternate(cases, args.reps)
    epoch_s, save_s = median(seconds["one training epoch"]), median(seconds["one checkpoint save"])
    rows = [
        {
            "model": entry.arch,
            "images per epoch": len(learn.dls.train.items),
            "epoch s": epoch_s,
            "checkpoint s": save_s,
            "checkpoint MiB": path.stat().st_size / MIB,
            "checkpoint / epoch": save_s / epoch_s,
        }
    ]
    show(
        f"checkpoint cost: {entry.arch} {args.size}px, bs {entry.bs}, {args.precision} on {args.device}",
        rows,
        args,
        note="a real epoch has many more images than this sample, so the share there is smaller still",
    )


if __name__ == "__main__":
    main(parse(parser(__doc__.splitlines()[0])))
