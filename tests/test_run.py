"""`paddy run`: resumable ensemble training, OOM retries, and the kill test."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import KAGGLE_GPU_MIB, assert_no_redrawn_bars, tiny_entry, train_in_process
from filelock import FileLock
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.core.files import read_json
from paddy.ensembling.average import build_ensemble
from paddy.orchestration.config_runs import (
    RunStatus,
    estimate_remaining,
    run_config,
    train_with_oom_retry,
)
from paddy.runs.folder import entry_run_folder
from paddy.runs.predictions import load_predictions
from paddy.settings.config_file import load_config
from paddy.training.plan import plan_training
from paddy.training.run import RunPlan

TINY_CONFIG = """
[defaults]
bs = 8
size = 32
epochs = 1
pretrained = false
finetune = false
seed = 0

[[models]]
arch = "test_resnet"

[[models]]
arch = "test_resnet"
item = "crop"
epochs = {second_epochs}
weight = 2

[[models]]
arch = "test_resnet"
item = "pad"
"""


def write_config(tmp_path, second_epochs=1, name="tiny3.toml"):
    path = tmp_path / name
    path.write_text(TINY_CONFIG.format(second_epochs=second_epochs))
    return path


def oom_below(min_accum: int):
    """A train_once that runs out of memory until accum reaches `min_accum`."""
    calls = []

    def train_once(plan):
        calls.append(plan.training.accum)
        if plan.training.accum < min_accum:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return plan.entry

    return train_once, calls


def planned(entry) -> RunPlan:
    """A plan of `entry` alone: what an out-of-memory retry changes (no data or folder is touched)."""
    return RunPlan(plan_training(entry), data=None, run=None)


def test_oom_doubles_accum_until_it_fits():
    train_once, calls = oom_below(4)
    assert train_with_oom_retry(planned(tiny_entry(bs=8, accum=1)), train_once).accum == 4
    assert calls == [1, 2, 4]


def test_oom_at_two_images_per_step_is_one_clear_error():
    train_once, calls = oom_below(99)
    with pytest.raises(PaddyError, match=r"out of memory even at accum 4 \(per-step batch 2\)"):
        train_with_oom_retry(planned(tiny_entry(bs=8, accum=2)), train_once)
    assert calls == [2, 4]


def test_estimate_remaining():
    assert estimate_remaining([], 3) is None
    assert estimate_remaining([10.0, 20.0], 2) == 30.0


def test_run_records_the_accum_that_survived_oom(tiny_data, tmp_path):
    config = load_config(write_config(tmp_path))

    def train_fn(plan, **options):
        if plan.training.accum < 2:
            raise torch.OutOfMemoryError("injected")
        return train_in_process(plan, **options)

    (first, *_) = run_config(config, tiny_data, tmp_path / "runs", KAGGLE_GPU_MIB, train_fn=train_fn)
    assert first.accum == 2 and first.status == RunStatus.trained
    assert read_json(first.run.config_path)["accum"] == 2
    assert load_predictions(first.run.predictions_path).meta["accum"] == 2


def test_rerun_skips_finished_entries_and_retrains_changed_ones(tiny_data, tmp_path):
    out = tmp_path / "runs"
    first = run_config(load_config(write_config(tmp_path)), tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert [o.status for o in first] == [RunStatus.trained] * 3
    stamps = [o.run.predictions_path.stat().st_mtime_ns for o in first]
    changed = load_config(write_config(tmp_path, second_epochs=2))
    second = run_config(changed, tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert [o.status for o in second] == [RunStatus.skipped, RunStatus.trained, RunStatus.skipped]
    assert second[0].valid_error == first[0].valid_error
    assert first[0].run.predictions_path.stat().st_mtime_ns == stamps[0]
    assert second[1].run != first[1].run and first[1].run.finished, "the earlier finished run of entry 1 is kept"
    _, members, _ = build_ensemble(out, None, {}, changed, tmp_path / "ensemble.safetensors", tiny_data.root)
    assert [m.name for m in members] == [o.run.name for o in second], "ensemble --config matches as run does"
    assert [m.weight for m in members] == [1.0, 2.0, 1.0], "paddy ensemble takes the config's weights"
    forced = run_config(
        load_config(write_config(tmp_path, second_epochs=2)),
        tiny_data,
        out,
        KAGGLE_GPU_MIB,
        force=True,
        train_fn=train_in_process,
    )
    assert [o.status for o in forced] == [RunStatus.trained] * 3


def test_run_command_trains_every_entry_and_prints_a_table_without_bars(tiny_data_root, tmp_path):
    command = ["run", str(write_config(tmp_path)), "--data", str(tiny_data_root), "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, command, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "entry 2 of 0-2: test_resnet-32x32-pad" in result.stdout, "numbered from 0, as tables and folders are"
    assert result.stdout.count(" trained ") == 3
    assert len(list((tmp_path / "runs").glob("tiny3-*/predictions.safetensors"))) == 3
    assert_no_redrawn_bars(result.stdout)


def test_config_with_a_bad_entry_trains_nothing(tiny_data_root, tmp_path):
    config = write_config(tmp_path)
    config.write_text(config.read_text() + '\n[[models]]\narch = "resnet_18"\n')
    result = CliRunner().invoke(
        app, ["run", str(config), "--data", str(tiny_data_root), "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 1
    assert "models[3] (resnet_18) arch: unknown arch" in result.stderr
    assert not (tmp_path / "runs").exists()


def take_ctrl_c_as_a_terminal_would() -> None:
    """A background job of a non-interactive shell (CI) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt: give the child the default action a foreground `paddy run` has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_run_resumes_without_retraining_or_corrupt_files(tiny_data, tiny_data_root, tmp_path, sig):
    config = write_config(tmp_path, second_epochs=8)  # enough epochs to be inside one when the signal comes
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "paddy", "run", str(config), "--data", str(tiny_data_root), "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=take_ctrl_c_as_a_terminal_would,
    )
    deadline = time.monotonic() + 120
    # Signal once entry 2 has a checkpoint (its first epoch is done), not after a fixed delay: a fixed
    # delay let a fast machine finish the whole run first.
    while not any((p / "checkpoint.pt").exists() for p in out.glob("tiny3-01-*")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "entry 2 never finished an epoch"
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=60)
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "interrupted" in process.stderr.read()
    (entry1,) = out.glob("tiny3-00-*")
    (entry2,) = out.glob("tiny3-01-*")
    assert (entry1 / "predictions.safetensors").exists()
    assert not (entry2 / "predictions.safetensors").exists(), "entry 2 should have been interrupted"
    entry1_stamp = (entry1 / "predictions.safetensors").stat().st_mtime_ns

    outcomes = run_config(load_config(config), tiny_data, out, KAGGLE_GPU_MIB, train_fn=train_in_process)
    assert outcomes[0].status == RunStatus.skipped and outcomes[2].status == RunStatus.trained
    assert outcomes[1].status in (RunStatus.trained, RunStatus.resumed), (
        "entry 2 goes on from a checkpoint if it finished an epoch"
    )
    assert (entry1 / "predictions.safetensors").stat().st_mtime_ns == entry1_stamp
    for outcome in outcomes:
        load_predictions(outcome.run.predictions_path)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_an_entry_another_process_is_training_is_left_to_it(tiny_data, tmp_path):
    config, out = load_config(write_config(tmp_path)), tmp_path / "runs"
    trained = []

    def record(plan, **options):
        trained.append(plan.run.name)
        return train_in_process(plan, **options)

    middle = entry_run_folder(out, config.name, 1, config.models[1], tiny_data.root)
    held = FileLock(out / ".locks" / f"{middle.name}.lock")
    (out / ".locks").mkdir(parents=True)
    with held:  # another process's lock: flock is per open file, so this one counts as another writer
        outcomes = run_config(config, tiny_data, out, KAGGLE_GPU_MIB, train_fn=record)
    assert [o.status for o in outcomes] == [RunStatus.trained, RunStatus.busy, RunStatus.trained]
    assert middle.name not in trained and not middle.path.exists()
    again = run_config(config, tiny_data, out, KAGGLE_GPU_MIB, train_fn=record)
    assert [o.status for o in again] == [RunStatus.skipped, RunStatus.trained, RunStatus.skipped], (
        "a lock left by a finished process is free"
    )


@pytest.mark.slow
def test_two_concurrent_runs_on_one_output_never_interleave(tiny_data_root, tmp_path):
    config, out = write_config(tmp_path), tmp_path / "runs"
    command = [sys.executable, "-m", "paddy", "run", str(config), "--data", str(tiny_data_root), "--out", str(out)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], results
    runs = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert len(runs) == 3, "each entry trained once, into its own folder"
    for run in runs:
        recorded = read_json(run / "config.json")
        preds = load_predictions(run / "predictions.safetensors")
        assert preds.meta["run"] == run.name
        assert (preds.meta["item"], preds.meta["epochs"]) == (recorded["item"], recorded["epochs"])
        assert preds.meta["seed"] == recorded["seed_used"]
