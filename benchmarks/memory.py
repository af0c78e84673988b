"""Benchmark 3: peak training memory for accum = 1, 2, 4, 8 at one effective batch.

Each accum is measured by paddy's own memory probe (`paddy.memory.measure_training`: the
real learner, trained to its second optimizer step). On CUDA the figure is the caching
allocator's peak (reserved); on the CPU, which keeps no allocator statistics, it is the
peak of live tensor storages seen by a TorchDispatchMode (the probe's estimate without its
CUDA context allowance), in fp32 and, for a GPU run in fp16, in 16-bit autocast too. The
floor no accumulation can go below is parameters + gradients + optimizer state (fastai's Adam
keeps two tensors per parameter) + buffers.
"""

from __future__ import annotations

import argparse

from common import bench_entry, paddy_learner, parse, parser, sample_data, show

from paddy.data.competition import CompetitionData
from paddy.memory.measure import MIB, measure_training
from paddy.runs.probes import MEASURED
from paddy.settings.entry import ModelEntry

ADAM_STATE_PER_PARAM = 2  # running averages of the gradient and of its square


def floor_mib(entry: ModelEntry, data: CompetitionData) -> float:
    """Parameters, their gradients and Adam state, and buffers: held whatever the accum."""
    model = paddy_learner(entry, data, num_workers=0).model
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return (params * (2 + ADAM_STATE_PER_PARAM) + buffers) / MIB


def peak_mib(entry: ModelEntry, accum: int, data: CompetitionData) -> tuple[dict[str, float], str]:
    """Peak training memory at `accum` (on the CPU in fp32 and, for a GPU run in fp16, in 16-bit
    autocast, which decides) and how it was taken."""
    measurement = measure_training(entry, accum, data)
    if measurement.kind == MEASURED:
        return {"peak MiB": measurement.parts["reserved_peak_mib"]}, "torch.cuda.max_memory_reserved"
    parts = measurement.parts
    figures = {"peak MiB": parts["tensors_mib"], "fp32 MiB": parts["tensors_mib_fp32"]}
    if "tensors_mib_16bit" in parts:
        figures["16-bit MiB"] = parts["tensors_mib_16bit"]
    return figures, f"peak live tensor storages (TorchDispatchMode), decided by {parts['decided_by']}"


def main(args: argparse.Namespace) -> None:
    entry, data = bench_entry(args, precision=args.gpu_precision), sample_data(args)
    floor = floor_mib(entry, data)
    rows, how = [], ""
    for accum in args.accums:
        figures, how = peak_mib(entry, accum, data)
        rows.append(
            {"accum": accum, "step bs": entry.bs // accum, **figures, "above floor MiB": figures["peak MiB"] - floor}
        )
    for row in rows:
        row["peak / accum 1"] = row["peak MiB"] / rows[0]["peak MiB"]
    show(
        f"peak training memory: {args.arch} {args.size}px, effective batch {args.bs}, "
        f"{args.precision} on {args.device}",
        rows,
        args,
        note=f"peak: {how}; floor (parameters + gradients + Adam state + buffers) = {floor:.1f} MiB "
        f"= {floor / rows[0]['peak MiB']:.3f} of accum 1",
    )


if __name__ == "__main__":
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--accums", type=int, nargs="+", default=[1, 2, 4, 8], help="accum factors (divisors of --bs)")
    p.add_argument(
        "--gpu-precision", choices=("auto", "fp16", "fp32"), default="auto", help="the GPU run a CPU estimate is for"
    )
    main(parse(p))
