"""How much memory training one model entry takes at a given accum factor.

On CUDA it is measured: the caching allocator's peak plus what the process holds outside
the allocator (CUDA context, cuDNN/cuBLAS workspaces) as NVML reports it. Without a GPU it
is estimated: the peak bytes of the tensors the same training steps keep alive on the CPU,
plus a fixed allowance for the CUDA context. An estimate is never called a measurement.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from fastai.callback.fp16 import AMPMode, MixedPrecision
from fastai.vision.all import Callback, CancelFitException, CancelValidException, L
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from paddy.core.errors import PaddyError
from paddy.core.processes import collect_then_freeze
from paddy.data.competition import CompetitionData, training_split_size
from paddy.runs.probes import CUDA_CONTEXT_MIB, ESTIMATE, MEASURED
from paddy.settings.entry import ModelEntry, Precision
from paddy.training.learner import make_learner
from paddy.training.plan import TrainingPlan, plan_training, resolve_precision

MIB = 2**20
# Enough epochs of the probe subset to see two real optimizer steps even if fp16's
# gradient scaler skips the first few (it halves its scale on every overflow).
MAX_PROBE_EPOCHS = 10


@dataclass(frozen=True)
class Measurement:
    """Peak memory of the probe steps at one accum, and what it is made of (MiB)."""

    peak_mib: float
    kind: str
    parts: dict[str, Any]


@dataclass(frozen=True)
class ProbeDevice:
    """Where probes run: measured on a CUDA GPU, or estimated for one on the CPU."""

    kind: str
    name: str


def free_memory() -> None:
    """Release what the last model held before the next one is built."""
    collect_then_freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def probe_device() -> ProbeDevice:
    """The device this process probes on."""
    if torch.cuda.is_available():
        return ProbeDevice(MEASURED, torch.cuda.get_device_name())
    return ProbeDevice(ESTIMATE, "cpu")


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages alive at once, among those any op reads or writes.

    Inputs count too, so parameters and batches made before (or outside) the mode are seen
    the first time they are used. A storage is counted once however many views share it,
    and leaves the count when it is freed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counted: WeakIdKeyDictionary = WeakIdKeyDictionary()  # storage -> [bytes counted]
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves((args, kwargs, result)):
            if isinstance(leaf, torch.Tensor):
                self._see(leaf.untyped_storage())
        return result

    def _see(self, storage: torch.UntypedStorage) -> None:
        size = storage.nbytes()
        counted = self.counted.get(storage)
        if counted is None:
            counted = self.counted[storage] = [0]
            weakref.finalize(storage, self._forget, counted)
        self.current += size - counted[0]
        counted[0] = size
        self.peak = max(self.peak, self.current)

    def _forget(self, counted: list[int]) -> None:
        """A storage was freed: take its last counted size off."""
        self.current -= counted[0]


class StopAfterSecondStep(Callback):
    """End the fit at the second real optimizer step, skipping validation.

    The optimizer state only exists after the first real step (fp16's gradient scaler may
    skip early steps on overflow, and accumulation skips all but every `accum`-th), so the
    cycle up to the second step holds weights, gradients, optimizer state and activations
    at once: the steady-state peak of training. Validation needs less, so it is skipped.
    """

    def __init__(self) -> None:
        self.steps, self.step_cancelled, self.finished_at = 0, False, []

    def before_batch(self) -> None:
        self.step_cancelled = False

    def after_cancel_step(self) -> None:
        self.step_cancelled = True

    def after_step(self) -> None:
        if not self.step_cancelled:
            self.steps += 1
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.finished_at.append(time.perf_counter())
        if self.steps == 2:
            raise CancelFitException()

    @property
    def second_step_seconds(self) -> float:
        """How long the second real step took: its `accum` micro-batches, their loading included."""
        return self.finished_at[1] - self.finished_at[0]

    def before_validate(self) -> None:
        raise CancelValidException()


def probe_subset(data: CompetitionData, bs: int, valid_pct: float) -> CompetitionData:
    """The smallest class plus one image of every other class (the head stays the real
    one), topped up so the training split holds two effective batches (two optimizer steps
    in one epoch). Memory does not depend on which images, only on how many per step."""
    smallest = data.smallest_class()
    labels = dict(zip(data.train_images, data.label_texts()))
    first_of_class: dict[str, Any] = {}
    for path in data.train_images:
        first_of_class.setdefault(labels[path], path)
    chosen = {p for p in data.train_images if labels[p] == smallest} | set(first_of_class.values())
    others = (p for p in data.train_images if p not in chosen)
    while training_split_size(len(chosen), valid_pct) < 2 * bs and (extra := next(others, None)):
        chosen.add(extra)
    if training_split_size(len(chosen), valid_pct) < bs:
        raise PaddyError(
            f"{data.train_dir} has {len(data.train_images)} images: too few for one batch of {bs} "
            f"after holding out valid_pct {valid_pct}; lower --bs"
        )
    return replace(data, train_images=tuple(p for p in data.train_images if p in chosen))


def gpu_bytes_held() -> tuple[int, str]:
    """What this process holds on the current GPU per NVML (as nvidia-smi shows it), and the source.

    Inside some containers NVML cannot match our pid; then the whole device's use stands in
    (on a Kaggle GPU this process is its only user).
    """
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(None))
    for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if process.pid == os.getpid() and process.usedGpuMemory is not None:
            return process.usedGpuMemory, "NVML, this process"
    return pynvml.nvmlDeviceGetMemoryInfo(handle).used, "NVML, whole device"


def measure_on_cuda(run: Callable[[], None]) -> Measurement:
    """The allocator's peak during `run`, plus what the process holds outside the allocator."""
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    held, source = gpu_bytes_held()
    reserved_peak = torch.cuda.max_memory_reserved() / MIB
    outside = held / MIB - torch.cuda.memory_reserved() / MIB
    parts = {"reserved_peak_mib": round(reserved_peak, 1), "outside_allocator_mib": round(outside, 1), "source": source}
    return Measurement(round(reserved_peak + outside, 1), MEASURED, parts)


def estimate_on_cpu(run: Callable[[], None]) -> Measurement:
    """Peak live tensor bytes of `run` on the CPU plus the CUDA context allowance: an estimate
    for a GPU (the caching allocator's rounding and fragmentation are left to the headroom)."""
    with LiveTensorBytes() as tracker:
        run()
    tensors = tracker.peak / MIB
    parts = {"tensors_mib": round(tensors, 1), "cuda_context_allowance_mib": CUDA_CONTEXT_MIB}
    return Measurement(round(tensors + CUDA_CONTEXT_MIB, 1), ESTIMATE, parts)


class CpuMixedPrecision(MixedPrecision):
    """fastai's MixedPrecision in bfloat16 under CPU autocast (fastai's own hard-codes CUDA), as a GPU
    run in fp16 keeps memory: activations and autocast's cached 16-bit weight copies take 2 bytes a
    value, the weights, their gradients and the optimizer state stay fp32."""

    def __init__(self) -> None:
        super().__init__(amp_mode=AMPMode.BF16)

    def before_fit(self) -> None:
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
        self.learn.scaler, self.scales = torch.amp.GradScaler("cpu", enabled=False), L()  # bfloat16 needs none


def probe_steps(
    plan: TrainingPlan,
    subset: CompetitionData,
    callbacks: list[Callback],
    num_workers: int,
    measure: Callable[[Callable[[], None]], Measurement],
) -> Measurement:
    """`measure` the plan's training on the probe subset up to its second real optimizer step, every
    layer trained (fit_one_cycle trains them all, and fine_tune's unfrozen phase is its heavier one)."""
    stop = StopAfterSecondStep()
    learn = make_learner(plan, subset, [stop, *callbacks], num_workers)
    learn.unfreeze()

    def run() -> None:
        with learn.no_bar(), learn.no_logging():
            learn.fit(MAX_PROBE_EPOCHS, plan.entry.lr)

    measurement = measure(run)
    if stop.steps < 2:
        raise PaddyError(
            f"memory probe of {plan.entry.describe()} at accum {plan.entry.accum}: no second optimizer step "
            f"in {MAX_PROBE_EPOCHS} epochs (fp16 overflow on every step?)"
        )
    speed = round(plan.entry.bs / stop.second_step_seconds, 2)
    return replace(measurement, parts={**measurement.parts, "images_per_s": speed})


def only_run(run: Callable[[], None]) -> Measurement:
    """Run, measuring no memory: the steps' speed without the tracker's overhead."""
    run()
    return Measurement(0.0, ESTIMATE, {})


def estimate_in_gpu_precision(
    plan: TrainingPlan, gpu_precision: Precision, subset: CompetitionData, num_workers: int
) -> Measurement:
    """The CPU estimate for the GPU run (`plan` in fp32): when the GPU run will be fp16, the steps run
    again under 16-bit autocast, and that figure decides; both are kept."""
    fp32 = probe_steps(plan, subset, [], num_workers, estimate_on_cpu)
    recorded = {"tensors_mib_fp32": fp32.parts["tensors_mib"]}
    if gpu_precision != Precision.fp16:
        return replace(fp32, parts={**fp32.parts, **recorded, "decided_by": "fp32"})
    half = probe_steps(plan, subset, [CpuMixedPrecision()], num_workers, estimate_on_cpu)
    recorded["tensors_mib_16bit"] = half.parts["tensors_mib"]
    return replace(half, parts={**half.parts, **recorded, "decided_by": "16-bit, as the GPU run's fp16"})


def with_cpu_speed(
    measurement: Measurement, plan: TrainingPlan, subset: CompetitionData, num_workers: int
) -> Measurement:
    """The estimate with the speed of the same steps on this CPU, timed without the memory tracker
    (whose per-op bookkeeping slows them): a CPU's speed, labelled so, never the GPU's."""
    speed = probe_steps(plan, subset, [], num_workers, only_run).parts["images_per_s"]
    return replace(measurement, parts={**measurement.parts, "images_per_s": speed, "speed_of": "this CPU, not a GPU"})


def measure_training(entry: ModelEntry, accum: int, data: CompetitionData, num_workers: int = 0) -> Measurement:
    """Train the entry at `accum` on the probe subset up to its second optimizer step and return the
    peak memory: measured on CUDA, estimated for a GPU on the CPU (in the GPU run's precision).

    Images load in this process by default: a few batches load faster than workers start."""
    subset = probe_subset(data, entry.bs, entry.valid_pct)
    if torch.cuda.is_available():
        plan = plan_training(replace(entry, accum=accum))
        measurement, precision = probe_steps(plan, subset, [], num_workers, measure_on_cuda), plan.precision
        measurement = replace(measurement, parts={**measurement.parts, "speed_of": torch.cuda.get_device_name()})
    else:
        plan = plan_training(replace(entry, accum=accum, precision=Precision.fp32))  # fastai's fp16 needs CUDA
        precision = resolve_precision(entry.precision, cuda=True)
        estimate = estimate_in_gpu_precision(plan, precision, subset, num_workers)
        measurement = with_cpu_speed(estimate, plan, subset, num_workers)
    return replace(measurement, parts={**measurement.parts, "precision": str(precision)})
