"""`paddy run`: training every entry of an ensemble config in turn (an entry with `folds`, one
run per fold), resumably, and retrying out-of-memory entries with a larger accum factor (same
effective batch).

Everything is checked before the first entry trains: every entry, every `accum = "auto"`,
the data and its images. An entry whose finished run already exists (same settings, same
data) is skipped, so a second `paddy run` only redoes what the first did not finish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from paddy.config import BadImages, EnsembleConfig, ModelEntry, accum_problem
from paddy.data import CompetitionData, without_bad_images
from paddy.errors import PaddyError
from paddy.folds import entry_folds
from paddy.memory import free_memory
from paddy.memory_probes import chosen_budget, resolve_auto_accum
from paddy.out_of_fold import EntryCv, entry_cv
from paddy.runs import RunBusy, RunFolder, entry_run_folder, run_of_entry
from paddy.train import EpochHook, RunResult, check_against_data, plan_training, train

TRAINED, RESUMED, SKIPPED, BUSY = "trained", "resumed", "skipped", "busy elsewhere"


@dataclass(frozen=True)
class EntryOutcome:
    """How one run of a config entry (the entry, or one of its folds) ended (seconds: its training
    and TTA, or the recorded ones)."""

    index: int
    entry: ModelEntry
    run: RunFolder
    status: str
    valid_error: float | None
    seconds: float | None
    accum: int | None


@dataclass(frozen=True)
class RunProgress:
    """Where a long `paddy run` stands, reported before each entry."""

    index: int
    total: int
    entry: ModelEntry
    elapsed: float
    remaining: float | None


def train_with_oom_retry(entry: ModelEntry, train_once: Callable[[ModelEntry], RunResult]) -> RunResult:
    """Train; on out-of-memory, free memory and retry with accum doubled, while the accum rule allows it."""
    while True:
        try:
            return train_once(entry)
        except torch.OutOfMemoryError:
            pass  # leave the except block first: its traceback still holds the model
        free_memory()
        accum = entry.resolved_accum
        if accum_problem(entry.bs, 2 * accum):
            raise PaddyError(
                f"{entry.describe()} runs out of memory even at accum {accum} (per-step batch {entry.bs // accum})"
            )
        entry = replace(entry, accum=2 * accum)


def estimate_remaining(durations: list[float], remaining_entries: int) -> float | None:
    """Mean time of the entries trained so far times the entries left (None before the first)."""
    return sum(durations) / len(durations) * remaining_entries if durations else None


def checked_config(
    config: EnsembleConfig, data: CompetitionData, out: Path, budget_mib: float, bad_images: BadImages
) -> tuple[list[ModelEntry], CompetitionData]:
    """Every entry with `accum = "auto"` resolved and checked against the data (each fold against its
    folds, drawn now), and the images checked."""
    entries = resolve_auto_accum(config.models, budget_mib, out, data.as_flag, config.source)
    data = without_bad_images(data, bad_images)
    for entry in entries:
        plan_training(entry)
        for one in entry.per_fold():
            check_against_data(data, one, entry_folds(out, data, one))
    return entries, data


def skipped(index: int, entry: ModelEntry, run: RunFolder) -> EntryOutcome:
    """The outcome of an entry whose run had already finished."""
    done = run.result() or {}
    seconds = done.get("train_seconds", 0.0) + done.get("predict_seconds", 0.0)
    return EntryOutcome(index, entry, run, SKIPPED, done.get("valid_error"), seconds, run.config().get("accum"))


def run_config(
    config: EnsembleConfig,
    data: CompetitionData,
    out: Path,
    budget_mib: float | None = None,
    force: bool = False,
    bad_images: BadImages = BadImages.fail,
    on_progress: Callable[[RunProgress], None] = lambda progress: None,
    on_epoch: EpochHook | None = None,
    keep_checkpoint: bool = False,
    train_fn: Callable[..., RunResult] = train,
    only: set[int] | None = None,
) -> list[EntryOutcome]:
    """Train each entry of `config` not already finished (all of them with `force`); an entry whose
    run was interrupted after an epoch goes on from its checkpoint (`force` starts it again).

    An entry another process is training is left to it (status 'busy elsewhere'). `budget_mib`
    (default: a Kaggle GPU's) picks the memory probes that `accum = "auto"` reads. With `only`, the
    other entries (left out of a time budget) are not trained; they keep their index and folder."""
    budget_mib = chosen_budget() if budget_mib is None else budget_mib
    entries, data = checked_config(config, data, out, budget_mib, bad_images)
    chosen = [(index, entry) for index, entry in enumerate(entries) if only is None or index in only]
    runs = [(index, one) for index, entry in chosen for one in entry.per_fold()]
    outcomes: list[EntryOutcome] = []
    durations: list[float] = []
    started = time.monotonic()
    for number, (index, entry) in enumerate(runs):
        run = entry_run_folder(out, config.name, index, entry, data.root)
        folds = entry_folds(out, data, entry)
        try:
            with run.writing():  # checked and trained under the lock: no other process can finish it between
                done = None if force else run_of_entry(out, entry, data.root, folds.identity() if folds else None)
                if done is not None:
                    outcomes.append(skipped(index, entry, done))
                    continue
                remaining = estimate_remaining(durations, len(runs) - number)
                on_progress(RunProgress(index, len(entries), entry, time.monotonic() - started, remaining))
                resume = run.resumable and not force

                def train_once(e: ModelEntry) -> RunResult:
                    options = {"budget_mib": budget_mib, "on_epoch": on_epoch, "keep_checkpoint": keep_checkpoint}
                    return train_fn(e, data, out, run=run, resume=resume and e is entry, **options)

                result = train_with_oom_retry(entry, train_once)
        except RunBusy:
            outcomes.append(EntryOutcome(index, entry, run, BUSY, None, None, None))
            continue
        free_memory()
        seconds = result.train_seconds + result.predict_seconds
        durations.append(seconds)
        status = RESUMED if resume else TRAINED
        outcomes.append(
            EntryOutcome(index, entry, run, status, result.valid_error, seconds, result.entry.resolved_accum)
        )
    return outcomes


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
