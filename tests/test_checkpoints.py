"""Per-epoch checkpoints and resuming: a resumed run ends where the uninterrupted one does (same
weights, history and learning rates), for one-cycle and both phases of fine_tune, with accum and
multi-target; and what cannot be resumed is refused with one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import KAGGLE_GPU_MIB, tiny_entry, train_in_process, trained, with_callbacks
from fastai.vision.all import Callback
from typer.testing import CliRunner

import paddy.core.files
import paddy.training.run
from paddy.cli.app import app
from paddy.data.competition import check_layout
from paddy.data.demo import DEMO_CLASSES
from paddy.data.folds import FOLDS_FOLDER
from paddy.orchestration.config_runs import RunStatus, run_config
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import load_predictions
from paddy.settings.config_file import load_config
from paddy.settings.legacy import SETTINGS_SINCE_0_2, TRAINING_SET_SINCE_0_3
from paddy.training.checkpoint import FORMAT, load_checkpoint
from paddy.training.learner import make_learner
from paddy.training.plan import plan_training
from paddy.training.run import resume
from paddy.training.schedule import training_phases

LOSSES = ["fit", "epoch", "train_loss", "valid_loss"]


class LearningRates(Callback):
    """The learning rate of every training batch, by (fit, epoch, batch)."""

    order = 99

    def __init__(self, seen: dict):
        self.seen, self.fits = seen, 0

    def before_fit(self):
        self.fits += 1

    def before_batch(self):
        if self.training:
            self.seen[(self.fits, self.epoch, self.iter)] = float(self.opt.hypers[-1]["lr"])


class StopAt(Callback):
    """Ctrl-C at the start of epoch `epoch` of fit `fit` (counted from 1 and 0): an interrupted run."""

    def __init__(self, fit: int, epoch: int):
        self.at, self.fits = (fit, epoch), 0

    def before_fit(self):
        self.fits += 1

    def before_epoch(self):
        if (self.fits, self.epoch) == self.at:
            raise KeyboardInterrupt


def only_run(out):
    (run,) = [p for p in out.iterdir() if not p.name.startswith(".") and p.name != FOLDS_FOLDER]
    return RunFolder(run)


def final_weights(run: RunFolder) -> dict:
    return load_checkpoint(run.checkpoint_path).states["model"]


def interrupted_then_resumed(entry, data, tmp_path, monkeypatch, stop):
    """An uninterrupted run, and the same run stopped at `stop` then resumed; with learning rates."""
    full_lrs, resumed_lrs = {}, {}
    with_callbacks(monkeypatch, LearningRates(full_lrs))
    full = trained(entry, data, tmp_path / "full", num_workers=0, keep_checkpoint=True)
    with_callbacks(monkeypatch, StopAt(*stop))
    with pytest.raises(KeyboardInterrupt):
        trained(entry, data, tmp_path / "cut", num_workers=0, keep_checkpoint=True)
    cut = only_run(tmp_path / "cut")
    assert not cut.finished and cut.resumable == (stop != (1, 0)), "a checkpoint once an epoch has finished"
    with_callbacks(monkeypatch, LearningRates(resumed_lrs))
    resumed = resume(cut, KAGGLE_GPU_MIB, data, num_workers=0, keep_checkpoint=True)
    return full, resumed, full_lrs, resumed_lrs


def assert_same_run(full, resumed):
    for name, weight in final_weights(full.run).items():
        torch.testing.assert_close(final_weights(resumed.run)[name], weight, rtol=0, atol=1e-6)
    full_average = load_checkpoint(full.run.checkpoint_path).states["ema"]
    if full_average is not None:  # the weight average goes on as if the run had never stopped
        resumed_average = load_checkpoint(resumed.run.checkpoint_path).states["ema"]
        assert resumed_average["steps"] == full_average["steps"]
        for name, weight in full_average["weights"].items():
            torch.testing.assert_close(resumed_average["weights"][name], weight, rtol=0, atol=1e-6)
    pd.testing.assert_frame_equal(resumed.history[LOSSES], full.history[LOSSES])
    assert resumed.valid_error == full.valid_error


def test_one_cycle_resumed_mid_way_ends_exactly_as_the_uninterrupted_run(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=2, finetune=False)
    full, resumed, full_lrs, resumed_lrs = interrupted_then_resumed(entry, tiny_data, tmp_path, monkeypatch, (1, 1))
    assert_same_run(full, resumed)
    (first, *_) = sorted(resumed_lrs)
    assert first == (1, 1, 0), "the resumed run starts at the first batch of epoch 2"
    assert resumed_lrs[first] == full_lrs[first], "the one-cycle schedule goes on where it stopped"


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, stop",
    [
        # every case steps the default optimizer (torch's fused AdamW); fastai's Adam: the paddy 0.2 test below
        ({"finetune": True}, (1, 0)),  # inside the frozen epoch: no checkpoint yet, it starts again
        ({"finetune": True}, (2, 0)),  # after the frozen epoch, at the start of the unfrozen fit
        ({"finetune": True, "accum": 2}, (2, 1)),  # mid-way through the unfrozen fit, accumulating
        ({"finetune": False, "multi_target": "variety"}, (1, 1)),
        # progressive resizing (16 px for an epoch, then 32 px for two) with a weight average: stopped mid 32 px
        ({"finetune": False, "epochs": 3, "sizes": "16,32", "ema": 0.9, "accum": 2}, (2, 1)),
    ],
    ids=[
        "fine-tune-frozen",
        "fine-tune-between-phases",
        "fine-tune-unfrozen-accum-2",
        "multi-target",
        "progressive-resizing-ema",
    ],
)
def test_every_schedule_resumes_exactly(tiny_data, tmp_path, monkeypatch, settings, stop):
    entry = tiny_entry(**{"epochs": 2, **settings})
    full, resumed, full_lrs, resumed_lrs = interrupted_then_resumed(entry, tiny_data, tmp_path, monkeypatch, stop)
    assert_same_run(full, resumed)
    first = min(resumed_lrs)
    assert resumed_lrs[first] == full_lrs[(stop[0], *first[1:])]


@pytest.mark.slow
def test_a_fold_run_resumes_exactly_with_its_out_of_fold_predictions(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=2, finetune=False, folds=3, fold=2)
    full, resumed, _, _ = interrupted_then_resumed(entry, tiny_data, tmp_path, monkeypatch, (1, 1))
    assert_same_run(full, resumed)
    assert resumed.run.config()["folds_sha256"] == full.run.config()["folds_sha256"]
    oof_full, oof_resumed = (load_predictions(r.run.oof_path) for r in (full, resumed))
    assert oof_resumed.image_ids == oof_full.image_ids
    np.testing.assert_allclose(oof_resumed.probs, oof_full.probs, rtol=0, atol=1e-6)


def test_the_phases_are_fastais_fine_tune(tiny_data, tmp_path):
    """fine_tune written as two fits must train exactly as fastai's own fine_tune."""
    from paddy.training.checkpoint import EpochRecords
    from paddy.training.schedule import fit_phases

    def weights(fit) -> dict:
        learn = make_learner(plan_training(tiny_entry(epochs=2)), tiny_data, [], num_workers=0, bars=False)
        fit(learn)
        return {k: v.clone() for k, v in learn.model.state_dict().items()}

    records = EpochRecords(tmp_path / "history.csv", tmp_path / "checkpoint.pt", {}, [])
    ours = weights(lambda learn: fit_phases(learn, training_phases(tiny_entry(epochs=2)), records))
    fastais = weights(lambda learn: learn.fine_tune(2, tiny_entry().lr))
    for name, value in fastais.items():
        torch.testing.assert_close(ours[name], value, rtol=0, atol=0)


def test_a_finished_run_keeps_no_checkpoint_unless_asked(finished_run, tiny_data, tmp_path):
    assert not finished_run.run.checkpoint_path.exists()
    kept = trained(tiny_entry(finetune=False), tiny_data, tmp_path, num_workers=0, keep_checkpoint=True)
    checkpoint = load_checkpoint(kept.run.checkpoint_path)
    assert checkpoint.position.epochs_done == 1 and len(checkpoint.history) == 1
    assert checkpoint.settings["seed_used"] == kept.seed


def test_paddy_run_resumes_an_interrupted_entry_and_force_restarts_it(tiny_data, tmp_path, monkeypatch):
    path = tmp_path / "two.toml"
    path.write_text(
        "[defaults]\nbs = 8\nsize = 32\nepochs = 3\npretrained = false\nfinetune = false\nseed = 0\n"
        '[[models]]\narch = "test_resnet"\n'
    )
    config, out = load_config(path), tmp_path / "runs"
    with_callbacks(monkeypatch, StopAt(1, 2))
    with pytest.raises(KeyboardInterrupt):
        run_config(config, tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    with_callbacks(monkeypatch)
    (resumed,) = run_config(config, tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert resumed.status == RunStatus.resumed and list(resumed.run.history().epoch) == [0, 1, 2]
    (again,) = run_config(config, tiny_data, out, KAGGLE_GPU_MIB, force=True, train_fn=train_in_process)
    assert again.status == RunStatus.trained


def resume_command(run: RunFolder, *flags: str):
    return CliRunner().invoke(app, ["train", "--resume", run.name, "--out", str(run.path.parent), *flags])


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture
def interrupted(tiny_data, tmp_path, monkeypatch) -> RunFolder:
    """A one-cycle run of 3 epochs stopped after its second."""
    with_callbacks(monkeypatch, StopAt(1, 2))
    with pytest.raises(KeyboardInterrupt):
        trained(tiny_entry(epochs=3, finetune=False), tiny_data, tmp_path / "runs", num_workers=0)
    with_callbacks(monkeypatch)
    return only_run(tmp_path / "runs")


def test_resuming_a_finished_run_is_refused(finished_run):
    assert "has finished: nothing to resume" in one_error_line(resume_command(finished_run.run))


def test_a_run_interrupted_under_paddy_0_2_resumes_as_0_2_trained_it(tiny_data, tmp_path, monkeypatch):
    """paddy 0.2 recorded none of the later settings and trained with fastai's Adam: the run goes on
    with fastai's Adam and its own optimizer state, not with today's default."""
    with_callbacks(monkeypatch, StopAt(1, 1))
    with pytest.raises(KeyboardInterrupt):
        trained(tiny_entry(epochs=2, finetune=False, opt="fastai"), tiny_data, tmp_path / "runs", num_workers=0)
    with_callbacks(monkeypatch)
    cut = only_run(tmp_path / "runs")
    state = torch.load(cut.checkpoint_path, weights_only=True)
    before = (*SETTINGS_SINCE_0_2, *TRAINING_SET_SINCE_0_3)
    settings = {k: v for k, v in json.loads(state["settings"]).items() if k not in before}
    torch.save({**state, "settings": json.dumps(settings, sort_keys=True)}, cut.checkpoint_path)
    cut.config_path.write_text(json.dumps({k: v for k, v in cut.config().items() if k not in before}))
    resumed = resume(cut, KAGGLE_GPU_MIB, tiny_data, num_workers=0)
    assert resumed.run.finished and resumed.entry.opt == "fastai"


def move_image(root, image, to: str):
    """`image` moved to class folder `to`, and train.csv relabelled to match (a relabelled image)."""
    table = pd.read_csv(root / "train.csv", dtype=str)
    table.loc[table["image_id"] == image.name, "label"] = to
    table.to_csv(root / "train.csv", index=False)
    return image.rename(root / "train_images" / to / image.name)


def test_resuming_on_relabelled_or_changed_images_is_refused_and_on_the_same_ones_goes_on(
    tiny_data_root, tmp_path, monkeypatch
):
    root = shutil.copytree(tiny_data_root, tmp_path / "data")
    with_callbacks(monkeypatch, StopAt(1, 1))
    with pytest.raises(KeyboardInterrupt):
        trained(tiny_entry(epochs=2, finetune=False), check_layout(root), tmp_path / "runs", num_workers=0)
    with_callbacks(monkeypatch)
    cut = only_run(tmp_path / "runs")
    assert cut.config()["train_images"] == 60 and cut.resumable
    image = check_layout(root).train_images[0]
    folder = image.parent.name
    moved = move_image(root, image, next(c for c in DEMO_CLASSES if c != folder))
    line = one_error_line(resume_command(cut))
    assert f"{cut.path} cannot go on: its 60 training images were relabelled; restore the images" in line
    spare = moved.rename(tmp_path / moved.name)
    table = pd.read_csv(root / "train.csv", dtype=str)
    table[table["image_id"] != moved.name].to_csv(root / "train.csv", index=False)
    line = one_error_line(resume_command(cut))
    assert "its training images changed (60 images then, 59 now)" in line
    table.to_csv(root / "train.csv", index=False)
    move_image(root, spare, folder)  # the images it trained on, as they were
    result = resume_command(cut)
    assert result.exit_code == 0, result.output
    assert cut.finished and list(cut.history().epoch) == [0, 1]


def test_resuming_with_changed_settings_is_refused(interrupted):
    config = interrupted.config()
    interrupted.config_path.write_text(json.dumps({**config, "lr": 0.1}))
    assert "was trained with other settings (lr)" in one_error_line(resume_command(interrupted))


def test_resuming_with_settings_on_the_command_line_is_refused(interrupted):
    assert "drop --lr" in one_error_line(resume_command(interrupted, "--lr", "0.1"))


def test_a_truncated_checkpoint_is_refused(interrupted):
    data = interrupted.checkpoint_path.read_bytes()
    interrupted.checkpoint_path.write_bytes(data[: len(data) // 2])
    assert "checkpoint.pt is damaged or not paddy's" in one_error_line(resume_command(interrupted))


def test_a_file_that_is_not_a_checkpoint_is_refused(interrupted):
    torch.save(torch.zeros(3), interrupted.checkpoint_path)
    assert "checkpoint.pt is damaged or not paddy's (AttributeError)" in one_error_line(resume_command(interrupted))


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_checkpoint_that_would_run_code_is_refused_not_run(interrupted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": FORMAT, "position": [1, 1], "payload": Boom()}, interrupted.checkpoint_path)
    assert "damaged or not paddy's (UnpicklingError)" in one_error_line(resume_command(interrupted))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_a_run_killed_in_epoch_3_resumes_to_the_uninterrupted_result(tiny_data_root, tmp_path):
    """SIGKILL in a subprocess: nothing is lost but the epoch in progress."""
    flags = ["--data", str(tiny_data_root), "--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "4"]
    flags += ["--one-cycle", "--no-pretrained", "--seed", "0", "--keep-checkpoint"]
    killed_out, full_out = tmp_path / "killed", tmp_path / "full"
    command = [sys.executable, "-m", "paddy", "train", *flags]
    process = subprocess.Popen([*command, "--out", str(killed_out)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(killed_out.glob("*/history.csv")) or len(pd.read_csv(next(killed_out.glob("*/history.csv")))) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run should still be in epoch 3"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run = only_run(killed_out)
    killed_history = run.history()
    assert not run.finished and 2 <= len(killed_history) < 4
    resumed = CliRunner().invoke(app, ["train", "--resume", run.name, "--out", str(killed_out), "--keep-checkpoint"])
    assert resumed.exit_code == 0, resumed.output
    assert CliRunner().invoke(app, ["train", *flags, "--out", str(full_out)]).exit_code == 0
    history, full = run.history(), only_run(full_out)
    assert len(history) == 4
    pd.testing.assert_frame_equal(history[LOSSES].iloc[:2], killed_history[LOSSES].iloc[:2])
    pd.testing.assert_frame_equal(history[LOSSES], full.history()[LOSSES])
    for name, weight in final_weights(full).items():
        torch.testing.assert_close(final_weights(run)[name], weight, rtol=0, atol=1e-6)


def test_a_run_stopped_after_its_last_epoch_resumes_with_only_tta_left(tiny_data, tmp_path, monkeypatch):
    """Killed during TTA: the checkpoint holds every epoch, so resuming trains nothing and predicts with
    the checkpoint's weights (here the weight average's) what the uninterrupted run predicted."""
    entry = tiny_entry(finetune=False, ema=0.9)
    full = trained(entry, tiny_data, tmp_path / "full", num_workers=0, keep_checkpoint=True)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(paddy.training.run, "tta_predictions", killed)
        with pytest.raises(KeyboardInterrupt):
            trained(entry, tiny_data, tmp_path / "cut", num_workers=0, keep_checkpoint=True)
    epochs_trained = []
    with_callbacks(monkeypatch, LearningRates(epochs_trained))
    resumed = resume(only_run(tmp_path / "cut"), KAGGLE_GPU_MIB, tiny_data, num_workers=0, keep_checkpoint=True)
    assert not epochs_trained, "no epoch trained again"
    assert resumed.valid_error == full.valid_error
    np.testing.assert_allclose(
        load_predictions(resumed.predictions_path).probs, load_predictions(full.predictions_path).probs, atol=1e-6
    )


ENOSPC_IN_TORCH = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def torch_save_fails(monkeypatch) -> None:
    """torch.save as it fails on a full disk: part of the file written, then its writer's RuntimeError."""

    def save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise RuntimeError(ENOSPC_IN_TORCH)

    monkeypatch.setattr(torch, "save", save)


def on_a_full_disk(monkeypatch, name: str) -> None:
    """The temp file of `name` (a run's file) on /dev/full, where every write is ENOSPC (whichever error torch
    and Python's file make of it); every other file is written as usual."""
    real = paddy.core.files.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, temp = real(*args, **kwargs)
        if kwargs.get("prefix", "").startswith(f".{name}"):
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, temp

    monkeypatch.setattr(paddy.core.files.tempfile, "mkstemp", mkstemp)


def checkpoint_on_a_full_disk(monkeypatch) -> None:
    on_a_full_disk(monkeypatch, "checkpoint.pt")


@pytest.mark.parametrize(
    "fault",
    [
        torch_save_fails,
        pytest.param(
            checkpoint_on_a_full_disk,
            marks=pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full"),
        ),
    ],
)
def test_a_full_disk_at_the_checkpoint_is_one_line_keeping_the_previous_one(interrupted, monkeypatch, fault):
    kept = interrupted.checkpoint_path.read_bytes()
    fault(monkeypatch)
    line = one_error_line(resume_command(interrupted))
    monkeypatch.undo()
    assert f"cannot write checkpoint {interrupted.checkpoint_path} (" in line
    needed = re.search(
        rf"it needs about ([0-9.]+) MiB and {re.escape(str(interrupted.path))} has [0-9.]+ MiB free", line
    )
    assert needed and float(needed[1]) >= round(len(kept) / 2**20, 1), "at least the previous checkpoint's size"
    resume = f"paddy train --resume {interrupted.name} --out {interrupted.path.parent}"
    assert f"the previous checkpoint is kept; free space, then go on with `{resume}`" in line
    assert interrupted.checkpoint_path.read_bytes() == kept
    assert load_checkpoint(interrupted.checkpoint_path).position.epochs_done == 2
    assert not list(interrupted.path.glob(".*.tmp")), "no half-written checkpoint left"
    result = CliRunner().invoke(app, ["train", "--resume", str(interrupted.path)])
    assert result.exit_code == 0, result.output
    assert interrupted.finished and list(interrupted.history().epoch) == [0, 1, 2]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_at_the_history_is_one_line_saying_how_to_go_on(interrupted, monkeypatch):
    """history.csv is written just before the checkpoint: the epoch is lost with it, and the run goes on from
    the previous checkpoint, as after a full disk at the checkpoint."""
    history, kept = interrupted.history_path.read_bytes(), interrupted.checkpoint_path.read_bytes()
    on_a_full_disk(monkeypatch, "history.csv")
    line = one_error_line(resume_command(interrupted))
    monkeypatch.undo()
    resume = f"paddy train --resume {interrupted.name} --out {interrupted.path.parent}"
    assert line == (
        f"error: cannot write {interrupted.history_path} (No space left on device); the previous checkpoint is "
        f"kept; free space, then go on with `{resume}`"
    )
    assert interrupted.history_path.read_bytes() == history and interrupted.checkpoint_path.read_bytes() == kept
    assert CliRunner().invoke(app, ["train", "--resume", str(interrupted.path)]).exit_code == 0
    assert interrupted.finished and list(interrupted.history().epoch) == [0, 1, 2]


def test_paddy_run_on_a_full_disk_says_to_run_it_again(tiny_data_root, tmp_path, monkeypatch):
    path, out = tmp_path / "one.toml", tmp_path / "runs"
    path.write_text(
        f'data = "{tiny_data_root}"\n[defaults]\nbs = 8\nsize = 32\nepochs = 2\npretrained = false\n'
        'finetune = false\n[[models]]\narch = "resnet18"\n'
    )
    saves, real = [], torch.save

    def second_save_fails(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise RuntimeError(ENOSPC_IN_TORCH)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", second_save_fails)
    line = one_error_line(CliRunner().invoke(app, ["run", str(path), "--out", str(out)]))
    run = only_run(out)
    assert f"cannot write checkpoint {run.checkpoint_path} ({ENOSPC_IN_TORCH})" in line
    assert f"free space, then go on with `paddy run {path} --out {out} --bad-images fail`" in line
    assert load_checkpoint(run.checkpoint_path).position.epochs_done == 1
