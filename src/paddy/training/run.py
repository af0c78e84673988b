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
from fastai.vision.all import Learner, noop

from paddy.core.errors import PaddyError
from paddy.core.ranks import is_main_process
from paddy.core.versions import library_versions
from paddy.data.competition import CompetitionData, resolve_data
from paddy.data.folds import Folds, entry_folds
from paddy.data.images import without_bad_images
from paddy.runs.folder import RunFolder, new_run_folder, refuse_finished
from paddy.runs.predictions import Predictions, save_predictions
from paddy.runs.probes import resolve_auto_accum
from paddy.scoring.decisions import fit_decisions
from paddy.scoring.metrics import f_beta
from paddy.settings.checks import apply_overrides
from paddy.settings.competition import recorded_spec
from paddy.settings.entry import ENTRY_FIELDS, BadImages, ModelEntry
from paddy.training.best_epoch import KeptEpoch, adopt_kept, best_epoch_tracker
from paddy.training.checkpoint import EpochHook, EpochRecords, restore_best, resumable_checkpoint
from paddy.training.distributed import alone, distributed, finish, launched_run_folder, needs_launch
from paddy.training.ema import adopt_average
from paddy.training.learner import build_dataloaders, make_learner
from paddy.training.plan import TrainingPlan, check_against_data, plan_training
from paddy.training.predicting import save_run_plots, tta_predictions, validation_outputs
from paddy.training.saved_model import card_for, normalizers, save_model
from paddy.training.schedule import epoch_sizes, fit_phases, training_phases


@dataclass(frozen=True)
class RunResult:
    """What one finished training run produced, and how long its two parts took."""

    run: RunFolder
    entry: ModelEntry
    seed: int
    valid_error: float  # the kept epoch's validation value of the competition metric (`metric`)
    train_seconds: float  # the epochs, validation included
    predict_seconds: float  # pictures and TTA on the test set
    history: pd.DataFrame
    metric: str = "error_rate"
    kept: KeptEpoch | None = None  # which epoch's weights were kept, and whether early stopping ended the run

    @property
    def predictions_path(self) -> Path:
        return self.run.predictions_path


def out_of_fold_predictions(learn: Learner, plan: RunPlan, meta: dict[str, Any]) -> Predictions:
    """TTA probabilities of the images the run's fold held out, with their labels (`targets`)."""
    held_out = plan.folds.held_out(plan.training.entry.fold)
    images = [p for p in plan.data.train_images if p.name in held_out]
    oof_meta = {**meta, "out_of_fold": True, "targets": plan.data.label_texts(images)}
    return tta_predictions(learn, images, plan.data.classes, oof_meta, plan.training.seed)


@dataclass(frozen=True)
class RunPlan:
    """Everything settled about one run before anything heavy happens, by `plan_run` alone: the learner's
    plan (the entry with its accum resolved, the seed drawn, the precision), the data with its images
    checked, the folds its fold comes from, its folder, and whether it goes on from a checkpoint."""

    training: TrainingPlan
    data: CompetitionData
    run: RunFolder
    folds: Folds | None = None
    resume: bool = False

    @property
    def entry(self) -> ModelEntry:
        return self.training.entry

    @property
    def folds_identity(self) -> dict[str, str]:
        return self.folds.identity() if self.folds else {}

    def config_json(self) -> dict[str, Any]:
        """config.json: the resolved settings, the seed used, and the data (and folds) they train on."""
        return {
            **self.training.to_json(),
            "data": str(self.data.root),
            "competition": self.data.spec.to_json(),
            **self.data.training_identity(),
            **self.folds_identity,
        }

    def with_accum(self, accum: int) -> RunPlan:
        """The same run started again at another accum (same effective batch): an out-of-memory retry."""
        return replace(self, training=plan_training(replace(self.entry, accum=accum)), resume=False)


def loaders_at_sizes(learn: Learner, plan: RunPlan, num_workers: int | None) -> Callable | None:
    """For progressive resizing: the run's loaders at another size (its items resized to twice that
    unless item_size is set), normalised as the learner's are; None for a run at one size."""
    if not plan.entry.sizes:
        return None
    normalize = normalizers(learn)

    def loaders_at(size: tuple[int, int]):
        entry = replace(plan.entry, size=size)
        dls = build_dataloaders(plan.data, entry, plan.training.seed, plan.training.step_bs, num_workers, plan.folds)
        dls.add_tfms(normalize, "after_batch")
        return dls

    return loaders_at


def plan_run(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    budget_mib: float,
    bad_images: BadImages = BadImages.fail,
    run: RunFolder | None = None,
    *,
    suffix: str = "",
    resume: bool = False,
) -> RunPlan:
    """The one place a run is settled: `accum = "auto"` resolved from the probes under `out` for
    `budget_mib`, the entry checked, the seed drawn and the precision chosen, the images and folds
    checked against the entry, and the folder picked (`run`, the one a data-parallel launch chose, or a
    new time-stamped one under `out`). A resumed run keeps the seed it started with and the accum it was
    training at."""
    if entry.folds is not None and entry.fold is None:
        raise PaddyError(f"one run trains one fold: give fold 1..{entry.folds} (plan_runs plans them all)")
    if resume and run is not None:
        recorded = run.config()
        entry = replace(entry, seed=recorded["seed_used"], accum=recorded["accum"])
    (entry,) = resolve_auto_accum([entry], budget_mib, out, data.named_root)
    training = plan_training(entry)
    data = without_bad_images(data, bad_images, out)
    folds = entry_folds(out, data, entry)
    check_against_data(data, entry, folds)
    launched = launched_run_folder()
    run = run or (RunFolder(launched) if launched else new_run_folder(out, entry, suffix))
    return RunPlan(training, data, run, folds, resume)


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


def fit_run(plan: RunPlan, folder: RunFolder, num_workers: int | None, on_epoch: EpochHook | None) -> tuple:
    """The learner trained through the plan's schedule (from its checkpoint when it resumes) and holding the
    kept epoch's weights, with the epoch records, the kept epoch and when training started."""
    settings = plan.config_json()
    start = resumable_checkpoint(folder, settings) if plan.resume else None
    if start is None and is_main_process():
        folder.start(settings)
    started = time.monotonic()
    history = list(start.history if start else [])
    records = EpochRecords(folder.history_path, folder.checkpoint_path, settings, history, on_epoch or noop)
    learn = make_learner(plan.training, plan.data, [], num_workers, bars=on_epoch is None, folds=plan.folds)
    phases = training_phases(plan.entry)
    tracker = restore_best(best_epoch_tracker(plan.entry, learn.metrics[0].name, epoch_sizes(phases)), start)
    learn.add_cb(tracker)
    with distributed(learn):
        fit_phases(learn, phases, records, start, loaders_at_sizes(learn, plan, num_workers))
    adopt_average(learn)
    return learn, records, adopt_kept(learn, tracker), started


def finish_run(
    learn: Learner, plan: RunPlan, folder: RunFolder, valid_error: float, kept: KeptEpoch, pictures: bool
) -> Predictions:
    """After the epochs, with the kept epoch's weights: the pictures (with `pictures`), the saved model, the
    out-of-fold predictions of a fold's run, and the test set's TTA predictions (returned, written last by
    `train`)."""
    entry, data, seed = plan.entry, plan.data, plan.training.seed
    valid = validation_outputs(learn, reuse=not kept.before_last)  # the last pass validated other weights
    decisions = fit_decisions(data.kind, *valid, f_beta(data.metric))  # on the validation rows, held out
    if pictures:
        save_run_plots(learn, folder, data.classes, data.kind, valid, valid_error, decisions)
    save_model(learn, folder.model_path, card_for(learn, entry, plan.training.step_bs, data, seed))
    meta = {**predictions_meta(entry, seed, valid_error, folder, data), **plan.folds_identity}
    if decisions is not None:
        meta["decisions"] = decisions.to_json()
    if plan.folds is not None:
        save_predictions(out_of_fold_predictions(learn, plan, meta), folder.oof_path)
    return tta_predictions(learn, list(data.test_images), data.classes, meta, seed)


def train(
    plan: RunPlan,
    *,
    num_workers: int | None = None,
    on_epoch: EpochHook | None = None,
    keep_checkpoint: bool = False,
    pictures: bool = True,
) -> RunResult | None:
    """Train the planned run, predict the test set with TTA, and save it all in its run folder.

    The predictions file is written last, so its presence marks the run finished. With `on_epoch`, each
    epoch's history row goes there instead of fastai's bars and table (for logs, where redrawn bars are
    noise). A checkpoint is saved after every epoch and removed at the end (unless `keep_checkpoint`).
    Without `pictures` no picture is drawn: for a benchmark or check that needs only the model and its
    predictions (matplotlib takes about a second a run, most of a tiny one).

    In a data-parallel launch (`gpus` > 1) every process trains; the main one writes and predicts, and
    returns the result; the others return None.
    """
    if needs_launch(plan.entry.gpus):
        raise PaddyError(f"gpus {plan.entry.gpus}: data-parallel training starts with a launch of `gpus` processes")
    with plan.run.writing() as folder:
        learn, records, kept, started = fit_run(plan, folder, num_workers, on_epoch)
        if not is_main_process():
            finish()
            return None
        with alone():
            valid_error = records.valid_error(learn.metrics[0].name, kept.epoch)  # the label's
            trained = time.monotonic()
            preds = finish_run(learn, plan, folder, valid_error, kept, pictures)
        train_seconds, predict_seconds = trained - started, time.monotonic() - trained
        result = {
            "valid_error": valid_error,
            "metric": learn.metrics[0].name,
            "train_seconds": train_seconds,
            "predict_seconds": predict_seconds,
            **kept.to_json(),
        }
        folder.write_result({**result, "seed": plan.training.seed})
        save_predictions(preds, folder.predictions_path)
        if not keep_checkpoint:
            folder.checkpoint_path.unlink(missing_ok=True)
    finish()
    seed = plan.training.seed
    history, metric = folder.history(), learn.metrics[0].name
    return RunResult(folder, plan.entry, seed, valid_error, train_seconds, predict_seconds, history, metric, kept)


def recorded_entry(run: RunFolder) -> ModelEntry:
    """The settings a run was started with, from its config.json."""
    recorded = run.config()
    return apply_overrides(ModelEntry(), {name: recorded[name] for name in ENTRY_FIELDS if name in recorded})


def plan_runs(
    entry: ModelEntry,
    data: CompetitionData,
    out: Path,
    budget_mib: float,
    bad_images: BadImages = BadImages.fail,
    resumed: RunFolder | None = None,
) -> list[RunPlan]:
    """`paddy train`'s runs: the unfinished run `resumed` with its own settings and data, or every run of
    `entry` (one per fold with `folds` and no `fold`; the images checked once for all of them)."""
    if resumed is not None:
        refuse_finished(resumed)
        config = resumed.config()
        recorded_data = resolve_data(Path(config["data"]), recorded_spec(config.get("competition")))
        return [plan_run(recorded_entry(resumed), recorded_data, out, budget_mib, bad_images, resumed, resume=True)]
    data = without_bad_images(data, bad_images, out)
    return [plan_run(one, data, out, budget_mib, bad_images) for one in entry.per_fold()]


def resume(run: RunFolder, budget_mib: float, data: CompetitionData, **options: Any) -> RunResult | None:
    """Go on with an unfinished run from its last checkpoint, with its own settings and seed, on `data`
    (its own, already found; `options` as for `train`)."""
    plan = plan_run(recorded_entry(run), data, run.path.parent, budget_mib, run=run, resume=True)
    return train(plan, **options)
