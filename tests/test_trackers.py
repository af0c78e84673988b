"""Experiment trackers: what each one wrote is read back with the tracker's own reader (TensorBoard's
EventAccumulator, W&B's protobuf records and `wandb sync`, MLflow's client), one value per epoch equal
to history.csv's, the learning rate of every step, the settings and the final scores; a resumed run goes
on in the same tracker run; trackers never change which run is an entry's; a missing package is one line."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import KAGGLE_GPU_MIB, tiny_entry, trained, with_callbacks
from test_checkpoints import StopAt
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.runs.folder import RunFolder, settings_key
from paddy.settings.checks import apply_overrides
from paddy.settings.config_file import load_config
from paddy.settings.entry import ModelEntry, Tracker, default_of
from paddy.training.run import resume
from paddy.training.trackers import IDS_FILE, MLFLOW_STORE, STEPS_FILE, TENSORBOARD_FOLDER, check_installed, group_of

EPOCH_VALUES = ["train_loss", "valid_loss", "error_rate"]


def the_run(out: Path) -> RunFolder:
    """The one run folder under `out` (where MLflow's store lies too)."""
    (run,) = [path for path in out.iterdir() if (path / "config.json").is_file()]
    return RunFolder(run)


def scalars(run: RunFolder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's TensorBoard files, as TensorBoard itself loads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run.path / TENSORBOARD_FOLDER))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_records(path: Path) -> list:
    """The records of a .wandb transaction log: LevelDB's log format (32 KiB blocks of 7-byte headed
    pieces) after W&B's 7-byte file header, each record one of wandb's own protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data, header, block = path.read_bytes(), 7, 32768
    assert data[:4] == b":W&B"
    records, pos, pending = [], header, b""
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + header])
        if kind == 0:
            break
        pending += data[pos + header : pos + header + length]
        pos += header + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_logged(run: RunFolder) -> dict[str, list]:
    """Every offline W&B run file of the run folder: its run records, config, history rows and summary."""
    logged = {
        "runs": [],
        "config": {},
        "history": [],
        "summary": {},
        "files": sorted(run.path.glob("wandb/*run-*/*.wandb")),
    }
    for path in logged["files"]:
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind in ("run", "config"):
                config = record.run.config if kind == "run" else record.config
                logged["config"].update({item.key: json.loads(item.value_json) for item in config.update})
            if kind == "run":
                logged["runs"].append(record.run)
            elif kind == "history":
                logged["history"].append({item_key(i): json.loads(i.value_json) for i in record.history.item})
            elif kind == "summary":
                logged["summary"].update({item_key(i): json.loads(i.value_json) for i in record.summary.update})
    return logged


def mlflow_runs(out: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out.resolve() / MLFLOW_STORE}")
    return client, client.search_runs([client.get_experiment_by_name("paddy").experiment_id])


def epoch_history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_tensorboard_and_csv_from_the_command_line(tiny_data_root, tmp_path):
    """fine_tune's two fits are one run: epochs 0, 1, 2 and steps counted across both fits."""
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "2", "--no-pretrained", "--seed", "0"]
    args = ["train", "--data", str(tiny_data_root), "--out", str(tmp_path), *flags, "--tracker", "tensorboard"]
    result = CliRunner().invoke(app, [*args, "--tracker", "csv"])
    assert result.exit_code == 0, result.output
    run = the_run(tmp_path)
    history, logged = run.history(), scalars(run)
    assert len(history) == 3 and list(history["fit"]) == [1, 2, 2]
    for name in EPOCH_VALUES:
        assert [step for step, _ in logged[f"epoch/{name}"]] == [0, 1, 2], "one scalar per epoch, numbered as rows"
        assert [value for _, value in logged[f"epoch/{name}"]] == pytest.approx(list(history[name]), rel=1e-6)
    steps = pd.read_csv(run.path / STEPS_FILE)
    per_epoch = len(steps) // 3
    assert list(steps["step"]) == list(range(3 * per_epoch)), "every training step once, counted across fits"
    for name in ("train_loss", "lr_0", "lr_1"):
        assert [step for step, _ in logged[f"step/{name}"]] == list(steps["step"])
        assert [value for _, value in logged[f"step/{name}"]] == pytest.approx(list(steps[name]), rel=1e-6)
    peak = steps["lr_1"].iloc[per_epoch:].max()
    assert peak == pytest.approx(default_of("lr") / 2, rel=0.02), "the unfrozen fit's peak: fine_tune's lr / 2"
    final = {name: values for name, values in logged.items() if name.startswith("final/")}
    assert all(len(values) == 1 for values in final.values()), "the final scores once"
    final = {name: value for name, ((_, value),) in final.items()}
    kept = run.result()["kept_epoch"]  # the final scores are the kept epoch's, as result.json's
    assert final == pytest.approx({f"final/{name}": history[name].iloc[kept] for name in EPOCH_VALUES}, rel=1e-6)


def test_wandb_offline_run_that_wandb_can_sync(tiny_data, tmp_path):
    result = trained(tiny_entry(trackers=(Tracker.wandb,)), tiny_data, tmp_path, num_workers=0)
    logged = wandb_logged(result.run)
    (path,) = logged["files"]
    assert path.parent.name.startswith("offline-run-"), "offline by default"
    (wandb_run,) = logged["runs"]
    assert wandb_run.run_id == json.loads((result.run.path / IDS_FILE).read_text())["wandb"]
    assert wandb_run.display_name == result.run.name and wandb_run.run_group == "test_resnet-32x32-squish"
    assert logged["config"]["arch"] == "test_resnet" and logged["config"]["seed_used"] == 0
    epochs = [row for row in logged["history"] if "epoch" in row]
    assert [row["epoch"] for row in epochs] == list(range(len(result.history))) == [0, 1], "fine_tune: 2 fits"
    assert [row["epoch/valid_loss"] for row in epochs] == pytest.approx(list(result.history["valid_loss"]), rel=1e-6)
    assert len([row for row in logged["history"] if "step/lr_0" in row]) > 1, "the learning rate of every step"
    assert logged["summary"]["final/error_rate"] == pytest.approx(result.valid_error, rel=1e-6)
    wandb = Path(sys.executable).parent / "wandb"
    synced = subprocess.run([str(wandb), "sync", "--dry-run", str(path.parent)], capture_output=True, text=True)
    assert "Would sync 1 run" in synced.stdout + synced.stderr


def test_a_resumed_run_goes_on_in_the_same_tracker_runs(tiny_data, tmp_path, monkeypatch):
    entry = tiny_entry(epochs=2, trackers=(Tracker.mlflow, Tracker.wandb, Tracker.tensorboard, Tracker.csv))
    with_callbacks(monkeypatch, StopAt(2, 1))
    with pytest.raises(KeyboardInterrupt):
        trained(entry, tiny_data, tmp_path, num_workers=0)
    cut = the_run(tmp_path)
    ids = json.loads((cut.path / IDS_FILE).read_text())
    monkeypatch.undo()
    result = resume(cut, KAGGLE_GPU_MIB, tiny_data, num_workers=0)
    assert json.loads((cut.path / IDS_FILE).read_text()) == ids
    client, (mlflow_run,) = mlflow_runs(tmp_path)
    assert mlflow_run.info.run_id == ids["mlflow"] and mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["paddy.group"] == "test_resnet-32x32-squish"
    assert mlflow_run.data.params["arch"] == "test_resnet" and mlflow_run.data.params["epochs"] == "2"
    logged = epoch_history(client, ids["mlflow"], "epoch/valid_loss")
    assert [step for step, _ in logged] == [0, 1, 2]
    assert [value for _, value in logged] == pytest.approx(list(result.history["valid_loss"]), rel=1e-6)
    assert mlflow_run.data.metrics["final/error_rate"] == pytest.approx(result.valid_error, rel=1e-6)
    steps = pd.read_csv(cut.path / STEPS_FILE)
    assert list(steps["step"]) == list(range(len(steps))), "no step lost or repeated"
    assert [step for step, _ in epoch_history(client, ids["mlflow"], "step/lr_0")] == list(steps["step"])
    assert [step for step, _ in scalars(cut)["epoch/valid_loss"]] == [0, 1, 2]
    logged = wandb_logged(cut)
    assert len(logged["files"]) == 2 and {run.run_id for run in logged["runs"]} == {ids["wandb"]}
    assert [row["epoch"] for row in logged["history"] if "epoch" in row] == [0, 1, 2]


def test_trackers_never_change_which_run_is_an_entrys(finished_run, tiny_data):
    tracked = apply_overrides(finished_run.entry, {"trackers": ["wandb", "csv"]})
    assert finished_run.run.matches(tracked, tiny_data.root, None)
    assert settings_key(tracked, tiny_data.root) == settings_key(finished_run.entry, tiny_data.root)
    assert not finished_run.run.matches(apply_overrides(tracked, {"epochs": 3}), tiny_data.root, None), "control"


def test_tracker_names_are_checked_and_each_taken_once():
    entry = apply_overrides(ModelEntry(), {"trackers": ["csv", "tensorboard", "csv"]})
    assert entry.trackers == (Tracker.csv, Tracker.tensorboard)
    assert entry.to_json()["trackers"] == ["csv", "tensorboard"]
    assert apply_overrides(ModelEntry(), {"trackers": "mlflow"}).trackers == (Tracker.mlflow,)
    with pytest.raises(PaddyError, match="trackers: 'tensorbord' is not one of"):
        apply_overrides(ModelEntry(), {"trackers": ["tensorbord"]})
    with pytest.raises(PaddyError, match="not a list of trackers"):
        apply_overrides(ModelEntry(), {"trackers": 3})


def test_a_missing_tracker_package_is_one_line_naming_the_extra(tiny_data_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what find_spec sees when wandb is not installed
    with pytest.raises(PaddyError, match=r"pip install 'paddy-trainer\[wandb\]'"):
        check_installed((Tracker.csv, Tracker.wandb))
    check_installed((Tracker.csv, Tracker.tensorboard))  # the others are there
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "1", "--no-pretrained"]
    result = CliRunner().invoke(
        app, ["train", "--data", str(tiny_data_root), "--out", str(tmp_path), *flags, "--tracker", "wandb"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].endswith("pip install 'paddy-trainer[wandb]'")
    assert "Traceback" not in result.output


def test_fold_runs_of_one_entry_share_a_group_and_a_config_names_its_trackers(tmp_path):
    entry = apply_overrides(ModelEntry(), {"arch": "resnet18", "folds": 5})
    groups = {group_of(fold) for fold in entry.per_fold()}
    assert groups == {"resnet18-224x224-squish"} and len({fold.describe() for fold in entry.per_fold()}) == 5
    config = tmp_path / "c.toml"
    config.write_text('[[models]]\narch = "resnet18"\ntrackers = ["tensorboard", "mlflow"]\n')
    (loaded,) = load_config(config).models
    assert loaded.trackers == (Tracker.tensorboard, Tracker.mlflow)
    config.write_text('[[models]]\narch = "resnet18"\ntrackers = ["neptune"]\n')
    with pytest.raises(PaddyError, match="trackers: 'neptune' is not one of tensorboard, wandb, mlflow, csv"):
        load_config(config)
