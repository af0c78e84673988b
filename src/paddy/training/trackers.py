"""Experiment trackers (`trackers`): TensorBoard, Weights & Biases, MLflow and a CSV file of the steps,
each offline by default and none required. One callback feeds them all: the run's settings, every
trained epoch's history row, the loss and learning rates of every training batch (a step; with accum,
a micro-batch), and the final scores.

One tracker run per run folder (its ids in trackers.json: a resumed run goes on in it, at the same step);
an entry's fold runs share a group (W&B's group, an MLflow tag). Steps and epochs count over the whole
run (fine_tune's fits, every size), epochs from 0 as history.csv's rows are."""

from __future__ import annotations

import importlib.util
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from fastai.vision.all import Callback, Learner

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_text, read_csv, read_json, write_json
from paddy.core.ranks import is_main_process
from paddy.settings.entry import ModelEntry, Tracker
from paddy.training.best_epoch import best_epoch_of, kept_epoch
from paddy.training.callbacks import callback_of
from paddy.training.checkpoint import EpochRecords, HistoryWriter
from paddy.training.schedule import training_phases

IDS_FILE = "trackers.json"  # each tracker's run id, so a resumed run logs to the same tracker run


STEPS_FILE = "steps.csv"  # the csv tracker: loss and learning rates per training batch


TENSORBOARD_FOLDER = "tensorboard"


MLFLOW_STORE = "mlflow.db"  # MLflow's local store, beside the run folders it tracks
MLFLOW_BATCH = 1000  # the most metrics MLflow takes in one log_batch


PROJECT = "paddy"  # the W&B project and MLflow experiment (WANDB_PROJECT, MLFLOW_EXPERIMENT_NAME override)


# The package each tracker needs, which is also the name of paddy's extra that installs it.
PACKAGES = {Tracker.tensorboard: "tensorboard", Tracker.wandb: "wandb", Tracker.mlflow: "mlflow", Tracker.csv: None}


def check_installed(trackers: tuple[Tracker, ...]) -> None:
    """Refuse, before any training, a tracker whose package is missing, naming the extra that installs it."""
    for tracker in trackers:
        package = PACKAGES[tracker]
        if package and importlib.util.find_spec(package) is None:
            raise PaddyError(f"tracker {tracker} needs {package}: pip install 'paddy-trainer[{package}]'")


def group_of(entry: ModelEntry) -> str:
    """The name fold runs of one entry share: the entry without its fold."""
    return re.sub(r"-fold\d+of\d+$", "", entry.describe())


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """A history row's losses and metrics (not its time, size or fit-local epoch)."""
    return {k: float(v) for k, v in row.items() if k not in ("epoch", "size", "time") and isinstance(v, (int, float))}


class TrackerLog:
    """One tracker's run: where a run's settings, epochs, steps and final scores go."""

    def log_step(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def finish(self, final: dict[str, float], step: int) -> None:
        raise NotImplementedError


class TensorBoardLog(TrackerLog):
    """Event files in `<run>/tensorboard`: `step/*` scalars per training batch, `epoch/*` per epoch,
    `final/*` once, the settings as text. A resumed run's steps go on from its last finished epoch."""

    def __init__(self, run: Path, settings: dict[str, Any], resumed: bool):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run / TENSORBOARD_FOLDER))
        if not resumed:
            table = "\n".join(f"| {k} | {v} |" for k, v in settings.items())
            self.writer.add_text("settings", f"| setting | value |\n| --- | --- |\n{table}", 0)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"step/{name}", value, step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"epoch/{name}", value, epoch)
        self.writer.flush()

    def finish(self, final: dict[str, float], step: int) -> None:
        for name, value in final.items():
            self.writer.add_scalar(f"final/{name}", value, 0)
        self.writer.close()


class WandbLog(TrackerLog):
    """A W&B run in `<run>/wandb`, offline unless WANDB_MODE says otherwise (`wandb sync` uploads it);
    per-epoch values are plotted against `epoch`, the final scores are the run's summary."""

    def __init__(self, run: Path, settings: dict[str, Any], run_id: str, group: str):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", PROJECT),
            dir=str(run),
            id=run_id,
            name=run.name,
            group=group,
            config=settings,
            mode=os.environ.get("WANDB_MODE", "offline"),
            resume="allow",
            reinit="finish_previous",  # a run a Ctrl-C or an error left open (paddy run goes on with the next)
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        self.run.define_metric("epoch")
        self.run.define_metric("epoch/*", step_metric="epoch")

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.run.log({f"step/{k}": v for k, v in values.items()}, step=step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.run.log({"epoch": epoch, **{f"epoch/{k}": v for k, v in values.items()}}, step=step)

    def finish(self, final: dict[str, float], step: int) -> None:
        self.run.summary.update({f"final/{k}": v for k, v in final.items()})
        self.run.finish()


class MlflowLog(TrackerLog):
    """An MLflow run in the local store `<out>/mlflow.db` (SQLite: MLflow refuses its old file store by
    default), or MLFLOW_TRACKING_URI; tagged with the entry's group and the run folder. The settings are
    its parameters; step values are sent once an epoch, in batches."""

    def __init__(self, run: Path, settings: dict[str, Any], run_id: str | None, group: str):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(
            os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run.parent.resolve() / MLFLOW_STORE}"
        )
        if run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            tags = {"paddy.group": group, "paddy.run_folder": str(run.resolve())}
            run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
            self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in settings.items()])
        self.run_id, self.pending = run_id, []

    def add(self, prefix: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.pending += [Metric(f"{prefix}/{k}", v, stamp, step) for k, v in values.items()]

    def send(self) -> None:
        for start in range(0, len(self.pending), MLFLOW_BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start : start + MLFLOW_BATCH])
        self.pending = []

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.add("step", values, step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.add("epoch", values, epoch)
        self.send()

    def finish(self, final: dict[str, float], step: int) -> None:
        self.add("final", final, 0)
        self.send()
        self.client.set_terminated(self.run_id, "FINISHED")


class CsvLog(TrackerLog):
    """`<run>/steps.csv`: the loss and learning rates of every training batch, rewritten (atomically)
    after every epoch. Epochs, settings and scores are already history.csv, config.json and result.json."""

    def __init__(self, run: Path, first_step: int):
        self.path = run / STEPS_FILE
        kept = read_csv(self.path) if self.path.is_file() else pd.DataFrame()
        self.rows = kept[kept["step"] < first_step].to_dict("records") if len(kept) else []

    def log_step(self, step: int, values: dict[str, float]) -> None:
        self.rows.append({"step": step, **values})

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.write()

    def finish(self, final: dict[str, float], step: int) -> None:
        self.write()

    def write(self) -> None:
        atomic_write_text(self.path, pd.DataFrame(self.rows).to_csv(index=False))


def open_logs(trackers: tuple[Tracker, ...], records: EpochRecords, group: str, first_step: int) -> list[TrackerLog]:
    """Each tracker's run for this run folder: the one it started (ids in trackers.json), or a new one."""
    run = records.history_path.parent
    ids_path = run / IDS_FILE
    ids = read_json(ids_path) if ids_path.is_file() else {}
    resumed = bool(records.rows)
    logs: list[TrackerLog] = []
    for tracker in trackers:
        if tracker == Tracker.tensorboard:
            logs.append(TensorBoardLog(run, records.settings, resumed))
        elif tracker == Tracker.wandb:
            ids.setdefault("wandb", uuid.uuid4().hex[:16])
            logs.append(WandbLog(run, records.settings, ids["wandb"], group))
        elif tracker == Tracker.mlflow:
            log = MlflowLog(run, records.settings, ids.get("mlflow"), group)
            ids["mlflow"] = log.run_id
            logs.append(log)
        else:
            logs.append(CsvLog(run, first_step))
    if ids:
        write_json(ids_path, ids)
    return logs


class Tracking(Callback):
    """Record a run's training batches (for its loss picture) and feed the trackers: each trained epoch's
    history row (after HistoryWriter has added it) with its steps' smoothed losses and learning rates, and
    the kept epoch's scores at the end. Only a run that records its epochs is tracked (not lr_find or a
    memory probe), and only by the main process of a data-parallel run. A resumed run records the steps
    from where it went on."""

    order = HistoryWriter.order + 1

    def __init__(self, entry: ModelEntry):
        self.trackers, self.group = entry.trackers, group_of(entry)
        self.total_epochs = sum(phase.epochs for phase in training_phases(entry))
        self.records: EpochRecords | None = None
        self.logs: list[TrackerLog] = []
        self.logged = 0  # history rows the trackers have
        self.steps: list[dict[str, float]] = []  # step, epoch (its index plus the share done), loss, lr_0, ...
        self.pending: list[tuple] = []  # this epoch's steps, sent when it ends (a cut epoch is trained again)

    def before_fit(self) -> None:
        if self.records is not None or not is_main_process():
            return
        self.records = writer.records if (writer := callback_of(self.learn, HistoryWriter)) else None
        if self.records is not None:
            self.logs = open_logs(self.trackers, self.records, self.group, self.step_of(0))
            self.logged = len(self.records.rows)

    def step_of(self, batch: int) -> int:
        """The global step: every epoch trains len(dls.train) steps, whatever the size."""
        return len(self.records.rows) * len(self.dls.train) + batch

    def after_batch(self) -> None:
        if self.records is None or not self.training:
            return
        lrs = {f"lr_{i}": float(hypers["lr"]) for i, hypers in enumerate(self.opt.hypers)}
        where = (self.step_of(self.iter), len(self.records.rows) + self.iter / self.n_iter)
        self.pending.append((*where, self.smooth_loss.detach(), lrs))  # a tensor: no GPU sync every batch

    def after_epoch(self) -> None:
        """The epoch's steps (their losses read from the GPU at once) and its history row, to every tracker."""
        pending, self.pending = self.pending, []
        if self.records is None or len(self.records.rows) == self.logged:
            return  # not a run, or an epoch a resumed fit skipped
        self.logged = len(self.records.rows)
        losses = torch.stack([loss for *_, loss, _ in pending]).tolist() if pending else []
        for (step, epoch, _, lrs), loss in zip(pending, losses):
            values = {"train_loss": loss, **lrs}
            self.steps.append({"step": step, "epoch": epoch, **values})
            for log in self.logs:
                log.log_step(step, values)
        for log in self.logs:
            log.log_epoch(self.logged - 1, self.step_of(0), numbers(self.records.rows[-1]))

    def after_fit(self) -> None:
        tracker = best_epoch_of(self.learn)  # the final scores are the kept epoch's, once training has ended
        if self.logs and tracker is not None and (len(self.records.rows) >= self.total_epochs or tracker.stopped):
            final = numbers(self.records.rows[kept_epoch(tracker).epoch])
            for log in self.logs:
                log.finish({k: v for k, v in final.items() if k != "fit"}, self.step_of(0))
            self.logs = []


def recorded_steps(learn: Learner) -> pd.DataFrame:
    """The training batches this process trained (empty for a learner without Tracking)."""
    tracking = callback_of(learn, Tracking)
    return pd.DataFrame(tracking.steps if tracking else [])
