"""Data-parallel training of one run on several GPUs (`gpus = N`): paddy relaunches itself as N
processes with torchrun, and each trains inside fastai's `distrib_ctx` (Accelerate's DDP).

Every process takes `bs / gpus` images per step (`ModelEntry.process_bs`; fastai's gradient
accumulation counts one process's images) and DDP averages the gradients, so a step is the
step of the whole batch. Only the main process (rank 0) writes the run folder; it alone predicts,
after training, with fastai's gathering switched off.

fastai pitfalls handled here (found in a CPU prototype, see the README):
- `accelerate launch --cpu` starts one process; torchrun (`python -m torch.distributed.run`) starts N.
- Accelerate applies its own mixed precision when `ACCELERATE_MIXED_PRECISION` is set (accelerate
  launch sets it): on top of fastai's `to_fp16`, fp16 losses would be scaled twice. It is removed.
- lr_find does not work under DDP (fastai#3688): `paddy lr-find` runs in one process.
- get_preds/tta inside a worker gather across processes and return rows out of order or duplicated
  (fastai#2636): predictions run on the main process with WORLD_SIZE=1.
- `DistributedDL._broadcast` moves indices to CUDA even with gloo (CPU): see `broadcast_on_backend`.
- SyncBatchNorm needs CUDA: BatchNorm is synchronised only on GPUs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from paddy.core.errors import PaddyError
from paddy.core.ranks import world_size

RUN_FOLDER_ENV = "PADDY_RUN_FOLDER"  # the run folder the relaunching process chose, for every process


def needs_launch(gpus: int) -> bool:
    """Whether `gpus` processes are wanted and this is not one of them yet."""
    return gpus > 1 and world_size() == 1


def launch(gpus: int, command: list[str], run_folder: Path | None) -> int:
    """Run `command` (torchrun's program and its arguments, e.g. `-m paddy train ...`, as the CLI gives it) as
    `gpus` processes (torchrun's launcher, in this process, on a free port) and wait: 0 when they all
    succeeded, else 1 (each process printed its own error line)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.pop("ACCELERATE_MIXED_PRECISION", None)  # fastai's to_fp16 is the only mixed precision
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its warning
    if not torch.cuda.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "1"  # else Accelerate sees no GPU and does not wrap the model at all
    if run_folder is not None:
        os.environ[RUN_FOLDER_ENV] = str(run_folder)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its summary repeats the errors
    args = get_args_parser().parse_args(["--standalone", f"--nproc_per_node={gpus}", *command])
    try:
        run(args)
    except ChildFailedError:
        return 1
    return 0


def launched_run_folder() -> Path | None:
    """The run folder the launching process chose (a new run's name must be the same in every process)."""
    folder = os.environ.get(RUN_FOLDER_ENV)
    return Path(folder) if folder and world_size() > 1 else None


def broadcast_on_backend(self, t, rank):  # noqa: ANN001 - fastai's DistributedDL._broadcast signature
    """fastai's DistributedDL._broadcast with the tensor on the backend's device: fastai always moves it
    to CUDA ("nccl only works with cuda tensors"), which fails with gloo on a machine without a GPU."""
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(t, dtype=torch.long, device=device)
    torch.distributed.broadcast(tensor, rank)
    return tensor.cpu().tolist()


@contextmanager
def distributed(learn) -> Iterator[None]:  # noqa: ANN001 - a fastai Learner
    """Train `learn` under fastai's distrib_ctx in a launched process; nothing changes in one process.

    Every process was seeded alike (the same model, split and shuffle; DDP starts from rank 0's
    weights anyway); each then draws its own augmentations from seed + rank."""
    if world_size() == 1:
        yield
        return
    from fastai.distributed import DistributedDL
    from fastai.vision.all import set_seed

    DistributedDL._broadcast = broadcast_on_backend
    set_seed(torch.initial_seed() + int(os.environ.get("RANK", "0")))
    cuda = torch.cuda.is_available()
    with learn.distrib_ctx(sync_bn=cuda, cpu=not cuda):
        yield


@contextmanager
def alone() -> Iterator[None]:
    """Predict in the main process only, without fastai gathering rows from the other processes."""
    saved = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        if saved is not None:
            os.environ["WORLD_SIZE"] = saved


def bare_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself, also while DDP wraps it (its weights without the `module.` prefix)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def bare_loader(loader):  # noqa: ANN001, ANN201 - a fastai DataLoader
    """The loader itself, also while fastai's DistributedDL wraps it (whose shuffle is the loader's)."""
    return getattr(loader, "dl", loader)


def finish() -> None:
    """Leave the process group (a process that exits inside one is sometimes aborted)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch_data_parallel(plans: list[Any], command: list[str]) -> int | None:
    """Runs planned (paddy.training.run's RunPlans) on several GPUs, from the one process the user started:
    `command` (what torchrun runs: the CLI's own command line) as `gpus` processes, which share the planned
    folder; their exit code. None where no launch is wanted (one GPU, or this is already one of them)."""
    gpus = plans[0].entry.gpus
    if not needs_launch(gpus):
        return None
    if len(plans) > 1:
        raise PaddyError(f"gpus {gpus} trains one run at a time: give the fold (1..{plans[0].entry.folds}) to train")
    return launch(gpus, command, plans[0].run.path)
