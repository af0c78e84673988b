"""`paddy run`: training every entry of an ensemble config in turn (an entry with `folds`, one
run per fold), resumably, and retrying out-of-memory entries with a larger accum factor (same
effective batch).

Everything is checked before the first entry trains: every entry, every `accum = "auto"`,
the data and its images. An entry whose finished run already exists (same settings, same
data) is skipped, so a second `paddy run` only redoes what the first did not finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Callable

import torch

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData
from paddy.data.folds import entry_folds
from paddy.data.images import without_bad_images
from paddy.ensembling.out_of_fold import EntryCv, entry_cv
from paddy.memory.measure import free_memory
from paddy.orchestration.gpu_pool import PoolEvent, PoolJob, run_pool
from paddy.runs.folder import RunBusy, RunFolder, entry_run_folder
from paddy.runs.lookup import RunIndex
from paddy.runs.probes import resolve_auto_accum
from paddy.settings.config_file import EnsembleConfig
from paddy.settings.entry import BadImages, ModelEntry, accum_problem
from paddy.training.checkpoint import EpochHook
from paddy.training.plan import check_against_data, plan_training
from paddy.training.run import RunPlan, RunResult, plan_run, train


class RunStatus(StrEnum):
    """How one run of `paddy run` ended, as its table says it."""

    trained = "trained"
    resumed = "resumed"
    skipped = "skipped"  # finished before
    busy = "busy elsewhere"  # another process holds its folder
    failed = "failed"  # a GPU pool's worker failed


RunKey = tuple[int, int | None]  # a run of a config: its entry's index, and its fold (None: no folds)


@dataclass(frozen=True)
class EntryOutcome:
    """How one run of a config entry (the entry, or one of its folds) ended (seconds: its training
    and TTA, or the recorded ones)."""

    index: int
    entry: ModelEntry
    run: RunFolder
    status: RunStatus
    valid_error: float | None
    seconds: float | None
    accum: int | None
    metric: str | None = None  # what valid_error scores


@dataclass(frozen=True)
class RunProgress:
    """Where a long `paddy run` stands, reported before each entry."""

    index: int
    total: int
    entry: ModelEntry
    elapsed: float
    remaining: float | None


def train_with_oom_retry(plan: RunPlan, train_once: Callable[[RunPlan], RunResult]) -> RunResult:
    """Train; on out-of-memory, free memory and retry with accum doubled (the run started again, same
    effective batch), while the accum rule allows it."""
    while True:
        try:
            return train_once(plan)
        except torch.OutOfMemoryError:
            pass  # leave the except block first: its traceback still holds the model
        free_memory()
        entry, accum = plan.entry, plan.training.accum
        if accum_problem(entry.process_bs, 2 * accum):
            raise PaddyError(
                f"{entry.describe()} runs out of memory even at accum {accum} "
                f"(per-step batch {entry.process_bs // accum})"
            )
        plan = plan.with_accum(2 * accum)


def estimate_remaining(durations: list[float], remaining_entries: int) -> float | None:
    """Mean time of the entries trained so far times the entries left (None before the first)."""
    return sum(durations) / len(durations) * remaining_entries if durations else None


def checked_config(
    config: EnsembleConfig, data: CompetitionData, out: Path, budget_mib: float, bad_images: BadImages
) -> tuple[list[ModelEntry], CompetitionData]:
    """Every entry with `accum = "auto"` resolved and checked against the data (each fold against its
    folds, drawn now), and the images checked."""
    if several := [f"entry {i} has gpus {e.gpus}" for i, e in enumerate(config.models) if e.gpus > 1]:
        raise PaddyError(
            f"{', '.join(several)}: paddy run trains each run in one process (--gpus 0,1 gives each run a GPU); "
            "train a data-parallel entry with `paddy train --config CONFIG --entry N`"
        )
    entries = resolve_auto_accum(config.models, budget_mib, out, data.named_root, config.source)
    data = without_bad_images(data, bad_images, out)
    for entry in entries:
        plan_training(entry)
        for one in entry.per_fold():
            check_against_data(data, one, entry_folds(out, data, one))
    return entries, data


def recorded_outcome(
    index: int, entry: ModelEntry, run: RunFolder, status: RunStatus = RunStatus.skipped
) -> EntryOutcome:
    """The outcome of a finished run, from what its folder records (a run finished earlier: skipped)."""
    done = run.result() or {}
    valid_error, seconds, accum = done.get("valid_error"), done.get("seconds"), run.config().get("accum")
    return EntryOutcome(index, entry, run, status, valid_error, seconds, accum, done.get("metric"))


def trained_outcome(
    index: int, entry: ModelEntry, run: RunFolder, status: RunStatus, result: RunResult
) -> EntryOutcome:
    """The outcome of a run trained now, from its result."""
    seconds = result.train_seconds + result.predict_seconds
    return EntryOutcome(index, entry, run, status, result.valid_error, seconds, result.entry.accum, result.metric)


def finished_run(runs: RunIndex, out: Path, data: CompetitionData, entry: ModelEntry) -> RunFolder | None:
    """The entry's finished run among `runs`: its settings, on this data and on the folds `paddy run`
    trains it on (the folds file under `out`)."""
    folds = entry_folds(out, data, entry)
    return runs.run_of_entry(entry, data.root, folds.sha256 if folds else None)


def config_runs(entries: list[ModelEntry], only: set[RunKey] | None = None) -> list[tuple[int, ModelEntry]]:
    """Every run of a config in order, as (entry index, the entry or one of its folds); with `only`,
    those runs alone."""
    runs = [(index, one) for index, entry in enumerate(entries) for one in entry.per_fold()]
    return [(index, one) for index, one in runs if only is None or (index, one.fold) in only]


def entry_runs(entries: list[ModelEntry], indices: set[int]) -> set[RunKey]:
    """The runs (every fold) of the entries at `indices`."""
    return {(index, one.fold) for index, one in config_runs(entries) if index in indices}


def shard_runs(entries: list[ModelEntry], shard: tuple[int, int]) -> set[RunKey]:
    """Shard I of N: every N-th run of the config (all entries' folds in order), starting at the I-th.
    The assignment depends only on the config, so N machines split it exactly, and a re-run of a shard
    is the same share."""
    number, count = shard
    return {(index, one.fold) for k, (index, one) in enumerate(config_runs(entries)) if k % count == number - 1}


def run_config(
    config: EnsembleConfig,
    data: CompetitionData,
    out: Path,
    budget_mib: float,
    force: bool = False,
    bad_images: BadImages = BadImages.fail,
    on_progress: Callable[[RunProgress], None] = lambda progress: None,
    on_epoch: EpochHook | None = None,
    keep_checkpoint: bool = False,
    train_fn: Callable[..., RunResult] = train,
    only: set[RunKey] | None = None,
) -> list[EntryOutcome]:
    """Train each entry of `config` not already finished (all of them with `force`); an entry whose
    run was interrupted after an epoch goes on from its checkpoint (`force` starts it again).
    An entry another process is training is left to it (status 'busy elsewhere'). `budget_mib`
    picks the memory probes that `accum = "auto"` reads. With `only`, the other runs (left out of a
    time budget, or another machine's shard) are not trained; they keep their index and folder.
    `train_fn(plan, **options)` trains one run (a test seam)."""
    entries, data = checked_config(config, data, out, budget_mib, bad_images)
    runs = config_runs(entries, only)
    outcomes: list[EntryOutcome] = []
    durations: list[float] = []
    started = time.monotonic()
    for number, (index, entry) in enumerate(runs):
        run = entry_run_folder(out, config.name, index, entry, data.root)
        try:
            with run.writing():  # checked and trained under the lock: no other process can finish it between
                done = None if force else finished_run(RunIndex.of(out), out, data, entry)
                if done is not None:
                    outcomes.append(recorded_outcome(index, entry, done))
                    continue
                remaining = estimate_remaining(durations, len(runs) - number)
                on_progress(RunProgress(index, len(entries), entry, time.monotonic() - started, remaining))
                resume = run.resumable and not force
                plan = plan_run(entry, data, out, budget_mib, bad_images, run, resume=resume)

                def train_once(plan: RunPlan) -> RunResult:
                    return train_fn(plan, on_epoch=on_epoch, keep_checkpoint=keep_checkpoint)

                result = train_with_oom_retry(plan, train_once)
        except RunBusy:
            outcomes.append(EntryOutcome(index, entry, run, RunStatus.busy, None, None, None))
            continue
        free_memory()
        outcomes.append(trained_outcome(index, entry, run, RunStatus.resumed if resume else RunStatus.trained, result))
        durations.append(outcomes[-1].seconds)
    return outcomes


def selected_runs(
    entries: list[ModelEntry], shard: tuple[int, int] | None = None, only_run: RunKey | None = None
) -> set[RunKey]:
    """The runs `paddy run` trains: every run of the config, or shard I of N's, or one (a pool's worker)."""
    runs = {(index, one.fold) for index, one in config_runs(entries)}
    if shard is not None:
        runs &= shard_runs(entries, shard)
    if only_run is not None:
        runs &= {only_run}
    return runs


POOL_LOGS = ".pool"  # under --out: the logs of the pool's running workers


def run_on_gpus(
    config: EnsembleConfig,
    data: CompetitionData,
    out: Path,
    devices: list[str],
    worker_command: Callable[[RunKey], list[str]],
    budget_mib: float,
    force: bool = False,
    bad_images: BadImages = BadImages.fail,
    only: set[RunKey] | None = None,
    on_event: Callable[[PoolEvent], None] = lambda event: None,
) -> tuple[list[EntryOutcome], list[str]]:
    """`paddy run --gpus`: every run not finished yet is a worker process of its own, one per GPU at a
    time (see gpu_pool), running `worker_command(run)` (the CLI writes it: `paddy run` of that one run).
    Everything is checked here first, once. The outcomes in config order, and a line for each failed
    worker (its log's last line)."""
    if config.source is None:
        raise PaddyError("--gpus needs the config as a file: each GPU's worker reads it")
    entries, data = checked_config(config, data, out, budget_mib, bad_images)
    outcomes, jobs, runs = [], [], {}
    finished = RunIndex.of(out)
    for index, entry in config_runs(entries, only):
        run = entry_run_folder(out, config.name, index, entry, data.root)
        if not force and (done := finished_run(finished, out, data, entry)) is not None:
            outcomes.append(recorded_outcome(index, entry, done))
            continue
        fold = f", fold {entry.fold} of {entry.folds}" if entry.fold is not None else ""
        jobs.append(PoolJob(f"entry {index}{fold}: {entry.describe()}", run, worker_command((index, entry.fold))))
        runs[run.path] = (index, entry, RunStatus.resumed if run.resumable and not force else RunStatus.trained)
    failures = []
    for ended in run_pool(jobs, devices, out / POOL_LOGS, on_event):
        index, entry, status = runs[ended.job.run.path]
        if ended.failed:
            outcomes.append(EntryOutcome(index, entry, ended.job.run, RunStatus.failed, None, None, None))
            failures.append(f"{ended.job.label} failed on GPU {ended.device}: {ended.last_line()} (log: {ended.log})")
        elif ended.job.run.finished:
            outcomes.append(recorded_outcome(index, entry, ended.job.run, status))
        else:
            outcomes.append(EntryOutcome(index, entry, ended.job.run, RunStatus.busy, None, None, None))
    return sorted(outcomes, key=lambda o: (o.index, o.entry.fold or 0)), failures


def entries_cv(outcomes: list[EntryOutcome]) -> list[EntryCv]:
    """The CV line of each entry of a `paddy run` that trains folds."""
    by_entry: dict[int, list[EntryOutcome]] = {}
    for outcome in outcomes:
        if outcome.entry.fold is not None:
            by_entry.setdefault(outcome.index, []).append(outcome)
    return [
        entry_cv(index, folds[0].entry, [o.run for o in folds], [o.valid_error for o in folds])
        for index, folds in by_entry.items()
    ]
