"""Finding runs: finished runs under one or more output folders, the run of a config entry, an
entry's fold runs grouped as one ensemble member, a run named on the command line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.runs.folder import NOT_MATCHED, RunFolder, entry_match_key, match_key, matched_settings
from paddy.runs.predictions import PREDICTIONS_FILE
from paddy.settings.entry import ENTRY_FIELDS, ModelEntry

Outs = Path | Sequence[Path]  # one folder of run folders, or several (from several machines)


def out_folders(outs: Outs) -> list[Path]:
    return [outs] if isinstance(outs, Path) else list(outs)


def finished_runs(outs: Outs) -> list[RunFolder]:
    """Run folders under `outs` whose predictions were written (in name order within each folder); a run
    copied under two of them counts once (the first)."""
    found: dict[str, RunFolder] = {}
    for out in out_folders(outs):
        for predictions in sorted(out.glob(f"*/{PREDICTIONS_FILE}")):
            run = RunFolder(predictions.parent)
            if run.finished and run.name not in found:
                found[run.name] = run
    return list(found.values())


@dataclass(frozen=True)
class FinishedRun:
    """A finished run with its settings (upgraded) and when it finished, each read once."""

    run: RunFolder
    settings: dict[str, Any]
    finished_at: float  # its predictions file's mtime


SHARED_BY_FOLDS = ("fold", "folds_sha256")  # what an entry's fold runs do not share


@dataclass(frozen=True)
class RunIndex:
    """Every finished run under some output folders, each one's settings read once and indexed by what
    matches it to an entry: a command that asks which run belongs to each of many entries and folds
    reads every config.json once and answers each question without a scan."""

    by_key: dict[str, list[FinishedRun]]
    by_entry: dict[str, list[FinishedRun]]  # keyed without the fold: an entry's fold runs together

    @classmethod
    def of(cls, outs: Outs) -> RunIndex:
        by_key: dict[str, list[FinishedRun]] = {}
        by_entry: dict[str, list[FinishedRun]] = {}
        for run in finished_runs(outs):
            one = FinishedRun(run, run.config(), run.predictions_path.stat().st_mtime)
            by_key.setdefault(match_key(one.settings), []).append(one)
            by_entry.setdefault(match_key(one.settings, SHARED_BY_FOLDS), []).append(one)
        return cls(by_key, by_entry)

    def run_of_entry(self, entry: ModelEntry, data_root: Path, folds_sha256: str | None) -> RunFolder | None:
        """The newest finished run trained with the entry's settings on that data (a fold's run: on the
        folds file with that digest), if any."""
        key = entry_match_key(entry, data_root, folds_sha256)
        newest = max(self.by_key.get(key, []) if key else [], key=lambda one: one.finished_at, default=None)
        return newest.run if newest else None

    def newest_folds_sha256(self, entry: ModelEntry, data_root: Path) -> str | None:
        """The folds digest of the newest finished run of any of the entry's folds: the folds its runs are
        put together on where the training data is not here to say (`paddy ensemble --config`)."""
        if entry.folds is None:
            return None
        key = match_key(matched_settings(entry, data_root), SHARED_BY_FOLDS)
        newest = max(self.by_entry.get(key, []), key=lambda one: one.finished_at, default=None)
        return newest.settings.get("folds_sha256") if newest else None


def fold_group_key(run: RunFolder) -> str:
    """What a fold's run shares with the other folds of its entry (every setting but the fold, the
    data and the folds file); a run without folds shares it with no other run."""
    config = run.config()
    if config.get("fold") is None:
        return f"single:{run.path}"
    shared = {k: v for k, v in config.items() if k in ENTRY_FIELDS and k not in (*NOT_MATCHED, "fold")}
    return json.dumps({**shared, "data": config.get("data"), "folds": config.get("folds_sha256")}, sort_keys=True)


def fold_groups(runs: list[RunFolder]) -> list[list[RunFolder]]:
    """Runs as ensemble members, in first-seen order: a run without folds alone, an entry's fold runs
    together (fold order). An entry trained twice gives two members: the j-th run of each fold, by age."""
    by_key: dict[str, list[RunFolder]] = {}
    for run in runs:
        by_key.setdefault(fold_group_key(run), []).append(run)
    groups = []
    for same in by_key.values():
        by_fold: dict[int, list[RunFolder]] = {}
        for run in sorted(same, key=lambda r: r.predictions_path.stat().st_mtime):
            by_fold.setdefault(run.config().get("fold") or 0, []).append(run)
        ordered = [by_fold[fold] for fold in sorted(by_fold)]
        groups += [[runs[j] for runs in ordered if j < len(runs)] for j in range(max(map(len, ordered)))]
    return groups


def find_run(run: str, outs: Outs, finished: bool = False) -> RunFolder:
    """A run given as a folder name under (one of) `outs` or as a path (a finished one if asked)."""
    places = [out / run for out in out_folders(outs)] + [Path(run)]
    for candidate in map(RunFolder, places):
        if candidate.finished if finished else candidate.config_path.is_file():
            return candidate
    state = "finished " if finished else ""
    raise PaddyError(f"no {state}run folder {run!r} (looked for {' and '.join(map(str, places))})")


@dataclass(frozen=True)
class RunSummary:
    """A run folder's settings, history, outcome (None while unfinished) and pictures."""

    run: RunFolder
    config: dict[str, Any]
    history: pd.DataFrame
    result: dict[str, Any] | None
    pictures: list[Path]


def run_summary(run: RunFolder) -> RunSummary:
    """Everything `paddy show` prints about one run."""
    return RunSummary(run, run.config(), run.history(), run.result(), run.pictures())
