"""The training schedule as fits that can start again at an epoch: fit_one_cycle, or fastai's
fine_tune written out as its two fits, one fit per size with progressive resizing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from fastai.vision.all import Learner

from paddy.settings.entry import ModelEntry
from paddy.training.best_epoch import best_epoch_of
from paddy.training.checkpoint import Checkpoint, EpochRecords, Position, RestoreCheckpoint, Size, restore_weights

# fastai's fine_tune: one frozen epoch at lr, then the unfrozen epochs at lr / 2 with
# discriminative rates (lr_mult 100), pct_start 0.3 and div 5.
FREEZE_EPOCHS, LR_MULT = 1, 100


@dataclass(frozen=True)
class Phase:
    """One fit_one_cycle of a schedule: body frozen or not, epochs, learning rate, the image size it
    trains at, other options."""

    frozen: bool
    epochs: int
    lr: float | slice
    size: Size
    options: dict[str, float] = field(default_factory=dict)


def training_phases(entry: ModelEntry) -> list[Phase]:
    """fit_one_cycle of every layer, or fastai's `fine_tune` written out as its two fits; with
    progressive resizing, the (unfrozen) epochs are one such fit per size, as the course does.

    fine_tune itself cannot start at an epoch; these are its exact calls, so each fit can
    (fit_one_cycle's `start_epoch`, which keeps the schedule where it was)."""
    stages = entry.stages()
    if not entry.finetune:
        return [Phase(False, epochs, entry.lr, size) for size, epochs in stages]
    half = entry.lr / 2
    unfrozen = {"pct_start": 0.3, "div": 5.0}
    return [
        Phase(True, FREEZE_EPOCHS, slice(entry.lr), stages[0][0], {"pct_start": 0.99}),
        *(Phase(False, epochs, slice(half / LR_MULT, half), size, unfrozen) for size, epochs in stages),
    ]


def epoch_sizes(phases: list[Phase]) -> list[Size]:
    """The size each epoch of the schedule trains at, in order."""
    return [phase.size for phase in phases for _ in range(phase.epochs)]


def resume_position(checkpoint: Checkpoint | None, phases: list[Phase]) -> Position:
    """The phase and epoch to start at: the beginning, or just after the checkpoint."""
    if checkpoint is None:
        return Position(1, 0)
    position = checkpoint.position
    if position.epochs_done >= phases[position.phase - 1].epochs:
        return Position(position.phase + 1, 0)  # the checkpoint ended a phase: go on with the next
    return position


def fit_phases(
    learn: Learner,
    phases: list[Phase],
    records: EpochRecords,
    start: Checkpoint | None = None,
    loaders_at: Callable[[Size], Any] | None = None,
) -> None:
    """Run the phases, from the beginning or from `start`, recording every trained epoch, until early
    stopping (the learner's BestEpoch) ends the run. With `loaders_at` (progressive resizing), each phase
    trains on its loaders from it at its size."""
    first, tracker = resume_position(start, phases), best_epoch_of(learn)
    if start is not None and (first.phase > len(phases) or (tracker is not None and tracker.stopped)):
        restore_weights(learn, start.states)  # every epoch was done, or early stopping ended them: only TTA was left
        return
    size = None
    for index, phase in enumerate(phases, 1):
        if tracker is not None and tracker.stopped:
            return
        if index < first.phase:
            continue
        if loaders_at is not None and phase.size != size:
            learn.dls, size = loaders_at(phase.size), phase.size
        if phase.frozen:
            learn.freeze()
        else:
            learn.unfreeze()
        start_epoch = first.epochs_done if index == first.phase else 0
        callbacks = records.callbacks(index, phase.size)
        if start is not None and index == first.phase:
            callbacks.append(RestoreCheckpoint(start, mid_fit=start_epoch > 0))
        learn.fit_one_cycle(phase.epochs, phase.lr, start_epoch=start_epoch, cbs=callbacks, **phase.options)
