"""Training one model the Road-to-the-Top way: fastai vision_learner on a timm arch, then TTA.

Everything that can be checked is checked before the first batch, and a run folder only
gets its predictions file (the mark of a finished run) once training and TTA succeeded.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from fastai.vision.all import (
    Callback,
    CategoryBlock,
    DataBlock,
    GradientAccumulation,
    ImageBlock,
    Learner,
    MixUp,
    RandomSplitter,
    Resize,
    aug_transforms,
    parent_label,
    set_seed,
    vision_learner,
)

from paddy.config import ModelEntry, check_entry
from paddy.data import CompetitionData, extra_labels
from paddy.errors import PaddyError
from paddy.files import atomic_write_text, write_json
from paddy.plots import save_confusion_matrix, save_loss_plot
from paddy.predictions import PREDICTIONS_FILE, Predictions, save_predictions
from paddy.runs import CONFIG_FILE, HISTORY_FILE, RESULT_FILE
from paddy.targets import single_target, two_targets
from paddy.versions import library_versions

LOSS_PLOT = "loss.png"
CONFUSION_PLOT = "confusion.png"


@dataclass(frozen=True)
class RunResult:
    """What one finished training run produced."""

    run_dir: Path
    entry: ModelEntry
    seed: int
    valid_error: float
    seconds: float
    history: pd.DataFrame

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / PREDICTIONS_FILE


def accumulation(bs: int, accum: int) -> tuple[int, list[Callback]]:
    """Per-step batch size and callbacks so `accum` small steps make one step of `bs` images.

    fastai's GradientAccumulation counts samples (n_acc=bs), not steps, and scales each
    step's loss by its share of the effective batch.
    """
    if accum < 1 or bs % accum:
        raise PaddyError(f"accum {accum} must be a positive divisor of bs {bs}")
    return bs // accum, ([GradientAccumulation(n_acc=bs)] if accum > 1 else [])


def resolve_precision(precision: str, cuda: bool | None = None) -> str:
    """'auto' means fp16 where CUDA is available and fp32 elsewhere."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise PaddyError("precision fp16 needs a CUDA GPU; use --precision fp32 or auto")
    return precision


def build_dataloaders(
    data: CompetitionData, entry: ModelEntry, seed: int, step_bs: int, num_workers: int | None = None
):
    """Images resized per item (the course's Resize(480, method)), augmented per batch to `size`.

    With `multi_target`, a second category (a train.csv column) is a second target.
    """
    blocks, getters = [CategoryBlock(vocab=list(data.classes))], [parent_label]
    if entry.multi_target:
        extra = extra_labels(data, entry.multi_target)
        blocks.append(CategoryBlock(vocab=sorted(set(extra.values()))))
        getters.append(lambda path: extra[path.name])
    block = DataBlock(
        blocks=(ImageBlock, *blocks),
        n_inp=1,
        get_items=lambda _: list(data.train_images),
        splitter=RandomSplitter(entry.valid_pct, seed=seed),
        get_y=getters if entry.multi_target else parent_label,
        item_tfms=Resize(entry.item_size, method=entry.item),
        batch_tfms=aug_transforms(size=entry.size, min_scale=0.75),
    )
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    return block.dataloaders(data.train_dir, bs=step_bs, **kwargs)


def build_learner(dls, entry: ModelEntry, cbs: list[Callback]) -> Learner:
    """vision_learner on the timm arch, with pretrained weights from the hub or a local file."""
    kwargs: dict[str, Any] = {}
    pretrained = entry.pretrained or entry.weights is not None
    if entry.weights is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(entry.weights)}
    if entry.multi_target:
        n_classes, n_extra = (len(vocab) for vocab in dls.train_ds.vocab)
        loss, metrics = two_targets(n_classes, entry.multi_target, entry.label_smoothing)
        kwargs["n_out"] = n_classes + n_extra
    else:
        loss, metrics = single_target(entry.label_smoothing)
    if entry.mixup:
        cbs = [*cbs, MixUp(entry.mixup)]
    try:
        return vision_learner(
            dls, entry.arch, pretrained=pretrained, loss_func=loss, metrics=metrics, cbs=cbs, **kwargs
        )
    except OSError as e:
        raise PaddyError(
            f"cannot get pretrained weights for {entry.arch} ({type(e).__name__}); "
            "offline? pass --weights FILE or --no-pretrained"
        ) from None
    except RuntimeError as e:
        if entry.weights is None:
            raise
        first_line = str(e).strip().splitlines()[0]
        raise PaddyError(f"weights file {entry.weights} does not fit {entry.arch}: {first_line}") from None


class HistoryWriter(Callback):
    """Rewrite history.csv after every epoch (fine_tune's frozen and unfrozen fits together),
    so an interrupted run still shows how far it got."""

    order = 60  # after fastai's Recorder (50), which fills `recorder.log`

    def __init__(self, path: Path):
        self.path, self.rows, self.fit_number = path, [], 0
        self.new_fit = self.trained_this_epoch = False

    def before_fit(self) -> None:
        self.new_fit = True  # get_preds and tta fire fit events too: count a fit once it trains

    def before_train(self) -> None:
        if self.new_fit:
            self.fit_number += 1
        self.new_fit, self.trained_this_epoch = False, True

    def after_epoch(self) -> None:
        if not self.trained_this_epoch:
            return
        self.trained_this_epoch = False
        row = dict(zip(self.recorder.metric_names, self.recorder.log))
        self.rows.append({"fit": self.fit_number, **row})
        atomic_write_text(self.path, pd.DataFrame(self.rows).to_csv(index=False))


def save_run_plots(learn: Learner, run_dir: Path, classes: tuple[str, ...]) -> None:
    """Loss curves and the validation confusion matrix of the label, beside the history."""
    save_loss_plot(pd.read_csv(run_dir / HISTORY_FILE), run_dir / LOSS_PLOT)
    probs, targets = learn.get_preds(ds_idx=1)
    actual = targets[0] if isinstance(targets, (list, tuple)) else targets
    save_confusion_matrix(actual.numpy(), probs.argmax(dim=1).numpy(), list(classes), run_dir / CONFUSION_PLOT)


def unique_run_name(out: Path, entry: ModelEntry) -> str:
    """A new run folder name: time stamp and model, never one that already exists."""
    name = f"{datetime.now():%Y%m%d-%H%M%S}-{entry.describe()}"
    suffix = 1
    while (out / name).exists():
        suffix += 1
        name = f"{datetime.now():%Y%m%d-%H%M%S}-{entry.describe()}-{suffix}"
    return name


def prepare_run_dir(run_dir: Path) -> Path:
    """An empty run folder (leftovers of an unfinished run are cleared); fails early if not writable."""
    try:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise PaddyError(f"cannot write to output folder {run_dir.parent}: {e.strerror}") from None
    return run_dir


def tta_predictions(learn: Learner, data: CompetitionData, meta: dict[str, Any]) -> Predictions:
    """Test-time-augmented probabilities for every test image, in the stable test order."""
    test_dl = learn.dls.test_dl(list(data.test_images))
    probs, _ = learn.tta(dl=test_dl)
    return Predictions(probs.float().numpy(), tuple(data.test_ids), tuple(data.classes), meta)


@dataclass(frozen=True)
class TrainingPlan:
    """Everything decided about a run before anything heavy happens."""

    entry: ModelEntry
    step_bs: int
    callbacks: list[Callback]
    precision: str
    seed: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.entry.to_json(),
            "seed_used": self.seed,
            "step_bs": self.step_bs,
            "precision_used": self.precision,
        }


def plan_training(entry: ModelEntry) -> TrainingPlan:
    """Check the entry and settle accumulation, precision and seed (drawn when unset)."""
    check_entry(entry)
    if not isinstance(entry.accum, int):
        raise PaddyError("accum 'auto' must be resolved from a memory probe before training")
    step_bs, callbacks = accumulation(entry.bs, entry.accum)
    seed = entry.seed if entry.seed is not None else random.SystemRandom().randrange(2**31)
    return TrainingPlan(entry, step_bs, callbacks, resolve_precision(entry.precision), seed)


def make_learner(
    plan: TrainingPlan, data: CompetitionData, extra_callbacks: list[Callback], num_workers: int | None = None
) -> Learner:
    """Seeded data loaders and learner for the plan, in mixed precision where planned."""
    set_seed(plan.seed)
    dls = build_dataloaders(data, plan.entry, plan.seed, plan.step_bs, num_workers)
    learn = build_learner(dls, plan.entry, [*plan.callbacks, *extra_callbacks])
    return learn.to_fp16() if plan.precision == "fp16" else learn


def train(
    entry: ModelEntry, data: CompetitionData, out: Path, num_workers: int | None = None, run_name: str | None = None
) -> RunResult:
    """Train `entry` on `data`, predict the test set with TTA, and save it all in a run folder.

    The folder is `out/run_name` (default: a new time-stamped name); the predictions file is
    written last, so its presence marks the run finished.
    """
    plan = plan_training(entry)
    run_dir = prepare_run_dir(out / (run_name or unique_run_name(out, entry)))
    write_json(run_dir / CONFIG_FILE, {**plan.to_json(), "data": str(data.root)})
    started = time.monotonic()
    learn = make_learner(plan, data, [HistoryWriter(run_dir / HISTORY_FILE)], num_workers)
    if entry.finetune:
        learn.fine_tune(entry.epochs, entry.lr)
    else:
        learn.fit_one_cycle(entry.epochs, entry.lr)
    valid_error = float(learn.recorder.values[-1][2])  # train_loss, valid_loss, then the label's error
    meta = {
        **entry.to_json(),
        "seed": plan.seed,
        "valid_error": valid_error,
        "run": run_dir.name,
        "data": str(data.root),
        "versions": library_versions(),
    }
    save_run_plots(learn, run_dir, data.classes)
    preds = tta_predictions(learn, data, meta)
    seconds = time.monotonic() - started
    write_json(run_dir / RESULT_FILE, {"valid_error": valid_error, "seconds": seconds, "seed": plan.seed})
    save_predictions(preds, run_dir / PREDICTIONS_FILE)
    history = pd.read_csv(run_dir / HISTORY_FILE)
    return RunResult(run_dir, entry, plan.seed, valid_error, seconds, history)
