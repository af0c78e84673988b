"""Benchmark 7: training images/s of paddy's learner with `channels_last` and `compile` on and off.

The same batches (decoded once by paddy's pipeline, in memory on the device) train one one-cycle
epoch per case, cases alternated; only the training phase is timed, and each case runs once
untimed first (so torch.compile's compiling is not in the figures; it is reported apart).
"""

from __future__ import annotations

import argparse
import time

from common import alternate, bench_entry, median, paddy_learner, parse, parser, quietly, sample_data, show
from throughput import in_memory_batches, timed_paddy_epoch

from paddy.data.competition import CompetitionData

CASES = {
    "default": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "channels_last + compile": {"channels_last": True, "compile": True},
}


def speed_rows(args: argparse.Namespace, data: CompetitionData, cases: list[str]) -> list[dict]:
    """images/s of each case on `data`, its ratio to the first case, and its first (compiling) epoch's seconds."""
    entry = bench_entry(args)
    batches = in_memory_batches(paddy_learner(entry, data), args.batches)
    epochs, first = {}, {}
    for name in cases:
        learn = paddy_learner(bench_entry(args, **CASES[name]), data)
        epochs[name] = timed_paddy_epoch(learn, batches, entry.lr)
        started = time.perf_counter()
        quietly(epochs[name])
        first[name] = time.perf_counter() - started
    seconds = alternate(epochs, args.reps)
    images = len(batches) * (entry.bs // entry.accum)
    speed = {name: images / median(times) for name, times in seconds.items()}
    return [
        {
            "case": name,
            "images/s": speed[name],
            "vs default": speed[name] / speed[cases[0]],
            "first epoch s": first[name],
            "runs": len(seconds[name]),
        }
        for name in cases
    ]


def main(args: argparse.Namespace) -> None:
    rows = speed_rows(args, sample_data(args), args.cases)
    show(
        f"channels_last and compile: {args.arch} {args.size}px, bs {args.bs}, {args.precision} on {args.device}",
        rows,
        args,
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=8, help="batches per timed epoch")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="the first is the baseline")
    main(parse(p))
