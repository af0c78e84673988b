"""The GPU check: what paddy's CPU-only tests and benchmarks cannot tell, measured in one go on a CUDA
machine (under 8 minutes, no network: random init, generated images), written as one JSON and a
markdown table for BENCHMARKS.md.

    python scripts/gpu_check.py --out gpu-check                 # a CUDA machine
    python scripts/gpu_check.py --out /tmp/check --cpu-only --tiny   # anywhere: the CUDA parts skipped

Parts, each timed, limited in time and guarded (a failure is recorded and the next part runs):
  memory          measured peak of convnext_small 128 px bs 64 at accum 1, 2, 4 beside the CPU estimate
  fp16_training   a few epochs of resnet18 on the generated demo data in fp16
  loader_vs_gpu   images/s the loader's CPU side delivers against what the GPU trains
  vs_plain_loop   paddy's learner against a hand-written loop, foreach AdamW on both sides
  channels_last   convnext_small 224 px fp16 with channels_last off and on
  gpu_pool        `paddy run configs/tiny.toml --gpus all` (needs 2 GPUs)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402
from common import alternate, bench_entry, machine, median, paddy_learner, sample_data, timed  # noqa: E402
from fastai.vision.all import default_device, defaults  # noqa: E402
from loading import cpu_side, loader_pass  # noqa: E402
from speed import speed_rows  # noqa: E402
from throughput import PlainLoop, in_memory_batches, plain_tensors, timed_paddy_epoch  # noqa: E402

from paddy.core.files import atomic_write_text, write_json  # noqa: E402
from paddy.data.competition import CompetitionData, check_layout  # noqa: E402
from paddy.data.demo import write_demo_dataset  # noqa: E402
from paddy.memory.measure import estimate_in_gpu_precision, free_memory, measure_training, probe_subset  # noqa: E402
from paddy.settings.budget import chosen_budget  # noqa: E402
from paddy.settings.entry import OptimizerChoice, Precision, accum_choices  # noqa: E402
from paddy.training.plan import plan_training  # noqa: E402
from paddy.training.run import plan_run, train  # noqa: E402

JSON_FILE, TABLE_FILE = "gpu-check.json", "gpu-check.md"
Rows = Iterable[dict]  # a part yields its rows one by one: what it found before a failure is kept


class Skipped(Exception):
    """A part that cannot run here (no CUDA, one GPU): recorded as skipped, not failed."""


class PartTimeout(Exception):
    """A part ran past its time limit."""


@dataclass(frozen=True)
class Check:
    """Where and at what scale the parts run."""

    out: Path
    cuda: bool
    tiny: bool

    @property
    def precision(self) -> str:
        return "fp16" if self.cuda else "fp32"

    def bench_args(self, arch: str, size: int, bs: int) -> argparse.Namespace:
        """The flags benchmarks/ take, for one part (at the test's scale with --tiny)."""
        if self.tiny:
            arch, size, bs = "test_resnet", 32, 8
        settings = {
            "arch": arch,
            "size": size,
            "bs": bs,
            "accum": 1,
            "precision": self.precision,
            "device": "cuda" if self.cuda else "cpu",
            "per_class": 3 if self.tiny else 24,
            "n_test": 4 if self.tiny else 32,
            "work": self.out / "work",
            "reps": 1 if self.tiny else 3,
            "batches": 2 if self.tiny else 8,
        }
        return argparse.Namespace(**settings)

    def data(self, args: argparse.Namespace) -> CompetitionData:
        """A part's images: the benchmarks' 480x640 sample, or with --tiny a few small demo images."""
        return self.demo_data() if self.tiny else sample_data(args)

    def demo_data(self) -> CompetitionData:
        """The generated demo dataset (with --tiny, 3 images a class), written once under `out`."""
        root = self.out / "work" / ("demo-tiny" if self.tiny else "demo")
        if not (root / "sample_submission.csv").is_file():
            write_demo_dataset(root, **({"per_class": 3, "n_test": 4} if self.tiny else {}))
        return check_layout(root)


@contextmanager
def on_cpu() -> Iterator[None]:
    """fastai's loaders and learners on the CPU for a while (the memory estimate runs there)."""
    previous = defaults.use_cuda
    default_device(False)
    try:
        yield
    finally:
        default_device(previous)


def memory(check: Check) -> Rows:
    """Measured peak (CUDA) beside the CPU estimate, forcing each accum (the search stops at the first fit)."""
    args = check.bench_args("convnext_small", 128, 64)
    entry = bench_entry(args, precision="auto")
    data = check.data(args)
    for accum in accum_choices(entry.bs)[:3]:
        plan = plan_training(replace(entry, accum=accum, precision=Precision.fp32))
        with on_cpu():
            estimate = estimate_in_gpu_precision(plan, Precision.fp16, probe_subset(data, entry.bs, entry.valid_pct), 0)
        free_memory()
        row = {
            "accum": accum,
            "step batch": entry.bs // accum,
            "estimate MiB": estimate.peak_mib,
            "estimate fp32 tensors MiB": estimate.parts["tensors_mib_fp32"],
            "estimate 16-bit tensors MiB": estimate.parts["tensors_mib_16bit"],
        }
        if check.cuda:
            measured = measure_training(entry, accum, data)
            row |= {"measured MiB": measured.peak_mib, "estimate / measured": estimate.peak_mib / measured.peak_mib}
            free_memory()
        yield row


def fp16_training(check: Check) -> Rows:
    """A real `train()` of a small config in fp16 (fp32 without CUDA): finite losses, an error rate."""
    data = check.demo_data()
    args = check.bench_args("resnet18", 64, 32)
    entry = bench_entry(args, epochs=1 if check.tiny else 3)
    plan = plan_run(entry, data, check.out / "work" / "runs", chosen_budget())
    result = train(plan, num_workers=0 if check.tiny else None, on_epoch=print, pictures=False)  # only its losses
    losses = result.history["train_loss"].tolist()
    yield {
        "arch": entry.arch,
        "precision": str(plan_training(entry).precision),
        "epochs": len(losses),
        "last train loss": losses[-1],
        "losses finite": all(math.isfinite(loss) for loss in losses),
        "valid error": result.valid_error,
        "train s": result.train_seconds,
        "predict s": result.predict_seconds,
    }


def loader_vs_gpu(check: Check) -> Rows:
    """Does the loader feed the GPU? Its CPU side's images/s (decode, item resize, collate in the
    workers) against the training images/s on batches already in memory."""
    args = check.bench_args("resnet18", 224, 64)
    entry = bench_entry(args)
    learn = paddy_learner(entry, check.data(args), 0 if check.tiny else None)
    loader = cpu_side(learn)
    loader_pass(loader)  # workers started, files cached once
    loader_s = median([loader_pass(loader) for _ in range(args.reps)])
    batches = in_memory_batches(learn, args.batches)
    epoch = timed_paddy_epoch(learn, batches, entry.lr)
    epoch()
    train_s = median([epoch() for _ in range(args.reps)])
    loader_speed = len(learn.dls.train_ds) / loader_s
    train_speed = len(batches) * entry.bs / train_s
    yield {
        "arch": entry.arch,
        "size": args.size,
        "loader CPU side images/s": loader_speed,
        "training images/s": train_speed,
        "loader / training": loader_speed / train_speed,
    }


def vs_plain_loop(check: Check) -> Rows:
    """paddy's learner (opt adamw-foreach) against a hand-written loop with foreach AdamW, same batches."""
    args = check.bench_args("resnet18", 128, 64)
    entry = bench_entry(args, opt=OptimizerChoice.adamw_foreach)
    data = check.data(args)
    batches = in_memory_batches(paddy_learner(entry, data, 0), args.batches)
    paddy_epoch = timed_paddy_epoch(paddy_learner(entry, data, 0), batches, entry.lr)
    plain, plain_batches = PlainLoop(entry, len(data.classes), args.device), plain_tensors(batches)
    plain.opt = torch.optim.AdamW(
        plain.model.parameters(), lr=entry.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, foreach=True
    )
    cases: dict[str, Callable[[], float]] = {
        "paddy, adamw-foreach": paddy_epoch,
        "plain, foreach AdamW": lambda: timed(lambda: plain.epoch(plain_batches)),
    }
    seconds = alternate(cases, args.reps)
    speed = {name: len(batches) * entry.bs / median(times) for name, times in seconds.items()}
    for name in speed:
        yield {"loop": name, "images/s": speed[name], "vs plain": speed[name] / speed["plain, foreach AdamW"]}


def channels_last(check: Check) -> Rows:
    """convnext_small at 224 px in fp16, channels_last off and on (benchmarks/speed.py)."""
    args = check.bench_args("convnext_small", 224, 64)
    yield from speed_rows(args, check.data(args), ["default", "channels_last"])


def gpu_pool(check: Check) -> Rows:
    """`paddy run configs/tiny.toml --gpus all` on the demo data: every run finishes, one worker per GPU."""
    gpus = torch.cuda.device_count() if check.cuda else 0
    if gpus < 2:
        raise Skipped(f"needs 2 GPUs, this machine has {gpus}")
    out = check.out / "work" / "pool-runs"
    command = [sys.executable, "-m", "paddy", "run", str(REPO / "configs" / "tiny.toml"), "--gpus", "all"]
    env = {"PADDY_DEMO_DIR": str(check.out / "work" / "pool-demo")}
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, env={**os.environ, **env}, timeout=75
    )
    finished = list(out.glob("*/predictions.safetensors"))
    row = {"gpus": gpus, "exit code": done.returncode, "runs finished": len(finished)}
    yield row | {"seconds": time.perf_counter() - started, "last output": (done.stdout + done.stderr).strip()[-300:]}


CUDA_ONLY = {"gpu_pool"}
PARTS: dict[str, tuple[Callable[[Check], Rows], int]] = {  # each part and its time limit: 460 s in all
    "memory": (memory, 190),  # the CPU estimate's tensor tracker is the slow part; each accum's row is kept
    "fp16_training": (fp16_training, 50),
    "loader_vs_gpu": (loader_vs_gpu, 40),
    "vs_plain_loop": (vs_plain_loop, 40),
    "channels_last": (channels_last, 60),
    "gpu_pool": (gpu_pool, 80),
}


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Raise PartTimeout in this (main) thread after `seconds`."""

    def expire(signum, frame):
        raise PartTimeout(f"ran past its limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def guarded(name: str, part: Callable[[Check], Rows], limit: int, check: Check) -> dict:
    """Run one part: its rows, status (ok, failed, skipped) and seconds; an exception is recorded, not raised."""
    started = time.perf_counter()
    record: dict = {"part": name, "rows": [], "error": None}
    try:
        if name in CUDA_ONLY and not check.cuda:
            raise Skipped("--cpu-only" if torch.cuda.is_available() else "no CUDA GPU")
        with time_limit(limit):
            for row in part(check):
                record["rows"].append(row)
        record["status"] = "ok"
    except Skipped as e:
        record |= {"status": "skipped", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - one part's failure must not lose the others
        record |= {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    free_memory()
    return {**record, "seconds": round(time.perf_counter() - started, 2)}


def cell(value) -> str:
    """A table cell: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
    """The report as markdown for BENCHMARKS.md: a summary table, then each part's rows."""
    lines = [f"Machine: {report['machine']}. Total {report['seconds']:.0f} s.", ""]
    lines += ["| part | status | seconds | note |", "|---|---|---:|---|"]
    lines += [
        f"| {p['part']} | {p['status']} | {p['seconds']:.1f} | {cell(p['error'] or '')} |" for p in report["parts"]
    ]
    for part in report["parts"]:
        if not part["rows"]:
            continue
        columns = list(dict.fromkeys(key for row in part["rows"] for key in row))
        lines += ["", f"#### {part['part']}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in part["rows"]]
    return "\n".join(lines) + "\n"


def run_check(check: Check, names: list[str]) -> dict:
    """Every chosen part in order, then the JSON and the markdown table written into `check.out`."""
    default_device(check.cuda)
    started = time.perf_counter()
    parts = []
    for name in names:
        print(f"gpu check: {name} ...", flush=True)
        parts.append(guarded(name, *PARTS[name], check))
        print(f"gpu check: {name} {parts[-1]['status']} in {parts[-1]['seconds']} s", flush=True)
    report = {
        "machine": machine(),
        "cuda": check.cuda,
        "tiny": check.tiny,
        "gpus": torch.cuda.device_count() if check.cuda else 0,
        "seconds": round(time.perf_counter() - started, 2),
        "parts": parts,
    }
    write_json(check.out / JSON_FILE, report)
    atomic_write_text(check.out / TABLE_FILE, markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help=f"folder for {JSON_FILE}, {TABLE_FILE} and work files")
    p.add_argument("--cpu-only", action="store_true", help="skip the CUDA parts and run the others on the CPU")
    p.add_argument("--tiny", action="store_true", help="test_resnet at 32 px on a few images (the test's scale)")
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS), help="the parts to run")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu_only
    if not cuda and not args.cpu_only:
        p.error("no CUDA GPU here: pass --cpu-only to run the parts that do not need one")
    args.out.mkdir(parents=True, exist_ok=True)
    report = run_check(Check(args.out.resolve(), cuda, args.tiny), args.parts)
    print(json.dumps({p["part"]: p["status"] for p in report["parts"]}))
    print(f"written: {args.out / JSON_FILE} and {args.out / TABLE_FILE}")
    return 0 if all(p["status"] != "failed" for p in report["parts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
