"""`paddy runs`: every run folder in one table with its state and the settings that differ; `--clean`
removes exactly the dead folders: never a finished, resumable or lr-find one, nor one another process
is writing (its lock held), nor anything that is not a run folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.core.files import read_json, write_json
from paddy.runs.folder import LOCKS_FOLDER, RunFolder
from paddy.runs.listing import RunState, listed_runs, remove_dead_runs, runs_frame


def copy_of(run: RunFolder, out, name: str, drop=(), config=None) -> RunFolder:
    """A copy of a finished run under `out`, without the files `drop`, its config changed by `config`."""
    path = shutil.copytree(run.path, out / name)
    for file in drop:
        (path / file).unlink()
    if config:
        write_json(path / "config.json", {**read_json(path / "config.json"), **config})
    return RunFolder(path)


@pytest.fixture
def out(finished_run, tmp_path):
    """Run folders in every state, and things that are not run folders."""
    out, run = tmp_path / "runs", finished_run.run
    out.mkdir()
    copy_of(run, out, "a-finished", config={"lr": 0.002, "trackers": ["csv"]})
    resumable = copy_of(run, out, "b-resumable", drop=["predictions.safetensors", "result.json"])
    resumable.checkpoint_path.write_bytes(b"the last epoch")
    copy_of(run, out, "c-dead", drop=["predictions.safetensors", "result.json", "history.csv"])
    copy_of(run, out, "d-dead-after-an-epoch", drop=["predictions.safetensors", "model.safetensors"])
    lr_find = copy_of(run, out, "e-lr-find", drop=["predictions.safetensors", "result.json"])
    write_json(lr_find.path / "lr_find.json", {"valley": 0.001})
    copy_of(run, out, "f-being-written", drop=["predictions.safetensors", "result.json"])
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("not a run")
    (out / "mlflow.db").write_bytes(b"a tracker's store")
    return out


@pytest.fixture
def locked(out):
    """Another process holding f-being-written's lock, as a training paddy process does."""
    lock = out / LOCKS_FOLDER / "f-being-written.lock"
    lock.parent.mkdir(exist_ok=True)
    code = f"""
        import sys, time
        from filelock import FileLock
        with FileLock({str(lock)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield holder
    holder.communicate("")


def test_every_run_folder_with_its_state(out, locked, finished_run):
    states = {r.run.name: r.state for r in listed_runs(out)}
    assert states == {
        "a-finished": RunState.finished,
        "b-resumable": RunState.resumable,
        "c-dead": RunState.dead,
        "d-dead-after-an-epoch": RunState.dead,
        "e-lr-find": RunState.lr_find,
        "f-being-written": RunState.writing,
    }, "folders without config.json (notes) and files (mlflow.db) are not run folders"
    frame = runs_frame(listed_runs(out))
    assert list(frame.columns) == [
        *("run", "state", "arch", "size", "fold", "epochs_done", "metric", "valid", "seconds"),
        "lr",
    ], "only the settings that differ (lr), not the trackers, which only watched"
    finished = frame.set_index("run").loc["a-finished"]
    assert finished["valid"] == finished_run.valid_error and finished["lr"] == "0.002"
    assert finished["metric"] == "error_rate"
    resumable, dead = frame.set_index("run").loc["b-resumable"], frame.set_index("run").loc["c-dead"]
    best = finished_run.history.error_rate.min()
    assert resumable["metric"] == "error_rate" and resumable["valid"] == pytest.approx(best), "its best epoch so far"
    assert pd.isna(dead["metric"]) and pd.isna(dead["valid"]), "no epoch: no score"
    assert finished["seconds"] == pytest.approx(finished_run.train_seconds + finished_run.predict_seconds)
    assert finished["arch"] == "test_resnet" and finished["size"] == "32x32" and finished["fold"] == "-"
    assert frame.set_index("run").loc["c-dead", "epochs_done"] == 0
    assert frame.set_index("run").loc["d-dead-after-an-epoch", "epochs_done"] == len(finished_run.history)


def test_clean_removes_exactly_the_dead_folders(out, locked):
    removed = remove_dead_runs(out)
    assert sorted(run.name for run in removed) == ["c-dead", "d-dead-after-an-epoch"]
    kept = sorted(p.name for p in out.iterdir())
    assert kept == [".locks", "a-finished", "b-resumable", "e-lr-find", "f-being-written", "mlflow.db", "notes"]
    assert (out / "f-being-written" / "config.json").is_file(), "a folder another process writes is left alone"
    assert remove_dead_runs(out) == [], "nothing dead is left"


def test_a_folder_whose_writer_has_ended_is_dead_again(out):
    """No process holds f-being-written's lock any more (its writer was killed): clean removes it."""
    assert "f-being-written" in [run.name for run in remove_dead_runs(out)]


def test_sorting_by_a_column(out):
    frame = runs_frame(listed_runs(out), sort="valid")
    assert frame["run"].iloc[0] == "a-finished" and frame["run"].iloc[-1] == "c-dead", "runs without a score last"
    assert list(runs_frame(listed_runs(out), sort="state")["state"])[:2] == ["dead", "dead"]
    with pytest.raises(PaddyError, match="cannot sort by 'colour': the columns are run, state"):
        runs_frame(listed_runs(out), sort="colour")


def test_paddy_runs_and_clean_from_the_command_line(out, locked):
    shown = CliRunner().invoke(app, ["runs", "--out", str(out), "--sort", "valid"])
    assert shown.exit_code == 0, shown.output
    assert "valid error_rate" in shown.stdout and " metric " not in shown.stdout, "one metric: it heads the scores"
    resumable = next(line for line in shown.stdout.splitlines() if "b-resumable" in line)
    assert re.search(r"│ +\d\.\d{4}\* │", resumable) and "*: an unfinished run's best epoch so far" in shown.stdout
    for name, state in [("a-finished", "finished"), ("c-dead", "dead"), ("f-being-written", "writing")]:
        assert name in shown.stdout and state in shown.stdout
    assert "6 run folders" in shown.stdout
    cleaned = CliRunner().invoke(app, ["runs", "--out", str(out), "--clean"])
    assert cleaned.exit_code == 0, cleaned.output
    assert "c-dead" in cleaned.stdout and "2 dead run folders removed" in cleaned.stdout
    assert "a-finished" not in cleaned.stdout
    missing = CliRunner().invoke(app, ["runs", "--out", str(out / "nope")])
    assert missing.exit_code == 1 and "no output folder" in missing.output


def start_training(data_root, out, size: str, epochs: int) -> subprocess.Popen:
    flags = ["--arch", "test_resnet", "--size", size, "--bs", "8", "--epochs", str(epochs), "--no-pretrained"]
    command = [sys.executable, "-m", "paddy", "train", "--data", str(data_root), "--out", str(out), *flags]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(out, pattern: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while not list(out.glob(pattern)):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"no {pattern} in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_after_real_kills_clean_removes_only_the_run_killed_before_its_first_epoch(tiny_data_root, tmp_path):
    """A run killed after an epoch is resumable, one killed before is dead, and while a run trains its
    lock makes it `writing`, so --clean leaves it alone."""
    out = tmp_path / "runs"
    training = start_training(tiny_data_root, out, "32", epochs=40)
    try:
        wait_for(out, "*-32x32-*/checkpoint.pt", training)
        (run,) = listed_runs(out)
        assert run.state == RunState.writing and remove_dead_runs(out) == [], "never the run being trained"
        early = start_training(tiny_data_root, out, "24", epochs=40)
        wait_for(out, "*-24x24-*/config.json", early)
        early.kill()
        early.wait(timeout=60)
    finally:
        training.kill()
        training.wait(timeout=60)
    (dead,) = out.glob("*-24x24-*")
    assert not (dead / "checkpoint.pt").exists(), "killed inside its first epoch"
    states = {r.run.name: r.state for r in listed_runs(out)}
    assert sorted(states.values()) == [RunState.dead, RunState.resumable]
    assert [run.path for run in remove_dead_runs(out)] == [dead]
    (kept,) = listed_runs(out)
    assert kept.state == RunState.resumable and kept.run.checkpoint_path.is_file()


@pytest.fixture
def scored(finished_run, tmp_path):
    """Finished runs scored on two metrics, one of them higher-is-better, a run of a release that recorded no
    metric (the error rate), and a run that has not finished an epoch yet."""
    out = tmp_path / "runs"
    out.mkdir()
    for name, metric, value in [("a", "accuracy", 0.7), ("b", "error_rate", 0.2), ("c", "accuracy", 0.9)]:
        run = copy_of(finished_run.run, out, name)
        write_json(
            run.path / "result.json", {**read_json(run.path / "result.json"), "metric": metric, "valid_error": value}
        )
    old = copy_of(finished_run.run, out, "d-older-release")
    result = read_json(old.path / "result.json")
    write_json(old.path / "result.json", {**{k: v for k, v in result.items() if k != "metric"}, "valid_error": 0.1})
    copy_of(finished_run.run, out, "e-no-epoch-yet", drop=["predictions.safetensors", "result.json", "history.csv"])
    return out


def test_sorting_by_valid_puts_the_best_first_whichever_way_its_metric_goes(scored):
    frame = runs_frame(listed_runs(scored), sort="valid")
    assert list(frame["run"]) == ["c", "a", "d-older-release", "b", "e-no-epoch-yet"], "accuracy high first, error low"
    assert list(frame["metric"])[:4] == ["accuracy", "accuracy", "error_rate", "error_rate"]


def test_runs_of_different_metrics_show_a_metric_column(scored):
    shown = CliRunner().invoke(app, ["runs", "--out", str(scored)], terminal_width=300)
    assert shown.exit_code == 0, shown.output
    header = next(line for line in shown.stdout.splitlines() if " run " in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")][6:8] == ["metric", "valid"]
    assert "valid_error" not in shown.stdout


def test_runs_of_two_data_folders_show_which_each_trained_on(scored):
    assert "data" not in runs_frame(listed_runs(scored)).columns, "one data folder: nothing to tell apart"
    config = scored / "a" / "config.json"
    write_json(config, {**read_json(config), "data": "/data/other-competition"})
    frame = runs_frame(listed_runs(scored)).set_index("run")
    assert frame.loc["a", "data"] == "/data/other-competition" and frame.loc["b", "data"] != "/data/other-competition"
