"""What the benchmark scripts share: sample images, paddy's own learner, alternating timings, tables.

The paddy side of every benchmark goes through paddy's real code (`plan_training`,
`make_learner`, hence `accumulation`, `build_dataloaders`, `build_learner`); only the
plain-PyTorch side is written here by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
from fastai.vision.all import Learner, default_device
from fastcore.basics import num_cpus
from rich.console import Console

from paddy.cli.tables import frame_table
from paddy.data.competition import COMPETITION, CompetitionData, check_layout
from paddy.data.demo import write_demo_dataset
from paddy.data.presize import presize_dataset
from paddy.settings.checks import apply_overrides
from paddy.settings.entry import ModelEntry
from paddy.training.learner import make_learner
from paddy.training.plan import plan_training

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / COMPETITION
PADDY_SIZE = (640, 480)  # (height, width): the competition's portrait JPEGs
console = Console(soft_wrap=True)
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")  # as `paddy` does


def parser(description: str) -> argparse.ArgumentParser:
    """Flags every benchmark takes; the defaults keep all four under 10 minutes on 2 CPU cores."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--arch", default="resnet18", help="timm architecture")
    p.add_argument("--size", type=int, default=64, help="training size in pixels (square)")
    p.add_argument("--bs", type=int, default=32, help="effective batch size")
    p.add_argument("--accum", type=int, default=1, help="gradient accumulation factor")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions of each case, alternated")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("auto", "fp16", "fp32"), default="auto", help="auto: fp16 on CUDA")
    p.add_argument("--per-class", type=int, default=24, help="training images per class in the sample")
    p.add_argument("--n-test", type=int, default=32, help="test images in the sample")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "paddy-bench", help="sample cache")
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse flags and settle 'auto' device and precision, so the printed command is explicit."""
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision == "auto":
        args.precision = "fp16" if args.device == "cuda" else "fp32"
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA GPU")
    if args.precision == "fp16" and args.device != "cuda":
        p.error("--precision fp16 needs --device cuda")
    default_device(args.device == "cuda")  # fastai's data loaders and learners follow it
    return args


def reproduce_command(args: argparse.Namespace) -> str:
    """The exact command line (every flag spelled out) that repeats this measurement."""
    flags = []
    for name, value in vars(args).items():
        if value is None or value is False:
            continue
        values = (
            ""
            if value is True
            else " ".join(shlex.quote(str(v)) for v in (value if isinstance(value, list) else [value]))
        )
        flags.append(f"--{name.replace('_', '-')} {values}".rstrip())
    return f"python benchmarks/{Path(sys.argv[0]).name} " + " ".join(flags)


def machine() -> str:
    """CPU model, cores this process may use, torch threads, and the GPU if one is used."""
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {num_cpus()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads{gpu}"


def sample_data(args: argparse.Namespace) -> CompetitionData:
    """Paddy-sized sample: a subset of ../shared's competition data when present, else generated 480x640 JPEGs.

    Built once in a staging folder and renamed, so an interrupted build is never reused.
    """
    source = "shared" if (SHARED_DATA / "sample_submission.csv").is_file() else "generated"
    root = args.work / f"{source}-{args.per_class}x{args.n_test}"
    if not (root / "sample_submission.csv").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
        if source == "shared":
            copy_subset(check_layout(SHARED_DATA), staging / "data", args.per_class, args.n_test)
        else:
            write_demo_dataset(staging / "data", args.per_class, args.n_test, size=PADDY_SIZE)
        os.replace(staging / "data", root)
        shutil.rmtree(staging)
    return check_layout(root)


def copy_subset(data: CompetitionData, dest: Path, per_class: int, n_test: int) -> None:
    """The first `per_class` images of each class and `n_test` test images, with the CSV files."""
    taken: dict[str, int] = {}
    for path in data.train_images:
        if taken.setdefault(path.parent.name, 0) < per_class:
            taken[path.parent.name] += 1
            (dest / "train_images" / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / "train_images" / path.parent.name / path.name)
    (dest / "test_images").mkdir(parents=True)
    for path in data.test_images[:n_test]:
        shutil.copy2(path, dest / "test_images" / path.name)
    for csv in ("train.csv", "sample_submission.csv"):
        if (data.root / csv).is_file():
            shutil.copy2(data.root / csv, dest / csv)


def presized_data(data: CompetitionData, longest: int = 256) -> CompetitionData:
    """`paddy presize` of the sample (resumes, so it is only written once)."""
    dest = data.root.with_name(f"{data.root.name}-presized-{longest}")
    presize_dataset(data.root, dest, longest=longest)
    return check_layout(dest)


def bench_entry(args: argparse.Namespace, **overrides) -> ModelEntry:
    """The model entry of a benchmark: random init (no download), one-cycle, fixed seed."""
    settings = {
        "arch": args.arch,
        "size": (args.size, args.size),
        "bs": args.bs,
        "accum": args.accum,
        "precision": args.precision,
        "pretrained": False,
        "finetune": False,
        "epochs": 1,
        "seed": 0,
    }
    return apply_overrides(ModelEntry(), {**settings, **overrides})


def paddy_learner(entry: ModelEntry, data: CompetitionData, num_workers: int | None = None) -> Learner:
    """Exactly the learner `paddy train` builds for `entry` (same data pipeline, callbacks, precision)."""
    return make_learner(plan_training(entry), data, [], num_workers)


def sync() -> None:
    """Wait for queued GPU work, so a timer measures work done, not work queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def quietly(run: Callable[[], object]) -> None:
    """Run with output silenced: fastai's progress bar still runs (and costs what it costs), unseen."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run()


def timed(run: Callable[[], object]) -> float:
    """Wall-clock seconds of `run()`, run quietly."""
    sync()
    started = time.perf_counter()
    quietly(run)
    sync()
    return time.perf_counter() - started


def alternate(cases: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Run each case once to warm up, then `reps` rounds of A B A B ..., so drift hits all alike."""
    for case in cases.values():
        case()
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            seconds[name].append(case())
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def show(title: str, rows: list[dict], args: argparse.Namespace, note: str = "") -> None:
    """Print the result table, the machine it ran on and the command that repeats it."""
    console.print(frame_table(pd.DataFrame(rows), title=title, floats="{:.3f}"))
    if note:
        console.print(note)
    console.print(f"machine: {machine()}")
    console.print(f"reproduce: {reproduce_command(args)}", highlight=False)
