"""The run folder: its names, layout, creation, one writer at a time, reading it back, and
which finished run belongs to a model entry.

A run folder holds config.json (written first), history.csv (after every epoch),
result.json, pictures, and predictions.safetensors, written last: its presence marks a
finished run. Every command that writes or reads run folders goes through `RunFolder`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from paddy.core.errors import PaddyError
from paddy.core.files import read_csv, read_json, write_json
from paddy.core.ranks import is_main_process
from paddy.runs.predictions import PREDICTIONS_FILE
from paddy.settings.entry import ENTRY_FIELDS, ModelEntry
from paddy.settings.legacy import Recorded, unrecorded_settings, upgraded

CONFIG_FILE = "config.json"


HISTORY_FILE = "history.csv"
HISTORY_NOT_METRICS = ("fit", "size", "epoch", "train_loss", "valid_loss", "time")  # its other columns


def metric_columns(history: pd.DataFrame) -> list[str]:
    """history.csv's epoch metrics, in the learner's order: the first is the competition's metric (or a
    two-target model's error of its label)."""
    return [column for column in history.columns if column not in HISTORY_NOT_METRICS]


RESULT_FILE = "result.json"


CHECKPOINT_FILE = "checkpoint.pt"  # the last finished epoch of an unfinished run


MODEL_FILE = "model.safetensors"  # a finished run's model, for paddy predict


OOF_FILE = "oof.safetensors"  # a fold's run: TTA predictions of the images its fold held out


# Settings that do not change what a run learns: accum may grow on out-of-memory retries
# (same effective batch), the ensemble weight only matters when averaging, and trackers only watch.
NOT_MATCHED = ("accum", "ensemble_weight", "trackers")


LOCKS_FOLDER = ".locks"  # one lock file per run folder, beside them (a run folder is deleted and recreated)


class RunBusy(PaddyError):
    """Another process holds the run folder's lock."""


def matched_settings(entry: ModelEntry, data_root: Path) -> dict[str, Any]:
    """What a finished run must have been trained with to count as this entry's run."""
    settings = {k: v for k, v in entry.to_json().items() if k not in NOT_MATCHED}
    return {**settings, "data": str(data_root)}


MATCH_KEYS = (*sorted(ENTRY_FIELDS - set(NOT_MATCHED)), "data", "folds_sha256")


def match_key(recorded: dict[str, Any], leave_out: tuple[str, ...] = ()) -> str:
    """The settings by which a run is an entry's run (MATCH_KEYS but `leave_out`), as one hashable text."""
    return json.dumps([recorded.get(k) for k in MATCH_KEYS if k not in leave_out], default=str)


def entry_match_key(entry: ModelEntry, data_root: Path, folds_sha256: str | None) -> str | None:
    """The match key of the entry's run: the entry's settings on that data and, for a fold's run, on the
    folds file with digest `folds_sha256`: a fold held out of other folds (other images, another draw)
    belongs to no entry of these, and with no folds known (None) no fold's run matches (None)."""
    if entry.fold is not None and folds_sha256 is None:
        return None
    return match_key({**matched_settings(entry, data_root), "folds_sha256": folds_sha256})


def settings_match(recorded: dict[str, Any], entry: ModelEntry, data_root: Path, folds_sha256: str | None) -> bool:
    """Whether a run that recorded `recorded` (upgraded settings) is the entry's run (see entry_match_key)."""
    expected = entry_match_key(entry, data_root, folds_sha256)
    return expected is not None and match_key(recorded) == expected


def settings_key(entry: ModelEntry, data_root: Path) -> str:
    """A short digest of the matched settings: a changed entry gets a new folder, never the old one's.
    Settings added since paddy 0.2 are left out where they do what 0.2 did, so such an entry keeps its folder."""
    before = unrecorded_settings()
    settings = {k: v for k, v in matched_settings(entry, data_root).items() if k not in before or v != before[k]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunFolder:
    """One training run's folder (`path`) and the files in it."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def predictions_path(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def oof_path(self) -> Path:
        return self.path / OOF_FILE

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def resumable(self) -> bool:
        """Unfinished, with a checkpoint to go on from."""
        return not self.finished and self.checkpoint_path.is_file()

    @property
    def finished(self) -> bool:
        """Predictions are written last: with them, everything else is complete."""
        return self.predictions_path.is_file() and (self.path / RESULT_FILE).is_file()

    @contextmanager
    def writing(self) -> Iterator[RunFolder]:
        """Hold this folder's lock while writing it, so two processes never interleave in one run.

        The lock is an OS file lock in `<out>/.locks/`: a killed process releases it. It is
        re-entrant in one process, so a caller may hold it around `train`, which takes it too. Of
        data-parallel processes training one run, the main one holds it for all of them."""
        if not is_main_process():
            yield self
            return
        locks = self.path.parent / LOCKS_FOLDER
        lock = FileLock(locks / f"{self.name}.lock", is_singleton=True)
        try:
            locks.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)
        except Timeout:
            raise RunBusy(f"another paddy process is writing {self.path}; wait for it or use another --out") from None
        except OSError as e:
            raise PaddyError(f"cannot write to output folder {self.path.parent}: {e.strerror}") from None
        try:
            yield self
        finally:
            lock.release()

    def start(self, config: dict[str, Any]) -> RunFolder:
        """An empty folder (an unfinished run's leftovers are cleared) holding `config`; fails early
        if it cannot be written. Call it inside `writing()`."""
        try:
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.mkdir(parents=True)
            write_json(self.config_path, config)
        except OSError as e:
            raise PaddyError(f"cannot write to output folder {self.path.parent}: {e.strerror or e}") from None
        return self

    def config(self) -> dict[str, Any]:
        """The run's settings as this release records them (a run of an older release upgraded)."""
        return upgraded(Recorded.settings, read_json(self.config_path))

    def history(self) -> pd.DataFrame:
        return read_csv(self.history_path) if self.history_path.is_file() else pd.DataFrame()

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.path / RESULT_FILE, result)

    def result(self) -> dict[str, Any] | None:
        """result.json of a finished run, else None."""
        return upgraded(Recorded.result, read_json(self.path / RESULT_FILE)) if self.finished else None

    def pictures(self) -> list[Path]:
        return sorted(self.path.glob("*.png"))

    def matches(self, entry: ModelEntry, data_root: Path, folds_sha256: str | None) -> bool:
        """Whether this run is the entry's (see `settings_match`)."""
        return settings_match(self.config(), entry, data_root, folds_sha256)


def refuse_finished(run: RunFolder) -> None:
    """A finished run has nothing to go on with (resuming it is refused): say where its predictions are."""
    if run.finished:
        raise PaddyError(
            f"{run.path} has finished: nothing to resume (its predictions: {run.predictions_path}); "
            "to train it again, start a new run with its settings"
        )


def new_run_folder(out: Path, entry: ModelEntry, suffix: str = "") -> RunFolder:
    """A new, time-stamped run folder under `out` (`paddy train`, `paddy lr-find`), never an existing one."""
    stem = f"{datetime.now():%Y%m%d-%H%M%S}-{entry.describe()}"
    name, number = f"{stem}{suffix}", 1
    while (out / name).exists():
        number += 1
        name = f"{stem}-{number}{suffix}"
    return RunFolder(out / name)


def entry_run_folder(out: Path, config_name: str, index: int, entry: ModelEntry, data_root: Path) -> RunFolder:
    """The folder `paddy run` trains a config entry in: stable, so a re-run finds it, and named with a
    digest of its settings, so changing the entry trains a new run beside the old one."""
    return RunFolder(out / f"{config_name}-{index:02d}-{entry.describe()}-{settings_key(entry, data_root)}")
