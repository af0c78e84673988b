"""Training one model the Road-to-the-Top way: fastai vision_learner on a timm arch, then TTA.

Everything that can be checked is checked before the first batch, and a run folder only
gets its predictions file (the mark of a finished run) once training and TTA succeeded.
"""

from __future__ import annotations

import pickle
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from fastai.vision.all import (
    Callback,
    CategoryBlock,
    DataBlock,
    FuncSplitter,
    GradientAccumulation,
    ImageBlock,
    Learner,
    MixUp,
    Normalize,
    ProgressCallback,
    RandomSplitter,
    noop,
    parent_label,
    set_seed,
    vision_learner,
)
from safetensors import SafetensorError
from torch import nn

from paddy.checkpoints import Checkpoint, EpochHook, EpochRecords, fit_phases, load_checkpoint, training_phases
from paddy.config import (
    ENTRY_FIELDS,
    BadImages,
    ModelEntry,
    Precision,
    accum_problem,
    apply_overrides,
    check_entry,
    unrecorded_settings,
)
from paddy.data import CompetitionData, extra_labels, resolve_data, training_split_size, without_bad_images
from paddy.data_parallel import alone, distributed, finish, is_main_process, launch, launched_run_folder, needs_launch
from paddy.errors import PaddyError
from paddy.folds import Folds, entry_folds
from paddy.interrupts import RaiseDroppedInterrupt
from paddy.memory_probes import chosen_budget, resolve_auto_accum
from paddy.optimizers import opt_func
from paddy.plots import save_confusion_matrix, save_loss_plot
from paddy.predictions import Predictions, save_predictions
from paddy.runs import RunFolder, find_run, new_run_folder
from paddy.saved_model import card_for, save_model
from paddy.targets import single_target, two_targets
from paddy.transforms import image_transforms
from paddy.versions import library_versions
from paddy.weight_average import WeightAverage, adopt_average

LOSS_PLOT = "loss.png"
CONFUSION_PLOT = "confusion.png"
WEIGHTS_FILE_ERRORS = (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError)


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


def accumulation(bs: int, accum: int) -> tuple[int, list[Callback]]:
    """Per-step batch size and callbacks so `accum` small steps make one step of `bs` images.

    fastai's GradientAccumulation counts samples (n_acc=bs), not steps, and scales each
    step's loss by its share of the effective batch. It counts one process's samples: with several
    data-parallel processes `bs` is each one's share, and DDP's mean over them makes the whole batch.
    """
    if problem := accum_problem(bs, accum):
        raise PaddyError(f"accum: {problem}")
    return bs // accum, ([GradientAccumulation(n_acc=bs)] if accum > 1 else [])


def resolve_precision(precision: Precision, cuda: bool | None = None) -> Precision:
    """'auto' means fp16 where CUDA is available and fp32 elsewhere."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if precision == Precision.auto:
        return Precision.fp16 if cuda else Precision.fp32
    if precision == Precision.fp16 and not cuda:
        raise PaddyError("precision fp16 needs a CUDA GPU; use --precision fp32 or auto")
    return precision


def check_against_data(data: CompetitionData, entry: ModelEntry, folds: Folds | None = None) -> None:
    """Refuse an entry the data cannot train: a second target missing from train.csv, or a training
    split smaller than one effective batch (no optimizer step would run, yet the run would 'finish')."""
    if entry.multi_target:
        extra_labels(data, entry.multi_target)
    if folds is not None and entry.fold is not None:
        n_train, held_out = len(data.train_images) - len(folds.held_out(entry.fold)), f"fold {entry.fold}"
    else:
        n_train, held_out = training_split_size(len(data.train_images), entry.valid_pct), f"valid_pct {entry.valid_pct}"
    if n_train < entry.bs:
        raise PaddyError(
            f"bs {entry.bs} is larger than the {n_train} training images left after holding out {held_out}: "
            "no optimizer step would run; lower --bs"
        )


def build_dataloaders(
    data: CompetitionData,
    entry: ModelEntry,
    seed: int,
    step_bs: int,
    num_workers: int | None = None,
    folds: Folds | None = None,
):
    """Images resized per item and augmented per batch to `size` (see `image_transforms`).

    With `multi_target`, a second category (a train.csv column) is a second target. With `folds`,
    the entry's fold is the validation set instead of a random `valid_pct`.
    """
    blocks, getters = [CategoryBlock(vocab=list(data.classes))], [parent_label]
    if entry.multi_target:
        extra = extra_labels(data, entry.multi_target)
        blocks.append(CategoryBlock(vocab=sorted(set(extra.values()))))
        getters.append(lambda path: extra[path.name])
    item_tfms, batch_tfms = image_transforms(str(entry.item), entry.size, entry.resize_to, entry.augmentation())
    block = DataBlock(
        blocks=(ImageBlock, *blocks),
        n_inp=1,
        get_items=lambda _: list(data.train_images),
        splitter=held_out_splitter(entry, seed, folds),
        get_y=getters if entry.multi_target else parent_label,
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    )
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    return block.dataloaders(data.train_dir, bs=step_bs, **kwargs)


def held_out_splitter(entry: ModelEntry, seed: int, folds: Folds | None) -> Callable:
    """The entry's fold of `folds` as the validation set, else a seeded random `valid_pct`."""
    if folds is None or entry.fold is None:
        return RandomSplitter(entry.valid_pct, seed=seed)
    held_out = folds.held_out(entry.fold)
    return FuncSplitter(lambda path: path.name in held_out)


def read_pretrained_file(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file as timm reads it (safetensors, or a .pth state dict without unpickling code)."""
    from timm.models import load_state_dict

    try:
        return load_state_dict(str(path))
    except WEIGHTS_FILE_ERRORS as e:
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        raise PaddyError(
            f"cannot read pretrained_file {path}: not a readable .safetensors or .pth state dict "
            f"({type(e).__name__}: {first_line})"
        ) from None


def load_backbone_strictly(body: nn.Module, state: dict[str, torch.Tensor], path: Path, arch: str) -> None:
    """Load every backbone weight of `state` into `body` and refuse any that is missing or left over.

    fastai builds the backbone with num_classes=0 and timm then loads the file non-strictly,
    so a file of another model would silently leave random weights: only the classifier,
    which the new head replaces, may be dropped."""
    classifier = body.pretrained_cfg.get("classifier") or ()
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    backbone = {k: v for k, v in state.items() if not any(k == p or k.startswith(f"{p}.") for p in prefixes)}
    try:
        loaded = body.load_state_dict(backbone, strict=False)
    except RuntimeError as e:
        raise PaddyError(f"pretrained_file {path} does not fit {arch}: {str(e).strip().splitlines()[-1]}") from None
    problems = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for what, keys in (("backbone weights missing", loaded.missing_keys), ("unexpected", loaded.unexpected_keys))
        if keys
    ]
    if problems:
        raise PaddyError(f"pretrained_file {path} does not fit {arch}: {', '.join(problems)}")


def build_learner(dls, entry: ModelEntry, cbs: list[Callback], label_column: str = "label") -> Learner:
    """vision_learner on the timm arch, with pretrained weights from the hub or a local file.

    `label_column` (the sample submission's) names the label's error metric of a two-target model."""
    kwargs: dict[str, Any] = {}
    pretrained = entry.pretrained or entry.pretrained_file is not None
    state = read_pretrained_file(entry.pretrained_file) if entry.pretrained_file else None
    if entry.pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(entry.pretrained_file)}
    if entry.multi_target:
        n_classes, n_extra = (len(vocab) for vocab in dls.train_ds.vocab)
        loss, metrics = two_targets(n_classes, label_column, entry.multi_target, entry.label_smoothing)
        kwargs["n_out"] = n_classes + n_extra
    else:
        loss, metrics = single_target(entry.label_smoothing)
    cbs = [*cbs, RaiseDroppedInterrupt()]
    if entry.mixup:
        cbs = [*cbs, MixUp(entry.mixup)]
    try:
        learn = vision_learner(
            dls,
            entry.arch,
            pretrained=pretrained,
            loss_func=loss,
            metrics=metrics,
            cbs=cbs,
            opt_func=opt_func(entry.opt),
            **kwargs,
        )
    except OSError as e:
        raise PaddyError(
            f"cannot get pretrained weights for {entry.arch} ({type(e).__name__}); "
            "offline? pass --pretrained-file FILE or --no-pretrained"
        ) from None
    except RuntimeError as e:
        if entry.pretrained_file is None:
            raise
        first_line = str(e).strip().splitlines()[0]
        raise PaddyError(f"pretrained_file {entry.pretrained_file} does not fit {entry.arch}: {first_line}") from None
    if state is not None:
        load_backbone_strictly(learn.model[0].model, state, entry.pretrained_file, entry.arch)
    return learn


class RefuseNonFiniteLoss(Callback):
    """Stop at the first NaN or infinite training loss: the rest of the run could only be garbage."""

    order = 5  # before fastai's Recorder smooths the loss

    def after_loss(self) -> None:
        if self.training and not torch.isfinite(self.learn.loss).all():
            raise PaddyError(
                f"the training loss became {self.learn.loss.item()} at epoch {self.epoch + 1}, batch {self.iter + 1}; "
                "nothing was saved as finished (try a lower --lr or --precision fp32)"
            )


def save_run_plots(learn: Learner, run: RunFolder, classes: tuple[str, ...]) -> None:
    """Loss curves and the validation confusion matrix of the label, beside the history."""
    save_loss_plot(run.history(), run.path / LOSS_PLOT)
    probs, targets = learn.get_preds(ds_idx=1)
    actual = targets[0] if isinstance(targets, (list, tuple)) else targets
    save_confusion_matrix(actual.numpy(), probs.argmax(dim=1).numpy(), list(classes), run.path / CONFUSION_PLOT)


def tta_predictions(
    learn: Learner, images: list[Path], vocab: tuple[str, ...], meta: dict[str, Any], seed: int = 0
) -> Predictions:
    """Test-time-augmented probabilities of `images` (the test set, or a fold's held-out images), in
    their order; seeded, so `paddy predict` with the saved model draws the same augmentations."""
    test_dl = learn.dls.test_dl(images)  # before seeding: making a loader draws from `random`, as predict's does
    set_seed(seed)
    probs, _ = learn.tta(dl=test_dl)
    return Predictions(probs.float().numpy(), tuple(p.name for p in images), vocab, meta)


def out_of_fold_predictions(learn: Learner, ready: Ready, meta: dict[str, Any]) -> Predictions:
    """TTA probabilities of the images the run's fold held out, with their labels (`targets`)."""
    held_out = ready.folds.held_out(ready.plan.entry.fold)
    images = [p for p in ready.data.train_images if p.name in held_out]
    targets = [p.parent.name for p in images]
    oof_meta = {**meta, "out_of_fold": True, "targets": targets}
    return tta_predictions(learn, images, ready.data.classes, oof_meta, ready.plan.seed)


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided about a run before anything heavy happens."""

    entry: ModelEntry
    step_bs: int
    callbacks: list[Callback]
    precision: Precision
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.entry.to_json(),
            "seed_used": self.seed,
            "step_bs": self.step_bs,
            "precision_used": str(self.precision),
        }


def plan_training(entry: ModelEntry) -> TrainingPlan:
    """Check the entry and settle accumulation, precision and seed (drawn when unset)."""
    check_entry(entry)
    step_bs, callbacks = accumulation(entry.process_bs, entry.resolved_accum)
    seed = entry.seed if entry.seed is not None else random.SystemRandom().randrange(2**31)
    return TrainingPlan(entry, step_bs, callbacks, resolve_precision(entry.precision), seed)


def make_learner(
    plan: TrainingPlan,
    data: CompetitionData,
    extra_callbacks: list[Callback],
    num_workers: int | None = None,
    bars: bool = True,
    folds: Folds | None = None,
) -> Learner:
    """Seeded data loaders and learner for the plan, in mixed precision where planned.

    fit_one_cycle trains every layer, as the course's `learn.unfreeze()` before it; fastai
    freezes a pretrained body, and fine_tune freezes and unfreezes it itself. Without `bars`
    fastai prints nothing (no bars, no epoch table): the caller reports progress itself."""
    set_seed(plan.seed)
    dls = build_dataloaders(data, plan.entry, plan.seed, plan.step_bs, num_workers, folds)
    averaging = [WeightAverage(plan.entry.ema)] if plan.entry.ema else []
    callbacks = [RefuseNonFiniteLoss(), *plan.callbacks, *averaging, *extra_callbacks]
    learn = build_learner(dls, plan.entry, callbacks, data.label_column)
    if not plan.entry.finetune:
        learn.unfreeze()
    if not bars:
        learn.remove_cb(ProgressCallback)
        learn.logger = noop
    return learn.to_fp16() if plan.precision == Precision.fp16 else learn


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
    (entry,) = resolve_auto_accum([entry], chosen_budget() if budget_mib is None else budget_mib, out, data.as_flag)
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
    recorded = {**unrecorded_settings(), **checkpoint.settings}  # a checkpoint of paddy 0.2 trained as 0.2 did
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
    recorded = {**unrecorded_settings(), **run.config()}  # a run of paddy 0.2 trained as 0.2 did
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
