"""Start-up work: the CPU time of `paddy --help` against a script importing only typer, rich and pandas,
how `paddy ensemble --config`'s run lookup grows with the number of runs (40 against 160), and the CPU
time of a training command's imports with Python's default garbage-collector thresholds against paddy's, and what
a collection between two runs costs after a plain gc.collect against after paddy's collect_then_freeze.

    python benchmarks/startup.py --reps 5 --work /tmp/paddy-startup

Ratios side by side in one run (A B A B), medians of `--reps`. Targets (issue "feed the GPU"): --help at
most 2x the plain imports' CPU; the lookup of 160 runs at most 4x that of 40 (each run's settings read once).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from paddy.ensembling.average import runs_matching_config
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions, save_predictions
from paddy.settings.config_file import EnsembleConfig
from paddy.settings.entry import ModelEntry

PLAIN = "import typer, rich.console, pandas"
HELP = "\n".join(
    ["import sys", "from paddy.cli.app import main", "sys.argv = ['paddy', '--help']", "try:", "    main()"]
    + ["except SystemExit:", "    pass"]
)

TRAINING = "import paddy.training.run"  # what every training command imports: torch, fastai, timm, sklearn
COLLECT_RARELY = "from paddy.core.processes import collect_rarely\ncollect_rarely()"  # as the paddy command does
# A collection between two runs of one process (free_memory), timed after the first one: plain, or paddy's
PLAIN_COLLECTION = "gc.collect()"
FREEZING_COLLECTION = "from paddy.core.processes import collect_then_freeze\ncollect_then_freeze()"


def child_cpu_seconds(code: str) -> float:
    """User + system CPU seconds of a fresh interpreter running `code` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def next_collection_seconds(first: str) -> float:
    """Seconds of the second full collection in a fresh interpreter with the training imports, `first` the first."""
    timed = "t = time.perf_counter()\ngc.collect()\nprint(time.perf_counter() - t)"
    code = f"import gc, time\n{COLLECT_RARELY}\n{TRAINING}\n{first}\n{timed}"
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(result.stdout.split()[-1])


def config_with_runs(out: Path, entries: int, folds: int = 5) -> EnsembleConfig:
    """A config of `entries` k-fold entries, each fold with a finished run under `out` (fake predictions)."""
    sizes = [(32 + 8 * i, 32 + 8 * i) for i in range(entries)]
    models = [ModelEntry(arch="resnet18", size=size, folds=folds, pretrained=False) for size in sizes]
    for entry in models:
        for one in entry.per_fold():
            run = RunFolder(out / f"c-{one.describe()}")
            run.start({**one.to_json(), "seed_used": 0, "data": str(out), "folds_sha256": "f"})
            run.write_result({"valid_error": 0.5, "train_seconds": 1.0, "predict_seconds": 1.0, "seed": 0})
            preds = Predictions(np.full((1, 2), 0.5, np.float32), ("a.jpg",), ("x", "y"), {"arch": one.arch})
            save_predictions(preds, run.predictions_path)
    return EnsembleConfig(models=models, data=out)


def lookup_seconds(out: Path, config: EnsembleConfig) -> float:
    started = time.perf_counter()
    runs_matching_config(out, config, out)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/paddy-startup"))
    args = parser.parse_args()
    plain, helped = [], []
    for _ in range(args.reps):
        plain.append(child_cpu_seconds(PLAIN))
        helped.append(child_cpu_seconds(HELP))
    default_gc, rare_gc = [], []
    for _ in range(args.reps):
        default_gc.append(child_cpu_seconds(TRAINING))
        rare_gc.append(child_cpu_seconds(f"{COLLECT_RARELY}\n{TRAINING}"))
    plain_collect, freezing_collect = [], []
    for _ in range(args.reps):
        plain_collect.append(next_collection_seconds(PLAIN_COLLECTION))
        freezing_collect.append(next_collection_seconds(FREEZING_COLLECTION))
    shutil.rmtree(args.work, ignore_errors=True)
    small, large = args.work / "runs-40", args.work / "runs-160"
    configs = {small: config_with_runs(small, 8), large: config_with_runs(large, 32)}
    times: dict[Path, list[float]] = {small: [], large: []}
    for _ in range(args.reps):
        for out in (small, large):
            times[out].append(lookup_seconds(out, configs[out]))
    result = {
        "plain imports CPU s": statistics.median(plain),
        "paddy --help CPU s": statistics.median(helped),
        "help / plain": statistics.median(helped) / statistics.median(plain),
        "lookup 40 runs s": statistics.median(times[small]),
        "lookup 160 runs s": statistics.median(times[large]),
        "160 / 40": statistics.median(times[large]) / statistics.median(times[small]),
        "training import, default gc CPU s": statistics.median(default_gc),
        "training import, paddy's gc CPU s": statistics.median(rare_gc),
        "default / paddy's": statistics.median(default_gc) / statistics.median(rare_gc),
        "next collection after gc.collect s": statistics.median(plain_collect),
        "next collection after collect_then_freeze s": statistics.median(freezing_collect),
        "gc.collect / collect_then_freeze": statistics.median(plain_collect) / statistics.median(freezing_collect),
    }
    print(json.dumps(result, indent=2))
    print(f"command: {sys.executable} benchmarks/startup.py --reps {args.reps} --work {args.work}")


if __name__ == "__main__":
    main()
