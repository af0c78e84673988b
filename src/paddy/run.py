"""Training every entry of an ensemble config in turn: resumable, and retrying out-of-memory
entries with a larger accum factor (same effective batch).

Each entry trains into a folder named after the config, its index and model, so a second
`paddy run` finds what the first one finished and only redoes the rest.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from paddy.config import MIN_STEP_BATCH, EnsembleConfig, ModelEntry
from paddy.data import CompetitionData
from paddy.errors import PaddyError
from paddy.files import read_json
from paddy.runs import CONFIG_FILE, finished_result
from paddy.train import RunResult, train

TRAINED, SKIPPED = "trained", "skipped"


@dataclass(frozen=True)
class EntryOutcome:
    """How one entry of the config ended."""

    index: int
    entry: ModelEntry
    run_dir: Path
    status: str
    valid_error: float
    seconds: float
    accum: int


@dataclass(frozen=True)
class RunProgress:
    """Where a long `paddy run` stands, reported before each entry."""

    index: int
    total: int
    entry: ModelEntry
    elapsed: float
    remaining: float | None


def free_memory() -> None:
    """Release what the last model held before the next one is built."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def entry_run_name(config: EnsembleConfig, index: int, entry: ModelEntry) -> str:
    """Stable folder name of an entry, so a re-run finds it."""
    stem = config.source.stem if config.source else "config"
    return f"{stem}-{index:02d}-{entry.describe()}"


def same_settings(recorded: dict[str, Any], entry: ModelEntry) -> bool:
    """Whether a run's config.json holds this entry's settings (accum may differ: OOM retries)."""
    return all(recorded.get(k) == v for k, v in entry.to_json().items() if k != "accum")


def train_with_oom_retry(entry: ModelEntry, train_once: Callable[[ModelEntry], RunResult]) -> RunResult:
    """Train; on out-of-memory, free memory and retry with accum doubled, down to 2 images per step."""
    while True:
        try:
            return train_once(entry)
        except torch.OutOfMemoryError:
            pass  # leave the except block first: its traceback still holds the model
        free_memory()
        doubled = int(entry.accum) * 2
        if entry.bs % doubled or entry.bs // doubled < MIN_STEP_BATCH:
            raise PaddyError(
                f"{entry.describe()} runs out of memory even at accum {entry.accum} "
                f"(per-step batch {entry.bs // int(entry.accum)})"
            )
        entry = replace(entry, accum=doubled)


def estimate_remaining(durations: list[float], remaining_entries: int) -> float | None:
    """Mean time of the entries trained so far times the entries left (None before the first)."""
    return sum(durations) / len(durations) * remaining_entries if durations else None


def run_config(
    config: EnsembleConfig,
    data: CompetitionData,
    out: Path,
    force: bool = False,
    resolve_accum: Callable[[ModelEntry], ModelEntry] = lambda entry: entry,
    on_progress: Callable[[RunProgress], None] = lambda progress: None,
    train_fn: Callable[..., RunResult] = train,
) -> list[EntryOutcome]:
    """Train each entry of `config` not already finished (all of them with `force`)."""
    outcomes: list[EntryOutcome] = []
    durations: list[float] = []
    started = time.monotonic()
    total = len(config.models)
    for index, entry in enumerate(config.models):
        run_name = entry_run_name(config, index, entry)
        run_dir = out / run_name
        done = finished_result(run_dir)
        recorded = read_json(run_dir / CONFIG_FILE) if done else {}
        if done and not force and same_settings(recorded, entry):
            outcomes.append(
                EntryOutcome(index, entry, run_dir, SKIPPED, done["valid_error"], done["seconds"], recorded["accum"])
            )
            continue
        elapsed = time.monotonic() - started
        on_progress(RunProgress(index, total, entry, elapsed, estimate_remaining(durations, total - index)))
        resolved = resolve_accum(entry)
        result = train_with_oom_retry(resolved, lambda e: train_fn(e, data, out, run_name=run_name))
        free_memory()
        durations.append(result.seconds)
        outcomes.append(
            EntryOutcome(index, entry, run_dir, TRAINED, result.valid_error, result.seconds, int(result.entry.accum))
        )
    return outcomes
