"""Everything decided about a run before anything heavy happens: accumulation, precision, seed,
and whether the data can train the entry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import psutil
import torch
from fastai.vision.all import (
    Callback,
    GradientAccumulation,
)

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData, training_split_size
from paddy.data.folds import Folds
from paddy.data.training_set import extra_labels
from paddy.settings.entry import AUTO, ModelEntry, Precision, accum_problem
from paddy.training.archs import check_trainable


def accumulation(bs: int, accum: int) -> tuple[int, list[Callback]]:
    """Per-step batch size and callbacks so `accum` small steps make one step of `bs` images.

    fastai's GradientAccumulation counts samples (n_acc=bs), not steps, and scales each
    step's loss by its share of the effective batch. It counts one process's samples: with several
    data-parallel processes `bs` is each one's share, and DDP's mean over them makes the whole batch.
    """
    if problem := accum_problem(bs, accum):
        raise PaddyError(f"accum: {problem}")
    return bs // accum, ([GradientAccumulation(n_acc=bs)] if accum > 1 else [])


def resolve_precision(precision: Precision, cuda: bool | None = None) -> Precision:
    """'auto' means fp16 where CUDA is available and fp32 elsewhere."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if precision == Precision.auto:
        return Precision.fp16 if cuda else Precision.fp32
    if precision == Precision.fp16 and not cuda:
        raise PaddyError("precision fp16 needs a CUDA GPU; use --precision fp32 or auto")
    return precision


PROBABILITY_BYTES = 4  # float32, as predictions keep them
GATHERED_COPIES = 2  # TTA's chunks and the array joined from them are held at once


def check_probabilities_fit(n_images: int, n_outputs: int, memory: int | None = None) -> None:
    """Refuse, before hours of work, predictions this machine cannot hold while TTA gathers them: every
    output (class) of every image, herbarium 2022's 210k test images x 15,501 classes are 13 GB, twice that
    gathered; a run would die after its last epoch, its predictions unwritten. `memory`: the bytes available
    (default: psutil's, now)."""
    available = psutil.virtual_memory().available if memory is None else memory
    if (needed := GATHERED_COPIES * n_images * n_outputs * PROBABILITY_BYTES) > available:
        gib = 2**30
        raise PaddyError(
            f"the probabilities of {n_images:,} images x {n_outputs:,} classes (float32) take {needed / gib:.1f} GiB "
            f"while TTA gathers them, and this machine has {available / gib:.1f} GiB of memory available: "
            "predict on a machine with more"
        )


def check_against_data(
    data: CompetitionData, entry: ModelEntry, folds: Folds | None = None, memory: int | None = None
) -> None:
    """Refuse an entry the data cannot train: a second target missing from train.csv, a training split
    smaller than one effective batch (no optimizer step would run, yet the run would 'finish'), or test (or
    out-of-fold) predictions larger than the `memory` available (default: psutil's, now)."""
    if entry.multi_target:
        extra_labels(data, entry.multi_target)
    n_oof = len(folds.held_out(entry.fold)) if folds is not None and entry.fold is not None else 0
    check_probabilities_fit(max(len(data.test_images), n_oof), len(data.classes), memory)  # a number's: 1 output
    if n_oof:
        n_train, held_out = len(data.train_images) - n_oof, f"fold {entry.fold}"
    else:
        n_train, held_out = training_split_size(len(data.train_images), entry.valid_pct), f"valid_pct {entry.valid_pct}"
    if n_train < entry.bs:
        raise PaddyError(
            f"bs {entry.bs} is larger than the {n_train} training images left after holding out {held_out}: "
            "no optimizer step would run; lower --bs"
        )


@dataclass(frozen=True)
class TrainingPlan:
    """What a learner is built from: the checked entry, its accum (resolved: never 'auto'), the per-step
    batch and its accumulation callbacks, the precision and the seed actually used."""

    entry: ModelEntry
    accum: int
    step_bs: int
    callbacks: list[Callback]
    precision: Precision
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.entry.to_json(),
            "seed_used": self.seed,
            "step_bs": self.step_bs,
            "precision_used": str(self.precision),
        }


def plan_training(entry: ModelEntry) -> TrainingPlan:
    """Check the entry and settle accumulation, precision and seed (drawn when unset). `accum = "auto"`
    must have been resolved from the memory probes first (paddy.runs.probes.resolve_auto_accum)."""
    check_trainable(entry)
    if entry.accum == AUTO:
        raise PaddyError("accum 'auto' must be resolved from a memory probe before training")
    step_bs, callbacks = accumulation(entry.process_bs, entry.accum)
    seed = entry.seed if entry.seed is not None else random.SystemRandom().randrange(2**31)
    return TrainingPlan(entry, entry.accum, step_bs, callbacks, resolve_precision(entry.precision), seed)
