"""`paddy kaggle pull`: a finished notebook's output downloaded, and its finished runs moved into the
output folder with one rename each, never over a run already there."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.core.files import TEMP_SUFFIX, folder_written_whole
from paddy.kaggle.access import download_kernel_output, kaggle_api, kernel_status
from paddy.kaggle.kernels import KERNELS_FOLDER, kernel_slug
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions


@dataclass(frozen=True)
class Pulled:
    """What `paddy kaggle pull` did: the output folder, and each run merged, kept local or left."""

    folder: Path
    merged: tuple[str, ...]
    already_here: tuple[str, ...]
    unfinished: tuple[str, ...]


def pull_kernel(kernel: str, out: Path, root: Path = KERNELS_FOLDER) -> Pulled:
    """Download the finished notebook's output into `<root>/<slug>/output-<time>` and move its finished
    runs into `out`, never over a run already there."""
    api = kaggle_api()
    status = kernel_status(api, kernel)
    if status.state != "complete":
        failure = f": {status.failure}" if status.failure else ""
        raise PaddyError(f"{kernel} is {status.state}{failure}; pull it once complete (paddy kaggle status --wait)")
    dest = root / kernel_slug(kernel) / f"output-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    with folder_written_whole(dest) as staging:
        download_kernel_output(api, kernel, staging)
    return Pulled(dest, *merge_runs(dest / "runs", out))


def merge_runs(pulled: Path, out: Path) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Move each finished, readable run of `pulled` into `out` with one rename (a reader never sees half
    a run); a run already in `out` stays as it is. Returns (merged, already here, unfinished)."""
    merged, already_here, unfinished = [], [], []
    runs = sorted(p for p in pulled.iterdir() if p.is_dir() and not p.name.startswith(".")) if pulled.is_dir() else []
    out.mkdir(parents=True, exist_ok=True)
    for run in map(RunFolder, runs):
        if not run.finished:
            unfinished.append(run.name)
            continue
        load_predictions(run.predictions_path)  # a damaged run is refused, as `paddy ensemble` would
        if (out / run.name).exists():
            already_here.append(run.name)
            continue
        move_folder(run.path, out / run.name)
        merged.append(run.name)
    return tuple(merged), tuple(already_here), tuple(unfinished)


def move_folder(source: Path, target: Path) -> None:
    """Rename `source` to `target`; across file systems, copy beside `target` first, then rename."""
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        staging = target.with_name(f".{target.name}{TEMP_SUFFIX}")
        shutil.copytree(source, staging)
        os.rename(staging, target)
        shutil.rmtree(source)
