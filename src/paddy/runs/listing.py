"""Every run folder under an output folder, with its state (finished, resumable, being written, an
lr-find, or dead), what it trained and how it did; and removing the dead ones (`paddy runs --clean`).

A run folder is a folder holding config.json (the first file a run writes). It is dead when it has no
predictions, no checkpoint to resume from and no lr-find result, and no process holds its lock: a run
killed inside its first epoch, or stopped by an error before any epoch finished.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.runs.folder import CONFIG_FILE, RunBusy, RunFolder, metric_columns
from paddy.settings.competition import greater_is_better
from paddy.settings.entry import ModelEntry

LR_FIND_FILE = "lr_find.json"  # what `paddy lr-find` leaves in its folder: a result, never dead


SHOWN = ("arch", "size", "folds", "fold")  # settings with columns of their own


NEVER_COMPARED = ("trackers",)  # what only watched a run, not what it trained


COLUMNS = ("run", "state", "arch", "size", "fold", "epochs_done", "metric", "valid", "seconds")


class RunState(StrEnum):
    """Where a run folder stands."""

    finished = "finished"  # predictions written (last): complete
    resumable = "resumable"  # unfinished, with a checkpoint: `paddy train --resume` goes on
    writing = "writing"  # another process holds its lock: training now
    lr_find = "lr-find"  # a `paddy lr-find` folder
    dead = "dead"  # none of those: nothing to keep


def state_of(run: RunFolder) -> RunState:
    """The run's state; a lock held by another process is `writing`, whatever is on disk."""
    try:
        with run.writing():
            return files_state(run)
    except RunBusy:
        return RunState.writing


def files_state(run: RunFolder) -> RunState:
    """The state the run's files say (call it holding the lock)."""
    if run.finished:
        return RunState.finished
    if run.resumable:
        return RunState.resumable
    if (run.path / LR_FIND_FILE).is_file():
        return RunState.lr_find
    return RunState.dead


@dataclass(frozen=True)
class ListedRun:
    """One run folder as `paddy runs` shows it."""

    run: RunFolder
    state: RunState
    settings: dict[str, Any]  # every setting, those an older release did not record at what it did
    epochs: int  # history rows: epochs trained so far
    result: dict[str, Any] | None
    metric: str | None = None  # what `valid` scores
    valid: float | None = None  # the kept epoch's score; an unfinished run's best epoch so far

    @property
    def seconds(self) -> float | None:
        """Training, pictures and TTA, for a finished run (paddy 0.1 recorded one total)."""
        if self.result is None:
            return None
        return self.result.get("seconds", self.result.get("train_seconds", 0) + self.result.get("predict_seconds", 0))


def run_folders(out: Path) -> list[RunFolder]:
    """Every run folder directly under `out`, in name order (hidden folders such as .locks are not)."""
    if not out.is_dir():
        raise PaddyError(f"no output folder {out}")
    return [RunFolder(p.parent) for p in sorted(out.glob(f"*/{CONFIG_FILE}")) if not p.parent.name.startswith(".")]


def listed_runs(out: Path) -> list[ListedRun]:
    """Every run folder under `out` with its state, settings, epochs, result and score."""
    listed = []
    for run in run_folders(out):
        state, history = state_of(run), run.history()
        result = run.result() if state == RunState.finished else None
        score = (result["metric"], result["valid_error"]) if result else best_so_far(history)
        listed.append(ListedRun(run, state, run.config(), len(history), result, *score))
    return listed


def best_so_far(history: pd.DataFrame) -> tuple[str | None, float | None]:
    """An unfinished run's metric (history.csv's first) and its best epoch's value so far; (None, None) before
    its first epoch."""
    metrics = metric_columns(history)
    values = history[metrics[0]].dropna() if metrics else pd.Series(dtype=float)
    if values.empty:
        return None, None
    return metrics[0], float(values.max() if greater_is_better(metrics[0]) else values.min())


def differing_settings(runs: list[ListedRun]) -> list[str]:
    """The settings whose values are not the same in every run (in ModelEntry's order), then the data folder
    (two competitions' runs under one --out)."""
    names = [*(f.name for f in fields(ModelEntry) if f.name not in (*SHOWN, *NEVER_COMPARED)), "data"]
    return [n for n in names if len({repr(r.settings.get(n)) for r in runs}) > 1]


def runs_frame(runs: list[ListedRun], sort: str | None = None) -> pd.DataFrame:
    """One row per run: name, state, arch, size, fold, epochs_done, the metric and its kept validation value,
    seconds, then the settings that differ between the runs; sorted by `sort` (any column; missing values last;
    `valid` best first), else by name."""
    rows = []
    differing = differing_settings(runs)
    for r in runs:
        fold = f"{r.settings['fold']}/{r.settings['folds']}" if r.settings.get("fold") else "-"
        rows.append(
            {
                "run": r.run.name,
                "state": str(r.state),
                "arch": r.settings.get("arch"),
                "size": "x".join(map(str, r.settings.get("size") or [])),
                "fold": fold,
                "epochs_done": r.epochs,
                "metric": r.metric,
                "valid": r.valid,
                "seconds": r.seconds,
                **{name: setting_text(r.settings.get(name)) for name in differing},
            }
        )
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *differing])
    if sort is None:
        return frame
    if sort not in frame.columns:
        raise PaddyError(f"cannot sort by {sort!r}: the columns are {', '.join(frame.columns)}")
    if sort == "valid":
        return best_first(frame)
    return frame.sort_values(sort, na_position="last", kind="stable").reset_index(drop=True)


def best_first(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished runs best first by their metric (the highest accuracy, the lowest error; runs of
    different metrics apart), then the unfinished ones."""
    sign = frame["metric"].map(lambda metric: -1.0 if metric and greater_is_better(metric) else 1.0)
    ranked = frame.assign(_rank=frame["valid"] * sign)
    ranked = ranked.sort_values(["metric", "_rank"], na_position="last", kind="stable")
    return ranked.drop(columns="_rank").reset_index(drop=True)


def setting_text(value: Any) -> str:
    """A setting as the tables show it: sizes as HxW, lists joined, a table (the competition) as its given keys."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {setting_text(item)}" for key, item in value.items() if item is not None)
    if isinstance(value, list):
        if not value:
            return "-"
        if all(isinstance(v, int) for v in value):
            return "x".join(map(str, value))
        return ",".join(setting_text(v) for v in value)
    return "-" if value is None else str(value)


def remove_dead_runs(out: Path) -> list[RunFolder]:
    """Remove every dead run folder under `out`, each while holding its lock and only if it is still dead
    then; never a finished, resumable or lr-find folder, nor one another process is writing. The removed."""
    removed = []
    for run in run_folders(out):
        try:
            with run.writing():
                if files_state(run) != RunState.dead:
                    continue
                shutil.rmtree(run.path)
        except RunBusy:
            continue
        except OSError as e:
            raise PaddyError(f"cannot remove {run.path}: {e.strerror or e}") from None
        removed.append(run)
    return removed
