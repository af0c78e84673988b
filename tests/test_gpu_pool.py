"""`paddy run --gpus`: one worker per GPU at a time, jobs overlapping across GPUs, a failing run reported
while the others finish, a killed pool resumed; and `--shard I/N` splitting a config exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest
from conftest import tiny_entry
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.cli.run import parse_shard
from paddy.core.errors import PaddyError
from paddy.orchestration.config_runs import RunStatus, config_runs, run_on_gpus, shard_runs
from paddy.orchestration.gpu_pool import WORKER_LOG, PoolJob, parse_gpus, run_pool
from paddy.runs.folder import RunFolder
from paddy.settings.config_file import EnsembleConfig, load_config

REPO = Path(__file__).parent.parent
FAKE_TRAINER = """
import json, os, sys, time
record, name, seconds, fail = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "fail"
started = time.time()
time.sleep(seconds)
print(f"training {name}")
with open(os.path.join(record, name + ".json"), "w") as f:
    json.dump({"device": os.environ["CUDA_VISIBLE_DEVICES"], "start": started, "end": time.time()}, f)
if fail:
    print("error: the loss became nan")
    sys.exit(1)
"""


def fake_job(tmp_path: Path, name: str, seconds: float = 1.0, fail: bool = False) -> PoolJob:
    record = tmp_path / "record"
    record.mkdir(exist_ok=True)
    argv = [sys.executable, "-c", FAKE_TRAINER, str(record), name, str(seconds), "fail" if fail else "ok"]
    return PoolJob(name, RunFolder(tmp_path / "runs" / name), argv)


def recorded(tmp_path: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (tmp_path / "record").glob("*.json")}


def test_jobs_overlap_across_gpus_but_never_share_one(tmp_path):
    jobs = [fake_job(tmp_path, f"run{i}") for i in range(4)]
    outcomes = run_pool(jobs, ["0", "1"], tmp_path / "logs")
    assert sorted(o.job.label for o in outcomes) == [j.label for j in jobs] and not any(o.failed for o in outcomes)
    runs = recorded(tmp_path)
    assert {r["device"] for r in runs.values()} == {"0", "1"}, "each worker sees its one GPU"
    for a, b in combinations(runs.values(), 2):
        overlap = min(a["end"], b["end"]) > max(a["start"], b["start"])
        assert not (overlap and a["device"] == b["device"]), "two runs on one GPU at once"
    assert any(min(a["end"], b["end"]) > max(a["start"], b["start"]) for a, b in combinations(runs.values(), 2))
    for outcome in outcomes:
        assert outcome.device == runs[outcome.job.label]["device"]


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    jobs = [fake_job(tmp_path, "good1", 0.5), fake_job(tmp_path, "bad", 0.2, fail=True), fake_job(tmp_path, "good2")]
    (jobs[0].run.path).mkdir(parents=True)  # a run folder its worker made: the log moves into it
    outcomes = {o.job.label: o for o in run_pool(jobs, ["0", "1"], tmp_path / "logs")}
    assert outcomes["bad"].failed and outcomes["bad"].last_line() == "error: the loss became nan"
    assert not outcomes["good1"].failed and not outcomes["good2"].failed
    assert set(recorded(tmp_path)) == {"good1", "bad", "good2"}
    assert outcomes["good1"].log == jobs[0].run.path / WORKER_LOG
    assert "training good1" in outcomes["good1"].log.read_text()
    assert outcomes["bad"].log == tmp_path / "logs" / "bad.log", "no run folder: the log stays beside them"


@pytest.mark.parametrize(
    "text, available, devices",
    [("0,1", 0, ["0", "1"]), ("all", 2, ["0", "1"]), (" 3 ", 0, ["3"])],
)
def test_gpus_are_listed_or_all(text, available, devices):
    assert parse_gpus(text, available) == devices


@pytest.mark.parametrize(
    "text, available, fragment",
    [("all", 0, "sees no CUDA GPU"), ("0,0", 2, "twice"), ("gpu0", 2, "not 'all' or GPU numbers"), ("", 2, "not")],
)
def test_bad_gpu_lists_are_one_line(text, available, fragment):
    with pytest.raises(PaddyError, match=fragment):
        parse_gpus(text, available)


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shards_cover_every_run_exactly_once(count):
    entries = [tiny_entry(), tiny_entry(folds=3), tiny_entry(size=48), tiny_entry(folds=2, fold_seed=1)]
    every = {(index, one.fold) for index, one in config_runs(entries)}
    shards = [shard_runs(entries, (number, count)) for number in range(1, count + 1)]
    assert set().union(*shards) == every and sum(len(s) for s in shards) == len(every) == 7
    assert max(map(len, shards)) - min(map(len, shards)) <= 1, "shares as even as the runs allow"
    assert shards == [shard_runs(entries, (n, count)) for n in range(1, count + 1)], "stable"


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_one_line(text):
    with pytest.raises(PaddyError, match="--shard"):
        parse_shard(text)


def test_the_pool_reports_a_failed_worker_with_its_line(tiny_data, tmp_path, monkeypatch):
    """Glue: every unfinished run is a job; a worker that fails gives a 'failed' row and its error line."""
    config = tmp_path / "c.toml"
    config.write_text('[defaults]\narch = "resnet18"\nsize = 32\nbs = 8\n[[models]]\n[[models]]\nsize = 48\n')

    def fake_worker(key):
        return fake_job(tmp_path, f"entry{key[0]}", 0.2, key[0] == 1).argv

    outcomes, failures = run_on_gpus(load_config(config), tiny_data, tmp_path / "runs", ["0", "1"], fake_worker, 16000)
    assert [o.status for o in outcomes] == ["busy elsewhere", RunStatus.failed], (
        "a worker that finished nothing is not 'trained'"
    )
    assert len(failures) == 1 and "entry 1: resnet18-48x48-squish failed on GPU" in failures[0]
    assert "error: the loss became nan" in failures[0]


def test_a_config_without_a_file_cannot_feed_workers(tiny_data, tmp_path):
    with pytest.raises(PaddyError, match="--gpus needs the config as a file"):
        run_on_gpus(EnsembleConfig(models=[tiny_entry()]), tiny_data, tmp_path, ["0"], lambda key: [], 16000)


def pool_command(config: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "paddy", "run", str(config), "--data", str(data), "--out", str(out), "--gpus", "0,1"]


def until_gone(pattern: str, seconds: float = 20) -> bool:
    """Whether every process whose command line holds `pattern` is gone within `seconds` (torch's loader
    processes notice their parent died every 5 s)."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


@pytest.mark.slow
def test_a_killed_pool_stops_its_workers_and_the_next_run_resumes(tiny_data_root, tmp_path):
    """Real `paddy run --gpus 0,1` of two tiny entries (on the CPU, the GPU numbers only name the workers):
    killed outright once a run has finished, its workers die with it, and running it again trains only
    what is left, every run folder ending with its worker's log."""
    out, config = tmp_path / "runs", tmp_path / "two.toml"
    config.write_text(
        "[defaults]\nbs = 16\nepochs = 1\nfinetune = false\npretrained = false\n"
        '[[models]]\narch = "test_resnet"\nsize = 32\n'
        '[[models]]\narch = "test_resnet"\nsize = 32\nitem = "crop"\nepochs = 4\n'
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = pool_command(config, tiny_data_root, out)
    pool = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # a loaded machine trains slowly
    while not list(out.glob("*/predictions.safetensors")) and time.monotonic() < deadline:
        assert pool.poll() is None, f"the pool ended (exit {pool.returncode}) before any run finished"
        time.sleep(0.2)
    pool.send_signal(signal.SIGKILL)
    pool.wait()
    finished_first = {p.parent.name for p in out.glob("*/predictions.safetensors")}
    assert finished_first, "a run finished before the kill"
    assert until_gone(f"--out {out}"), "the workers (and their loader processes) died with their pool"
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 2 and all(RunFolder(p).finished for p in runs)
    assert all((p / WORKER_LOG).is_file() for p in runs if p.name not in finished_first)
    assert len(finished_first) == 1 and again.stdout.count("skipped") == 1, "the short run, not the long one"
    assert "started" in again.stdout and "GPU 0" in again.stdout


def test_a_pool_with_a_failed_run_ends_saying_how_the_pool_goes_on(tiny_data_root, tmp_path, monkeypatch):
    """A worker's line names the worker's own command; the pool's line ends with the pool's."""
    import paddy.cli.run

    config, out = tmp_path / "c.toml", tmp_path / "runs"
    config.write_text('[defaults]\narch = "test_resnet"\nsize = 32\nbs = 8\n[[models]]\n[[models]]\nsize = 48\n')

    def fake_worker(*args):
        return lambda key: fake_job(tmp_path, f"entry{key[0]}", 0.1, key[0] == 1).argv

    monkeypatch.setattr(paddy.cli.run, "worker_command", fake_worker)
    command = ["run", str(config), "--data", str(tiny_data_root), "--out", str(out), "--gpus", "0,1"]
    result = CliRunner().invoke(app, command)
    *events, line = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (event,) = events
    assert event.startswith("GPU 1: entry 1: test_resnet-48x48-squish failed after ")
    assert event.endswith(" s: error: the loss became nan")
    assert line.startswith("error: 1 runs failed; the others are kept. entry 1: test_resnet-48x48-squish failed")
    again = f"paddy run {config} --data {tiny_data_root} --out {out} --bad-images fail --gpus 0,1"
    assert line.endswith(f"; when that is fixed, the pool goes on with `{again}`")
