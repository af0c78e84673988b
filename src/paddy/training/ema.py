"""An exponential moving average of the weights (`ema`): timm's ModelEmaV3 with its warm-up, as a
fastai callback.

The average is updated after every real optimizer step (not after the micro-batches gradient
accumulation cancels, nor the steps fp16's gradient scaler skips), is what each epoch validates,
and once training ends replaces the training weights for the confusion matrix, TTA and the saved
model. A checkpoint carries it, so
a resumed run averages on as if it had never stopped.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from fastai.vision.all import Callback, Learner, MixedPrecision
from timm.utils import ModelEmaV3
from torch import nn

from paddy.training.callbacks import callback_of
from paddy.training.distributed import bare_model


def swap_weights(model: nn.Module, other: nn.Module) -> None:
    """Exchange the parameters' and buffers' storage of two copies of one model, without copying:
    the optimizer keeps its parameters (and their state), which now hold the other values."""
    tensors = zip(chain(model.parameters(), model.buffers()), chain(other.parameters(), other.buffers()))
    with torch.no_grad():
        for mine, theirs in tensors:
            mine.data, theirs.data = theirs.data, mine.data


class WeightAverage(Callback):
    """The run's weight average: made when training starts, updated per real step, validated."""

    # before_fit: after fastai put the model on its device (TrainEvalCallback) and DDP wrapped it (fastai's
    # DistributedTrainer, MixedPrecision.order + 1), before a checkpoint restores it (Recorder.order + 1)
    order = MixedPrecision.order + 10

    def __init__(self, decay: float):
        self.decay, self.steps, self.average = decay, 0, None
        self.step_cancelled = False

    def ensure_average(self) -> ModelEmaV3:
        """The average, started from the model's present weights if training has not made it yet."""
        if self.average is None:
            self.average = ModelEmaV3(bare_model(self.learn.model), decay=self.decay, use_warmup=True)
        return self.average

    def before_fit(self) -> None:
        self.ensure_average()

    def before_batch(self) -> None:
        self.step_cancelled = False

    def after_cancel_step(self) -> None:
        self.step_cancelled = True  # fp16's scaler skipped it (overflow); fastai still calls after_step

    def after_step(self) -> None:
        if self.step_cancelled:
            return
        self.steps += 1
        self.ensure_average().update(bare_model(self.learn.model), step=self.steps)

    def before_validate(self) -> None:
        if self.average is not None:
            swap_weights(bare_model(self.learn.model), self.average.module)

    def after_validate(self) -> None:
        if self.average is not None:
            swap_weights(bare_model(self.learn.model), self.average.module)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps: the averaged weights and how many steps they have seen."""
        return {"weights": self.ensure_average().module.state_dict(), "steps": self.steps}

    def load_state(self, state: dict[str, Any]) -> None:
        self.ensure_average().module.load_state_dict(state["weights"])
        self.steps = state["steps"]


def weight_average_of(learn: Learner) -> WeightAverage | None:
    """The learner's WeightAverage callback, if the run averages its weights."""
    return callback_of(learn, WeightAverage)


def adopt_average(learn: Learner) -> None:
    """End averaging: the model takes the averaged weights, for everything after training."""
    if (callback := weight_average_of(learn)) is None:
        return
    learn.model.load_state_dict(callback.ensure_average().module.state_dict())
    learn.remove_cb(callback)
