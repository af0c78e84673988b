"""Training one model the Road-to-the-Top way: fastai vision_learner on a timm arch, then TTA.

Everything that can be checked is checked before the first batch, and a run folder only
gets its predictions file (the mark of a finished run) once training and TTA succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from fastai.vision.all import (
    Learner,
    Normalize,
    noop,
)

from paddy.core.errors import PaddyError
from paddy.core.ranks import is_main_process
from paddy.core.versions import library_versions
from paddy.data.competition import CompetitionData, resolve_data
from paddy.data.folds import Folds, entry_folds
from paddy.data.images import without_bad_images
from paddy.runs.folder import RunFolder, new_run_folder
from paddy.runs.lookup import find_run
from paddy.runs.predictions import Predictions, save_predictions
from paddy.runs.probes import resolve_auto_accum
from paddy.settings.budget import chosen_budget
from paddy.settings.checks import apply_overrides
from paddy.settings.entry import ENTRY_FIELDS, BadImages, ModelEntry
from paddy.settings.legacy import Recorded, upgraded
from paddy.training.checkpoint import Checkpoint, EpochHook, EpochRecords, load_checkpoint
from paddy.training.distributed import alone, distributed, finish, launch, launched_run_folder, needs_launch
from paddy.training.ema import adopt_average
from paddy.training.learner import build_dataloaders, make_learner
from paddy.training.plan import TrainingPlan, check_against_data, plan_training
from paddy.training.predicting import save_run_plots, tta_predictions
from paddy.training.saved_model import card_for, save_model
from paddy.training.schedule import fit_phases, training_phases


@dataclass(frozen=True)
class RunResult:
    """What one finished training run produced, and how long its two parts took."""

    run: RunFolder
    entry: ModelEntry
    seed: int
    valid_error: float
    train_seconds: float  # the epochs, validation included
    predict_seconds: float  # pictures and TTA on the test set
    history: pd.DataFrame

    @property
    def predictions_path(self) -> Path:
        return self.run.predictions_path


def out_of_fold_predictions(learn: Learner, ready: Ready, meta: dict[str, Any]) -> Predictions:
    """TTA probabilities of the images the run's fold held out, with their labels (`targets`)."""
    held_out = ready.folds.held_out(ready.plan.entry.fold)
    images = [p for p in ready.data.train_images if p.name in held_out]
    targets = [p.parent.name for p in images]
    oof_meta = {**meta, "out_of_fold": True, "targets": targets}
    return tta_predictions(learn, images, ready.data.classes, oof_meta, ready.plan.seed)


@dataclass(frozen=True)
class Ready:
    """A run that passed every check: its plan, the data with its images checked, its folder."""

    plan: TrainingPlan
    data: CompetitionData
    run: RunFolder
    folds: Folds | None = None  # a fold's run: the folds its fold comes from

    @property
    def folds_identity(self) -> dict[str, str]:
        return self.folds.identity() if self.folds else {}


def loaders_at_sizes(learn: Learner, ready: Ready, num_workers: int | None) -> Callable | None:
    """For progressive resizing: the run's loaders at another size (its items resized to twice that
    unless item_size is set), normalised as the learner's are; None for a run at one size."""
    if not ready.plan.entry.sizes:
        return None
    normalize = [t for t in learn.dls.after_batch.fs if isinstance(t, Normalize)]

    def loaders_at(size: tuple[int, int]):
        entry = replace(ready.plan.entry, size=size)
        dls = build_dataloaders(ready.data, entry, ready.plan.seed, ready.plan.step_bs, num_workers, ready.folds)
        dls.add_tfms(normalize, "after_batch")
        return dls

    return loaders_at


def prepare_run(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    budget_mib: float | None,
    bad_images: BadImages,
    run: RunFolder | None = None,
    suffix: str = "",
    resume: bool = False,
) -> Ready:
    """Resolve `--accum auto`, check the entry against the data and the images, and pick the folder.

    A resumed run keeps the seed it started with and the accum it was training at."""
    if resume and run is not None:
        recorded = run.config()
        entry = replace(entry, seed=recorded["seed_used"], accum=recorded["accum"])
    (entry,) = resolve_auto_accum(
        [entry], chosen_budget() if budget_mib is None else budget_mib, out, data.named_root
    )
    plan = plan_training(entry)
    data = without_bad_images(data, bad_images)
    folds = entry_folds(out, data, entry)
    check_against_data(data, entry, folds)
    return Ready(plan, data, run or new_run_folder(out, entry, suffix), folds)


def run_config_json(ready: Ready) -> dict[str, Any]:
    """config.json: the resolved settings, the seed used, and the data they train on."""
    return {**ready.plan.to_json(), "data": str(ready.data.root), **ready.folds_identity}


def predictions_meta(entry: ModelEntry, seed: int, valid_error: float, run: RunFolder, data: CompetitionData) -> dict:
    """What later stages check: the settings, the run, and the data (root and test-id fingerprint)."""
    return {
        **entry.to_json(),
        "seed": seed,
        "valid_error": valid_error,
        "run": run.name,
        **data.identity(),
        "versions": library_versions(),
    }


def resumable_checkpoint(run: RunFolder, settings: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint of an unfinished run trained with exactly these settings, or why it cannot go on.

    None for a run stopped inside its first epoch: it starts again, with the same seed, so it
    still ends as it would have."""
    if run.finished:
        raise PaddyError(f"{run.path} has finished: nothing to resume (train a new run, or --force to redo it)")
    if not run.checkpoint_path.is_file():
        return None
    checkpoint = load_checkpoint(run.checkpoint_path)
    keys = (settings.keys() | checkpoint.settings.keys()) - {"seed"}  # the seed actually used is seed_used
    recorded = upgraded(Recorded.settings, checkpoint.settings)
    changed = sorted(k for k in keys if settings.get(k) != recorded.get(k))
    if changed:
        raise PaddyError(
            f"{run.path} was trained with other settings ({', '.join(changed)}); resume it with its own, or --force"
        )
    return checkpoint


def train(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    *,
    budget_mib: float | None = None,
    bad_images: BadImages = BadImages.fail,
    num_workers: int | None = None,
    run: RunFolder | None = None,
    on_epoch: EpochHook | None = None,
    resume: bool = False,
    keep_checkpoint: bool = False,
) -> RunResult | None:
    """Train `entry` on `data`, predict the test set with TTA, and save it all in a run folder.

    The folder is `run` (default: a new time-stamped one under `out`); the predictions file is
    written last, so its presence marks the run finished. `--accum auto` is read from the
    probes under `out` for `budget_mib`. With `on_epoch`, each epoch's history row goes there
    instead of fastai's bars and table (for logs, where redrawn bars are noise).

    A checkpoint is saved after every epoch and removed at the end (unless `keep_checkpoint`);
    with `resume`, the unfinished `run` goes on from its checkpoint with its own seed.

    In a data-parallel launch (`gpus` > 1) every process trains; the main one writes and predicts, and
    returns the result; the others return None.
    """
    if entry.folds is not None and entry.fold is None:
        raise PaddyError(f"one run trains one fold: give fold 1..{entry.folds} (train_entry trains them all)")
    if needs_launch(entry.gpus):
        raise PaddyError(f"gpus {entry.gpus}: data-parallel training starts from `paddy train --gpus {entry.gpus}`")
    launched = launched_run_folder()
    run = run or (RunFolder(launched) if launched else None)
    ready = prepare_run(entry, data, out, budget_mib, bad_images, run, resume=resume)
    entry, data, settings = ready.plan.entry, ready.data, run_config_json(ready)
    with ready.run.writing() as folder:
        start = resumable_checkpoint(folder, settings) if resume else None
        if start is None and is_main_process():
            folder.start(settings)
        started = time.monotonic()
        records = EpochRecords(
            folder.history_path,
            folder.checkpoint_path,
            settings,
            list(start.history if start else []),
            on_epoch or noop,
        )
        learn = make_learner(ready.plan, data, [], num_workers, bars=on_epoch is None, folds=ready.folds)
        with distributed(learn):
            fit_phases(learn, training_phases(entry), records, start, loaders_at_sizes(learn, ready, num_workers))
        adopt_average(learn)
        if not is_main_process():
            finish()
            return None
        with alone():
            valid_error = records.valid_error(learn.metrics[0].name)  # the label's (no fit ran if only TTA was left)
            trained = time.monotonic()
            save_run_plots(learn, folder, data.classes)
            save_model(
                learn, folder.model_path, card_for(learn, entry, ready.plan.step_bs, data.classes, ready.plan.seed)
            )
            meta = {**predictions_meta(entry, ready.plan.seed, valid_error, folder, data), **ready.folds_identity}
            if ready.folds is not None:
                save_predictions(out_of_fold_predictions(learn, ready, meta), folder.oof_path)
            preds = tta_predictions(learn, list(data.test_images), data.classes, meta, ready.plan.seed)
        train_seconds, predict_seconds = trained - started, time.monotonic() - trained
        result = {"valid_error": valid_error, "train_seconds": train_seconds, "predict_seconds": predict_seconds}
        folder.write_result({**result, "seed": ready.plan.seed})
        save_predictions(preds, folder.predictions_path)
        if not keep_checkpoint:
            folder.checkpoint_path.unlink(missing_ok=True)
    finish()
    return RunResult(folder, entry, ready.plan.seed, valid_error, train_seconds, predict_seconds, folder.history())


def recorded_entry(run: RunFolder) -> ModelEntry:
    """The settings a run was started with, from its config.json."""
    recorded = run.config()
    return apply_overrides(ModelEntry(), {name: recorded[name] for name in ENTRY_FIELDS if name in recorded})


def resume_run(run: RunFolder, data: CompetitionData, **options: Any) -> RunResult:
    """Go on with an unfinished run from its last checkpoint, with its own settings and seed
    (`options` as for `train`)."""
    return train(recorded_entry(run), data, run.path.parent, run=run, resume=True, **options)


def train_entry(
    entry: ModelEntry, data: CompetitionData, out: Path, *, bad_images: BadImages = BadImages.fail, **options: Any
) -> list[RunResult]:
    """Every run of `entry`: one per fold with `folds` and no `fold` (the images checked once for all
    of them), else one (`options` as for `train`)."""
    data = without_bad_images(data, bad_images)
    return [train(one, data, out, bad_images=bad_images, **options) for one in entry.per_fold()]


def launch_data_parallel(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    argv: list[str],
    *,
    resume: str | None = None,
    budget_mib: float | None = None,
    bad_images: BadImages = BadImages.fail,
) -> int | None:
    """`paddy train` of a run on several GPUs, from the one process the user started: every check
    once, the run folder chosen once, then the same command as `gpus` processes; their exit code.
    None where no launch is wanted (one GPU, or this is already one of the processes)."""
    run = find_run(resume, out) if resume is not None else None
    gpus = recorded_entry(run).gpus if run is not None else entry.gpus
    if not needs_launch(gpus):
        return None
    if run is None:
        if entry.folds is not None and entry.fold is None:
            raise PaddyError(f"gpus {gpus} trains one run at a time: give --fold 1..{entry.folds}")
        run = prepare_run(entry, data, out, budget_mib, bad_images).run
    return launch(gpus, argv, run.path)


def train_or_resume(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    *,
    resume: str | None = None,
    settings_given: tuple[str, ...] = (),
    **options: Any,
) -> list[RunResult]:
    """`paddy train`: new runs of `entry` on `data` (one per fold with `folds`), or with `resume` (a run
    under `out`, or a path) the interrupted run goes on with its own settings and data, which
    `settings_given` on the command line may not change."""
    if resume is None:
        return train_entry(entry, data, out, **options)
    if settings_given:
        raise PaddyError(f"--resume goes on with the run's own settings: drop --{settings_given[0].replace('_', '-')}")
    run = find_run(resume, out)
    return [resume_run(run, resolve_data(Path(run.config()["data"])), **options)]
