"""What a run records after every epoch (history.csv and a checkpoint), and the training
schedule that can start again from a checkpoint.

After every trained epoch, one file in the run folder (`checkpoint.pt`) holds the model and
optimizer state, the weight average (with `ema`), the best epoch so far (its value, epoch and weights),
the fp16 gradient scaler, every random state, where the schedule stands and the history so far. It is
written atomically (the previous one is replaced only once the new one is complete) and read with
`torch.load(weights_only=True)`: plain tensors, numbers and text, nothing that can execute code.
"""

from __future__ import annotations

import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from fastai.vision.all import Callback, L, Learner, Recorder

from paddy.core.errors import PaddyError
from paddy.core.files import FileNotWritten, atomic_write_text, atomic_write_with
from paddy.core.ranks import is_main_process
from paddy.data.training_set import training_set_change
from paddy.runs.folder import NOT_MATCHED, RunFolder, refuse_finished
from paddy.settings.legacy import TRAINING_SET_SINCE_0_3, Recorded, upgraded
from paddy.training.best_epoch import BestEpoch, best_epoch_of
from paddy.training.distributed import bare_loader, bare_model
from paddy.training.ema import weight_average_of
from paddy.training.not_saved import CheckpointNotSaved, checkpoint_not_saved, kept_before

EpochHook = Callable[[dict[str, Any]], None]


Size = tuple[int, int]


FORMAT = "paddy-checkpoint-1"


@dataclass(frozen=True)
class Position:
    """Where a schedule stands: the phase (1-based) and how many of its epochs are done."""

    phase: int
    epochs_done: int


def random_states(learn: Learner) -> dict[str, Any]:
    """Every random state the next epoch draws from: Python's, NumPy's, torch's (CPU and CUDA) and
    each data loader's own generator (fastai shuffles with it)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": [bare_loader(loader).rng.getstate() for loader in learn.dls.loaders],
    }


def restore_random_states(learn: Learner, states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for loader, state in zip(learn.dls.loaders, states["loaders"]):
        bare_loader(loader).rng.setstate(state)


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its run's settings, position, history rows and the saved states."""

    settings: dict[str, Any]
    position: Position
    history: list[dict[str, Any]]
    states: dict[str, Any]


def plain(value: Any) -> Any:
    """`value` with fastcore lists, NumPy numbers and arrays, and fastai's tensor subclasses made into
    lists, Python numbers and plain tensors (fastai's optimizer and recorder hold them, and
    `torch.load(weights_only=True)` refuses them)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, L):
        return [plain(v) for v in value]
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor) and type(value) is not torch.Tensor:
        return value.as_subclass(torch.Tensor)  # fastai's TensorBase
    return value.item() if isinstance(value, np.generic) else value


def save_checkpoint(path: Path, learn: Learner, settings: dict[str, Any], position: Position, history: list) -> None:
    """Everything needed to go on after `position`, in one atomically written file."""
    scaler = getattr(learn, "scaler", None)
    state = {
        "format": FORMAT,
        "settings": json.dumps(settings, sort_keys=True, default=str),
        "position": [position.phase, position.epochs_done],
        "history": json.dumps(history, default=str),
        "model": bare_model(learn.model).state_dict(),
        "opt": plain(learn.opt.state_dict()),
        "ema": average.state() if (average := weight_average_of(learn)) else None,
        "best": tracker.state() if (tracker := best_epoch_of(learn)) else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "random": random_states(learn),
        "smooth_loss": plain([learn.recorder.smooth_loss.count, learn.recorder.smooth_loss.val]),
    }
    try:
        atomic_write_with(path, lambda f: torch.save(state, f))
    except (FileNotWritten, RuntimeError) as e:  # torch.save's writer turns ENOSPC into a RuntimeError
        raise checkpoint_not_saved(path, state, e) from None


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint written by `save_checkpoint`; a truncated or foreign file is one PaddyError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')!r}")
        phase, epochs_done = state["position"]
        return Checkpoint(
            json.loads(state["settings"]), Position(phase, epochs_done), json.loads(state["history"]), state
        )
    except (
        OSError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        EOFError,
        pickle.UnpicklingError,
    ) as e:
        raise PaddyError(
            f"checkpoint {path} is damaged or not paddy's ({type(e).__name__}); train the run again from the start"
        ) from None


def resumable_checkpoint(run: RunFolder, settings: dict[str, Any]) -> Checkpoint | None:
    """The checkpoint of an unfinished run trained with exactly these settings, or why it cannot go on.

    None for a run stopped inside its first epoch: it starts again, with the same seed, so it
    still ends as it would have."""
    refuse_finished(run)
    if not run.checkpoint_path.is_file():
        return None
    checkpoint = load_checkpoint(run.checkpoint_path)
    recorded = upgraded(Recorded.settings, checkpoint.settings)
    if change := training_set_change(recorded, settings):
        raise PaddyError(f"{run.path} cannot go on: {change}; restore the images it trained on, or train it anew")
    # the seed actually used is seed_used; what NOT_MATCHED holds does not change what the run learns
    keys = (settings.keys() | checkpoint.settings.keys()) - {"seed", *NOT_MATCHED, *TRAINING_SET_SINCE_0_3}
    changed = sorted(k for k in keys if settings.get(k) != recorded.get(k))
    if changed:
        raise PaddyError(
            f"{run.path} was trained with other settings ({', '.join(changed)}); resume it with its own, "
            "or train it again from the start"
        )
    return checkpoint


@dataclass(frozen=True)
class EpochRecords:
    """Where a run records each epoch: its history rows (shared, so a checkpoint carries them),
    history.csv, the checkpoint with the run's settings, and who else hears each row."""

    history_path: Path
    checkpoint_path: Path
    settings: dict[str, Any]
    rows: list[dict[str, Any]]
    on_epoch: EpochHook = lambda row: None

    def callbacks(self, phase: int, size: Size) -> list[Callback]:
        return [HistoryWriter(self, phase, size), Checkpointer(self, phase)]

    def valid_error(self, metric: str, epoch: int = -1) -> float:
        """The label's validation value of `metric` at `epoch` (a history row; the last by default)."""
        return float(self.rows[epoch][metric])


class TrainedEpochs(Callback):
    """Act after epochs that trained: resuming skips epochs, and fastai fires after_epoch for them too.
    Of data-parallel processes only the main one acts (they all hold the same weights and history)."""

    def __init__(self, records: EpochRecords, phase: int):
        self.records, self.phase, self.trained = records, phase, False

    def before_train(self) -> None:
        self.trained = True

    def after_epoch(self) -> None:
        if self.trained and is_main_process():
            self.after_trained_epoch()
        self.trained = False

    def after_trained_epoch(self) -> None:
        raise NotImplementedError


class HistoryWriter(TrainedEpochs):
    """Rewrite history.csv after every epoch (fine_tune's two fits together), so an interrupted run
    still shows how far it got, and hand each row to `on_epoch`. Each row names its fit and the
    image size it trained at (which changes with progressive resizing)."""

    # fastai 2.8's Learner sorts callbacks by `order` alone (it reads no run_after/run_before), so paddy's
    # orders are written from the fastai callbacks they must follow, as fastai's own are (MixedPrecision.order-4)
    order = Recorder.order + 10  # after fastai's Recorder, which fills `recorder.log`

    def __init__(self, records: EpochRecords, phase: int, size: Size):
        super().__init__(records, phase)
        self.size = "x".join(map(str, size))

    def after_trained_epoch(self) -> None:
        row = {"fit": self.phase, "size": self.size, **dict(zip(self.recorder.metric_names, self.recorder.log))}
        self.records.rows.append(row)
        try:
            atomic_write_text(self.records.history_path, pd.DataFrame(self.records.rows).to_csv(index=False))
        except FileNotWritten as e:  # the epoch is lost with its history row: go on from the previous checkpoint
            checkpoint = self.records.checkpoint_path
            raise CheckpointNotSaved(
                f"cannot write {e.path} ({e.reason}); {kept_before(checkpoint)}", checkpoint.parent
            ) from None
        self.records.on_epoch(row)


class Checkpointer(TrainedEpochs):
    """Save a checkpoint after every trained epoch (after its history row)."""

    order = HistoryWriter.order + 5  # after its epoch's history row

    def after_trained_epoch(self) -> None:
        records = self.records
        position = Position(self.phase, self.epoch + 1)
        save_checkpoint(records.checkpoint_path, self.learn, records.settings, position, records.rows)


class RestoreCheckpoint(Callback):
    """At the start of the first resumed fit: the saved model and random states, and when the fit
    resumes mid-way the optimizer state, the gradient scaler and the smoothed training loss. A fit
    that resumes from its start has none of those to restore: fastai starts each fit with a fresh
    scaler and loss, and fine_tune's unfreeze clears the optimizer state."""

    order = Recorder.order + 1  # after MixedPrecision made this fit's scaler and the Recorder reset its loss

    def __init__(self, checkpoint: Checkpoint, mid_fit: bool):
        self.checkpoint, self.mid_fit = checkpoint, mid_fit

    def before_fit(self) -> None:
        states = self.checkpoint.states
        restore_weights(self.learn, states)
        restore_random_states(self.learn, states["random"])
        if not self.mid_fit:
            return
        opt = states["opt"]
        if "hypers" in opt:  # fastai's Optimizer wants its hyper-parameters as an L; torch's has param_groups
            opt = {**opt, "hypers": L(opt["hypers"])}
        self.learn.opt.load_state_dict(opt)
        if states["scaler"] is not None and getattr(self.learn, "scaler", None) is not None:
            self.learn.scaler.load_state_dict(states["scaler"])
        self.recorder.smooth_loss.count, self.recorder.smooth_loss.val = states["smooth_loss"]


def restore_best(tracker: BestEpoch, checkpoint: Checkpoint | None) -> BestEpoch:
    """The run's tracker with the checkpoint's best epoch so far (none without a checkpoint); its weights are
    the checkpoint's evaluated ones (the weight average's with `ema`) when it saved none apart."""
    if checkpoint is not None:
        states = checkpoint.states
        evaluated = states["ema"]["weights"] if states["ema"] is not None else states["model"]
        tracker.load_state(states.get("best"), evaluated, len(checkpoint.history))
    return tracker


def restore_weights(learn: Learner, states: dict[str, Any]) -> None:
    """The checkpoint's model and, for a run that averages its weights, its weight average."""
    bare_model(learn.model).load_state_dict(states["model"])
    if (average := weight_average_of(learn)) is not None:
        average.load_state(states["ema"])
