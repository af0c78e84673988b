"""The run's best epoch on the competition's metric, and early stopping: which epoch's weights the run
keeps (`keep`), and when it stops (`patience`).

fastai's SaveModelCallback and EarlyStoppingCallback do this for one fit; a paddy run is several
(fine_tune's two, one per size with progressive resizing) and may resume mid-way, so this is one
TrackerCallback (their base, with its comparison) for the whole run: the best is carried across fits
(`reset_on_fit=False`) and through the checkpoint, and epochs are counted across fits as history.csv
rows are, where fastai counts them per fit (EarlyStoppingCallback's wait starts again every fit, and its
CancelFitException would end one fit and let the next start). The kept weights stay in memory instead
of SaveModelCallback's pickled file, and are those the epoch validated: the weight average's with `ema`.

With progressive resizing only the epochs at the last size (the one the model validates and predicts at)
are compared, and patience counts from the first of them: a score at a smaller size measures other inputs,
and a model kept there would predict at a size it never validated at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fastai.callback.tracker import TrackerCallback
from fastai.vision.all import CancelFitException, Learner, Recorder

from paddy.settings.competition import greater_is_better
from paddy.settings.entry import Keep, ModelEntry
from paddy.training.callbacks import callback_of
from paddy.training.distributed import bare_model
from paddy.training.ema import weight_average_of

Weights = dict[str, torch.Tensor]


def evaluated_weights(learn: Learner) -> Weights:
    """A copy (on the CPU) of the weights each epoch validates: the weight average's with `ema`."""
    average = weight_average_of(learn)
    model = average.ensure_average().module if average is not None else bare_model(learn.model)
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


@dataclass(frozen=True)
class KeptEpoch:
    """Which epoch a run kept (its history.csv row, counted from 0 across fits), how many it trained, and
    whether early stopping ended it; what result.json says."""

    keep: Keep
    epoch: int
    epochs_run: int
    stopped_early: bool

    @property
    def before_last(self) -> bool:
        """Whether the kept epoch is an earlier one than the last trained."""
        return self.epoch != self.epochs_run - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "keep": str(self.keep),
            "kept_epoch": self.epoch,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
        }


class BestEpoch(TrackerCallback):
    """The best epoch so far on `metric` (higher or lower better, as the competition scores it), its
    weights when the run keeps the best, and whether `patience` epochs have passed without a better one.

    Of the epochs a fit trains: a resumed fit skips the epochs done before, and fastai ends those too."""

    # after fastai's Recorder (its values), and HistoryWriter (Recorder + 10) and the trackers (+ 11) that
    # record the epoch; before the Checkpointer (+ 15), so the checkpoint holds this epoch's best
    order = Recorder.order + 12

    def __init__(self, metric: str, greater: bool, keep: Keep, patience: int | None, compared_from: int, planned: int):
        super().__init__(monitor=metric, comp=np.greater if greater else np.less, reset_on_fit=False)
        self.keep, self.patience = keep, patience
        self.compared_from = compared_from  # the first epoch compared: the first at the last size
        self.planned = planned  # epochs the schedule trains unless early stopping ends it
        self.epochs = 0  # epochs the run has trained, across fits (and before a resume)
        self.best_at: int | None = None  # None: no epoch scored yet (or only NaN)
        self.weights: Weights | None = None  # the best epoch's, when the run keeps the best
        self.trained = False

    @property
    def since_best(self) -> int:
        """Epochs trained since the best one (all of them when none scored)."""
        return self.epochs - 1 - (self.best_at if self.best_at is not None else self.compared_from - 1)

    @property
    def stopped(self) -> bool:
        """Whether `patience` compared epochs have passed without a better one: no epoch trains after."""
        return self.patience is not None and self.epochs > self.compared_from and self.since_best >= self.patience

    def before_epoch(self) -> None:
        # the decision is taken when an epoch ends, after its history row and checkpoint are written
        # (an exception in after_epoch would skip them); the next epoch is where training stops
        if self.stopped:
            raise CancelFitException

    def before_train(self) -> None:
        self.trained = True

    def after_epoch(self) -> None:
        if not self.trained:
            return
        self.trained = False
        if self.epochs < self.compared_from:
            self.epochs += 1
            return
        super().after_epoch()
        if self.new_best:
            self.best_at = self.epochs
            if self.keep is Keep.best:
                self.weights = evaluated_weights(self.learn)
        self.epochs += 1

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the best value and epoch, and the kept weights unless they are the
        checkpoint's own evaluated weights (the best is its epoch: no second copy on disk)."""
        latest = self.best_at == self.epochs - 1
        return {"value": float(self.best), "epoch": self.best_at, "weights": None if latest else self.weights}

    def load_state(self, state: dict[str, Any] | None, evaluated: Weights, epochs: int) -> None:
        """The state a checkpoint saved after `epochs` epochs whose evaluated weights were `evaluated`
        (a checkpoint from before runs kept their best has none: the best is not known). A best at a smaller
        size, from a 0.3 development build that compared every size, is not one this run compares."""
        self.epochs = epochs
        if state is None or state["epoch"] is None or state["epoch"] < self.compared_from:
            return
        self.best, self.best_at = state["value"], state["epoch"]
        if self.keep is Keep.best:
            self.weights = state["weights"] if state["weights"] is not None else evaluated


def best_epoch_tracker(entry: ModelEntry, metric: str, epoch_sizes: list[tuple[int, int]]) -> BestEpoch:
    """The run's tracker of its epoch metric `metric` (the learner's first), for a schedule training its
    epochs at `epoch_sizes` (growing, ending at the entry's size)."""
    compared_from = epoch_sizes.index(entry.size)
    greater = greater_is_better(metric)
    return BestEpoch(metric, greater, entry.keep, entry.patience, compared_from, len(epoch_sizes))


def best_epoch_of(learn: Learner) -> BestEpoch | None:
    return callback_of(learn, BestEpoch)


def kept_epoch(tracker: BestEpoch) -> KeptEpoch:
    """The epoch the run keeps: the best, else (keep last, or no epoch scored) the last trained."""
    last = tracker.epochs - 1
    best = tracker.best_at if tracker.keep is Keep.best and tracker.best_at is not None else last
    return KeptEpoch(tracker.keep, best, tracker.epochs, tracker.stopped and tracker.epochs < tracker.planned)


def adopt_kept(learn: Learner, tracker: BestEpoch) -> KeptEpoch:
    """End training: the model takes the kept epoch's weights (after `adopt_average`, which made it the
    average: the weights the last epoch validated, so keeping the last changes nothing)."""
    kept = kept_epoch(tracker)
    if kept.before_last:
        bare_model(learn.model).load_state_dict(tracker.weights)
    learn.remove_cb(tracker)
    return kept
