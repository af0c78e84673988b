"""The run folder layout, and reading run folders back: what a run was, how it went, and
where its pictures are.

A run folder holds config.json (written first), history.csv (after every epoch),
result.json, pictures, and predictions.safetensors, written last: its presence marks a
finished run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from paddy.errors import PaddyError
from paddy.files import read_json
from paddy.predictions import PREDICTIONS_FILE

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class RunSummary:
    """A run folder's settings, history, outcome (None while unfinished) and pictures."""

    run_dir: Path
    config: dict[str, Any]
    history: pd.DataFrame
    result: dict[str, Any] | None
    pictures: list[Path]


def finished_result(run_dir: Path) -> dict[str, Any] | None:
    """The result.json of a finished run (one with its predictions written), else None."""
    if not (run_dir / PREDICTIONS_FILE).is_file() or not (run_dir / RESULT_FILE).is_file():
        return None
    return read_json(run_dir / RESULT_FILE)


def finished_runs(out: Path) -> list[Path]:
    """Run folders under `out` whose predictions were written (in name order)."""
    return sorted(p.parent for p in out.glob(f"*/{PREDICTIONS_FILE}"))


def find_run(run: str, out: Path, marker: str = CONFIG_FILE) -> Path:
    """A run given as a folder name under `out` or as a path, holding `marker`."""
    for candidate in (out / run, Path(run)):
        if (candidate / marker).is_file():
            return candidate
    state = "finished " if marker == PREDICTIONS_FILE else ""
    raise PaddyError(f"no {state}run folder {run!r} (looked for {out / run} and {run})")


def run_summary(run_dir: Path) -> RunSummary:
    """Everything `paddy show` prints about one run."""
    history_path = run_dir / HISTORY_FILE
    history = pd.read_csv(history_path) if history_path.is_file() else pd.DataFrame()
    return RunSummary(
        run_dir=run_dir,
        config=read_json(run_dir / CONFIG_FILE),
        history=history,
        result=finished_result(run_dir),
        pictures=sorted(run_dir.glob("*.png")),
    )
