"""`paddy run --time-budget`: how long a config's training will take, worked out before any of it
trains from the speeds `probe-memory` recorded, and which entries to leave out to fit a session.

A Kaggle session ends after 12 hours whatever is running: an ensemble that does not fit should be
known at the start, not found out when the notebook is killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData, training_split_size
from paddy.orchestration.config_runs import finished_run
from paddy.runs.lookup import RunIndex
from paddy.runs.probes import PROBES_FILE, ProbeNeeded, ProbeRequest, load_probes, recorded_speed, resolve_auto_accum
from paddy.settings.budget import duration_text, parse_duration
from paddy.settings.config_file import EnsembleConfig
from paddy.settings.entry import ModelEntry
from paddy.training.predicting import TTA_PASSES
from paddy.training.schedule import training_phases

FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of a training step (forward and backward)


def run_seconds(entry: ModelEntry, n_images: int, n_test: int, images_per_s: float) -> float:
    """One run of `entry`: every epoch's training and validation, then TTA of the test images (and,
    for a fold, of its held-out images). Forward passes count FORWARD_SHARE of a training step."""
    n_valid = n_images // entry.folds if entry.folds else n_images - training_split_size(n_images, entry.valid_pct)
    epochs = sum(phase.epochs for phase in training_phases(entry))
    inference = images_per_s / FORWARD_SHARE
    tta = TTA_PASSES * (n_test + (n_valid if entry.folds else 0))
    return epochs * (n_images - n_valid) / images_per_s + (epochs * n_valid + tta) / inference


@dataclass(frozen=True)
class PlannedEntry:
    """An entry's runs still to train, the speed they were timed at, and the time they will take."""

    index: int
    entry: ModelEntry
    runs_left: int
    images_per_s: float
    speed_of: str
    seconds: float


def plan_entry(
    index: int, entry: ModelEntry, data: CompetitionData, out: Path, speed: tuple[float, str], runs: RunIndex
) -> PlannedEntry:
    """The entry's runs not finished yet (each fold is a run, finished on the folds `paddy run` uses) and
    their time at `speed`."""
    left = [one for one in entry.per_fold() if finished_run(runs, out, data, one) is None]
    images_per_s, speed_of = speed
    per_run = run_seconds(entry, len(data.train_images), len(data.test_images), images_per_s)
    return PlannedEntry(index, entry, len(left), images_per_s, speed_of, per_run * len(left))


def time_plan(config: EnsembleConfig, data: CompetitionData, out: Path, budget_mib: float) -> list[PlannedEntry]:
    """Every entry's expected time, from the speed its memory probe timed (every missing probe named)."""
    entries = resolve_auto_accum(config.models, budget_mib, out, data.named_root, config.source)
    records = load_probes(out / PROBES_FILE)
    planned, problems, runs = [], [], RunIndex.of(out)
    for index, entry in enumerate(entries):
        try:
            speed = recorded_speed(entry, records, budget_mib)
            planned.append(plan_entry(index, entry, data, out, speed, runs))
        except PaddyError as e:
            problems.append(f"entry {index}: {e}")
    if problems:
        request = ProbeRequest(entries[0], budget_mib, out, data.named_root, config.source)
        raise ProbeNeeded("the time plan needs each entry's speed: " + "; ".join(problems), request)
    return planned


def fit_to_budget(
    planned: list[PlannedEntry], budget_s: float, drop: bool
) -> tuple[list[PlannedEntry], list[PlannedEntry]]:
    """The entries to train and those left out: all of them when they fit; otherwise, with `drop`,
    the lowest-weight entries are left out (the later one first) until the rest fits."""
    kept, dropped = list(planned), []
    if sum(p.seconds for p in kept) <= budget_s:
        return kept, dropped
    total = duration_text(sum(p.seconds for p in kept))
    if not drop:
        raise PaddyError(
            f"the plan takes about {total}, over the {duration_text(budget_s)} time budget; "
            "remove entries, or --fit-budget leaves out the lowest-weight ones"
        )
    for candidate in sorted((p for p in planned if p.seconds), key=lambda p: (p.entry.ensemble_weight, -p.index)):
        if sum(p.seconds for p in kept) <= budget_s:
            break
        kept.remove(candidate)
        dropped.append(candidate)
    if not kept or sum(p.seconds for p in kept) > budget_s:
        raise PaddyError(f"no entry fits in the {duration_text(budget_s)} time budget (the plan takes about {total})")
    return kept, dropped


@dataclass(frozen=True)
class TimePlan:
    """The config's plan against a time budget: every entry, those that will train, those left out."""

    planned: list[PlannedEntry]
    kept: list[PlannedEntry]
    dropped: list[PlannedEntry]
    budget_s: float
    refused: str | None = None  # why nothing may train (the plan is still shown)


def plan_within(
    config: EnsembleConfig, data: CompetitionData, out: Path, budget_mib: float, time_budget: str, drop: bool
) -> TimePlan:
    """`paddy run --time-budget`: the plan, refused when over the budget unless `drop` may leave entries out."""
    budget_s = parse_duration(time_budget)
    planned = time_plan(config, data, out, budget_mib)
    try:
        kept, dropped = fit_to_budget(planned, budget_s, drop)
    except PaddyError as e:
        return TimePlan(planned, [], [], budget_s, str(e))
    return TimePlan(planned, kept, dropped, budget_s)
