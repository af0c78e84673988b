"""Benchmark: what probing memory costs next to the training steps it runs.

Probes resnet18 at 64 px on the demo data (bs 16, accum 1, 2 and 4) the way `paddy
probe-memory` does (learner built per accum, CPU tensor accounting or CUDA measurement,
memory freed after each), and times the same training steps alone (same learner and
subset, no accounting, learner building not counted). The target is a ratio of at most 3.
Each figure is the fastest of --repeats runs, after one warm-up run, because the first fit
in a process pays one-off start-up costs and shared machines are noisy.

Reproduce: .venv/bin/python scripts/bench_probe.py [--repeats 3] [--num-workers 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from paddy.data.competition import check_layout
from paddy.data.demo import ensure_demo_dataset
from paddy.memory.measure import MAX_PROBE_EPOCHS, StopAfterSecondStep, measure_training, probe_device, probe_subset
from paddy.memory.search import try_accum
from paddy.settings.checks import apply_overrides
from paddy.settings.entry import DEMO_PRESET, ModelEntry
from paddy.training.learner import make_learner
from paddy.training.plan import plan_training

ACCUMS = (1, 2, 4)


def probe_seconds(entry: ModelEntry, data, num_workers: int) -> tuple[float, list]:
    """Wall time of probing each accum in turn (everything the probe does), and the trials."""
    started = time.perf_counter()
    measure = partial(measure_training, data=data, num_workers=num_workers)
    trials = [try_accum(entry, accum, float("inf"), measure) for accum in ACCUMS]
    return time.perf_counter() - started, trials


def training_seconds(entry: ModelEntry, data, num_workers: int) -> float:
    """Wall time of the same training steps alone: fit up to the second optimizer step."""
    subset = probe_subset(data, entry.bs, entry.valid_pct)
    total = 0.0
    for accum in ACCUMS:
        learn = make_learner(plan_training(replace(entry, accum=accum)), subset, [StopAfterSecondStep()], num_workers)
        started = time.perf_counter()
        with learn.no_bar(), learn.no_logging():
            learn.fit(MAX_PROBE_EPOCHS, entry.lr)
        total += time.perf_counter() - started
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (0: all in this process)")
    args = parser.parse_args()
    entry = apply_overrides(ModelEntry(), {**DEMO_PRESET, "seed": 0})
    with tempfile.TemporaryDirectory() as tmp:
        data = check_layout(ensure_demo_dataset(Path(tmp) / "demo"))
        training_seconds(entry, data, args.num_workers)
        probe_seconds(entry, data, args.num_workers)
        train_best = min(training_seconds(entry, data, args.num_workers) for _ in range(args.repeats))
        probes = [probe_seconds(entry, data, args.num_workers) for _ in range(args.repeats)]
    probe_best, trials = min(probes, key=lambda p: p[0])
    device = probe_device()
    print(f"device: {device.name} ({device.kind}); {entry.describe()} bs {entry.bs}, accum {ACCUMS}")
    for trial in trials:
        print(f"  accum {trial.accum}: per-step batch {trial.step_bs}, peak {trial.peak_mib:.0f} MiB ({device.kind})")
    print(f"training steps alone: {train_best:.2f} s (best of {args.repeats})")
    print(f"probe:                {probe_best:.2f} s (best of {args.repeats})")
    print(f"ratio: {probe_best / train_best:.2f} (target <= 3)")
    print(
        f"reproduce: .venv/bin/python scripts/bench_probe.py --repeats {args.repeats} --num-workers {args.num_workers}"
    )


if __name__ == "__main__":
    main()
