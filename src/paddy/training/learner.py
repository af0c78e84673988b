"""The fastai learner of a run: data loaders from a DataBlock, vision_learner on the timm arch with
pretrained weights from the hub or a local file, and the NaN guard.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from fastai.vision.all import (
    Callback,
    CategoryBlock,
    DataBlock,
    FuncSplitter,
    GradientAccumulation,
    Learner,
    MixUp,
    MultiCategoryBlock,
    ProgressCallback,
    RandomSplitter,
    RegressionBlock,
    TransformBlock,
    noop,
    set_seed,
    vision_learner,
)
from safetensors import SafetensorError
from torch import nn

from paddy.core.errors import PaddyError
from paddy.data.competition import CompetitionData
from paddy.data.folds import Folds
from paddy.data.training_set import extra_labels
from paddy.settings.competition import TargetKind
from paddy.settings.entry import ModelEntry, Precision
from paddy.training.ema import WeightAverage
from paddy.training.interrupts import RaiseDroppedInterrupt
from paddy.training.optimizers import opt_func
from paddy.training.plan import TrainingPlan
from paddy.training.predicting import KeepValidation
from paddy.training.speed import speed_up
from paddy.training.targets import fastai_metric, kind_loss, two_targets, y_range_of
from paddy.training.trackers import Tracking, check_installed
from paddy.training.transforms import image_pipeline

WEIGHTS_FILE_ERRORS = (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError)


def target_block(data: CompetitionData) -> tuple[TransformBlock, Callable[[Path], Any]]:
    """The fastai block of the data's target kind and how an image's target is read (by file name)."""
    targets = data.target_of()
    if data.kind is TargetKind.multi:
        return MultiCategoryBlock(vocab=list(data.classes)), lambda path: list(targets[path.name])
    if data.kind in (TargetKind.regression, TargetKind.ordinal):
        return RegressionBlock(), lambda path: float(targets[path.name])
    return CategoryBlock(vocab=list(data.classes)), lambda path: targets[path.name]


def build_dataloaders(
    data: CompetitionData,
    entry: ModelEntry,
    seed: int,
    step_bs: int,
    num_workers: int | None = None,
    folds: Folds | None = None,
):
    """Images decoded and resized per item and augmented per batch to `size` (see `image_pipeline`), with
    the block of the data's target kind.

    With `multi_target`, a second category (a train.csv column) is a second target. With `folds`,
    the entry's fold is the validation set instead of a random `valid_pct`.
    """
    block, get_y = target_block(data)
    blocks, getters = [block], [get_y]
    if entry.multi_target:
        extra = extra_labels(data, entry.multi_target)
        blocks.append(CategoryBlock(vocab=sorted(set(extra.values()))))
        getters.append(lambda path: extra[path.name])
    images, item_tfms, batch_tfms = image_pipeline(
        str(entry.decode), str(entry.item), entry.size, entry.resize_to, entry.augmentation()
    )
    block = DataBlock(
        blocks=(images, *blocks),
        n_inp=1,
        get_items=lambda _: list(data.train_images),
        splitter=held_out_splitter(entry, seed, folds),
        get_y=getters if entry.multi_target else get_y,
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


def build_learner(dls, entry: ModelEntry, cbs: list[Callback], data: CompetitionData) -> Learner:
    """vision_learner on the timm arch, with pretrained weights from the hub or a local file, the loss of the
    data's target kind and its competition metric as the first epoch metric (a number head in `y_range`).

    The sample submission's value column names the label's error metric of a two-target model."""
    kwargs: dict[str, Any] = {}
    pretrained = entry.pretrained or entry.pretrained_file is not None
    state = read_pretrained_file(entry.pretrained_file) if entry.pretrained_file else None
    if entry.pretrained_file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(entry.pretrained_file)}
    if entry.multi_target:
        n_classes, n_extra = (len(vocab) for vocab in dls.train_ds.vocab)
        loss, metrics = two_targets(n_classes, data.label_column, entry.multi_target, entry.label_smoothing)
        kwargs["n_out"] = n_classes + n_extra
    else:
        loss, metrics = kind_loss(data.kind, entry.label_smoothing), [fastai_metric(data.metric, data.kind)]
        if y_range := y_range_of(data.kind, data.target_of().values()):
            kwargs["y_range"] = y_range
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
    """Stop at the first NaN or infinite training loss: the rest of the run could only be garbage.

    The check stays on the device: turning `isfinite` into a Python bool every batch would make the host
    wait for the GPU each time. The first bad batch is noted on the device and looked at every
    CHECK_EVERY batches and when the epoch's training ends, before it is validated, recorded or
    checkpointed: nothing trained after a NaN is ever saved."""

    order = GradientAccumulation.order - 1  # before accumulation scales the loss and the Recorder smooths it
    CHECK_EVERY = 50

    def before_epoch(self) -> None:
        self.first_bad: torch.Tensor | None = None  # the batch index of the first bad loss (-1: none yet)
        self.bad_loss: torch.Tensor | None = None

    def after_loss(self) -> None:
        if not self.training:
            return
        loss = self.learn.loss.detach().float()
        if self.first_bad is None:
            self.first_bad, self.bad_loss = loss.new_full((), -1.0), loss.new_zeros(())
        first = (self.first_bad < 0) & ~torch.isfinite(loss).all()
        self.first_bad = torch.where(first, self.first_bad.new_full((), float(self.iter)), self.first_bad)
        self.bad_loss = torch.where(first, loss.reshape(-1)[0], self.bad_loss)
        if (self.iter + 1) % self.CHECK_EVERY == 0:
            self.refuse_if_bad()

    def after_train(self) -> None:
        self.refuse_if_bad()

    def refuse_if_bad(self) -> None:
        """The one host sync: raise if a bad loss was noted."""
        if self.first_bad is None or int(self.first_bad) < 0:
            return
        where = f"epoch {self.epoch + 1}, batch {int(self.first_bad) + 1}"
        raise PaddyError(
            f"the training loss became {float(self.bad_loss)} at {where}; "
            "nothing was saved as finished (try a lower --lr or --precision fp32)"
        )


def make_learner(
    plan: TrainingPlan,
    data: CompetitionData,
    extra_callbacks: list[Callback],
    num_workers: int | None = None,
    bars: bool = True,
    folds: Folds | None = None,
) -> Learner:
    """Seeded data loaders and learner for the plan, in mixed precision where planned, channels_last
    and compiled where the entry says.

    fit_one_cycle trains every layer, as the course's `learn.unfreeze()` before it; fastai
    freezes a pretrained body, and fine_tune freezes and unfreezes it itself. Without `bars`
    fastai prints nothing (no bars, no epoch table): the caller reports progress itself."""
    check_installed(plan.entry.trackers)
    set_seed(plan.seed)
    dls = build_dataloaders(data, plan.entry, plan.seed, plan.step_bs, num_workers, folds)
    averaging = [WeightAverage(plan.entry.ema)] if plan.entry.ema else []
    callbacks = [
        RefuseNonFiniteLoss(),
        *plan.callbacks,
        *averaging,
        Tracking(plan.entry),
        KeepValidation(),
        *extra_callbacks,
    ]
    learn = build_learner(dls, plan.entry, callbacks, data)
    if not plan.entry.finetune:
        learn.unfreeze()
    if not bars:
        learn.remove_cb(ProgressCallback)
        learn.logger = noop
    speed_up(learn, plan.entry.channels_last, plan.entry.compile)
    return learn.to_fp16() if plan.precision == Precision.fp16 else learn
