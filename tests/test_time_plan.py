"""`paddy run --time-budget`: the plan's arithmetic, the speeds it reads, and the budget refusal."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import tiny_entry
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.folds import entry_folds
from paddy.orchestration.time_plan import PlannedEntry, fit_to_budget, run_seconds, time_plan
from paddy.runs.folder import RunFolder
from paddy.runs.predictions import Predictions, save_predictions
from paddy.runs.probes import PROBES_FILE, ProbeRecord, Trial, load_probes, probe_key, save_probes
from paddy.settings.budget import parse_duration
from paddy.settings.config_file import load_config

BUDGET_MIB = 16280.0
CONFIG = """
[defaults]
bs = 8
size = 32
epochs = 2
pretrained = false
finetune = false
[[models]]
arch = "resnet18"
ensemble_weight = 2
[[models]]
arch = "resnet18"
item = "pad"
folds = 3
"""


@pytest.mark.parametrize(
    ("text", "seconds"), [("11h30m", 41400), ("90m", 5400), ("2h", 7200), ("45s", 45), ("1.5h", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0m", "-1h", "11:30", "5"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(PaddyError, match="time budget"):
        parse_duration(text)


def test_a_runs_time_by_hand():
    one_cycle = tiny_entry(epochs=4, finetune=False)  # 100 images: 80 train, 20 valid; 20 test; 10 images/s
    assert run_seconds(one_cycle, 100, 20, 10.0) == pytest.approx(4 * 80 / 10 + (4 * 20 + 5 * 20) / 30)
    fine_tune = tiny_entry(epochs=4, finetune=True)  # fine_tune adds its frozen epoch
    assert run_seconds(fine_tune, 100, 20, 10.0) == pytest.approx(5 * 80 / 10 + (5 * 20 + 5 * 20) / 30)
    fold = tiny_entry(epochs=4, finetune=False, folds=5, fold=1)  # 20 held out, TTA of them too
    assert run_seconds(fold, 100, 20, 10.0) == pytest.approx(4 * 80 / 10 + (4 * 20 + 5 * (20 + 20)) / 30)


def record_speed(out, entry, images_per_s: float) -> None:
    """A probe record of `entry` with its steps' speed, as probe-memory writes it."""
    trial = Trial(1, entry.bs, 900.0, True, {"images_per_s": images_per_s, "speed_of": "this CPU, not a GPU"})
    record = ProbeRecord(probe_key(entry, BUDGET_MIB), 0.1, "estimate", "cpu", [trial], "2026-11-25T00:00:00")
    path = out / PROBES_FILE
    save_probes(path, [*load_probes(path), record])


def planned_config(tmp_path, speeds=(10.0, 20.0)):
    (tmp_path / "c.toml").write_text(CONFIG)
    config = load_config(tmp_path / "c.toml")
    for entry, speed in zip(config.models, speeds):
        record_speed(tmp_path, entry, speed)
    return config


def test_the_plan_adds_each_entrys_runs_at_its_recorded_speed(tiny_data, tmp_path):
    config = planned_config(tmp_path)
    single, folds = time_plan(config, tiny_data, tmp_path, BUDGET_MIB)
    n, n_test = len(tiny_data.train_images), len(tiny_data.test_images)
    assert (single.runs_left, single.images_per_s) == (1, 10.0)
    assert single.seconds == pytest.approx(run_seconds(config.models[0], n, n_test, 10.0))
    assert folds.runs_left == 3 and folds.seconds == pytest.approx(3 * run_seconds(config.models[1], n, n_test, 20.0))
    assert single.speed_of == "this CPU, not a GPU"


def test_an_entry_without_a_timed_probe_is_named(tiny_data, tmp_path):
    config = planned_config(tmp_path, speeds=(10.0,))
    with pytest.raises(PaddyError, match="entry 1: no timed memory probe of resnet18 32x32 pad"):
        time_plan(config, tiny_data, tmp_path, BUDGET_MIB)


def planned(index: int, weight: float, seconds: float) -> PlannedEntry:
    return PlannedEntry(index, tiny_entry(ensemble_weight=weight), 1, 10.0, "cpu", seconds)


def test_over_the_budget_is_refused_or_the_lowest_weights_are_left_out():
    plan = [planned(0, 2.0, 3600), planned(1, 1.0, 3600), planned(2, 1.0, 3600), planned(3, 3.0, 3600)]
    assert fit_to_budget(plan, 4 * 3600, drop=False) == (plan, [])
    with pytest.raises(PaddyError, match="the plan takes about 4h00m, over the 2h30m time budget"):
        fit_to_budget(plan, 2.5 * 3600, drop=False)
    kept, dropped = fit_to_budget(plan, 2.5 * 3600, drop=True)
    assert [p.index for p in dropped] == [2, 1], "weight 1 first, the later entry of equal weight first"
    assert [p.index for p in kept] == [0, 3]
    with pytest.raises(PaddyError, match="no entry fits"):
        fit_to_budget(plan, 1800, drop=True)


def test_paddy_run_over_its_time_budget_trains_nothing(tiny_data_root, tmp_path):
    config = planned_config(tmp_path, speeds=(0.5, 0.5))  # minutes of training for the tiny data
    command = ["run", str(config.source), "--data", str(tiny_data_root), "--out", str(tmp_path), "--time-budget", "1m"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1 and "time plan" in result.stdout
    assert "over the 1m time budget" in result.stderr and "Traceback" not in result.output
    assert not list(tmp_path.glob("c-*")), "nothing trained"


def finish_fold_run(out, entry, data_root, folds_sha256: str) -> None:
    """A finished run of one fold of `entry`, as paddy run leaves it, held out of the folds file `folds_sha256`."""
    run = RunFolder(out / f"c-01-{entry.describe()}")
    run.start({**entry.to_json(), "seed_used": 0, "data": str(data_root), "folds_sha256": folds_sha256})
    run.write_result({"valid_error": 0.5, "train_seconds": 1.0, "predict_seconds": 1.0, "seed": 0})
    save_predictions(Predictions(np.full((1, 2), 0.5, np.float32), ("a.jpg",), ("x", "y")), run.predictions_path)


def test_fold_runs_held_out_of_other_folds_are_still_to_train(tiny_data_root, tmp_path):
    """The plan counts as done only the runs `paddy run` would skip: a fold's run on the folds file of this
    data. When the training images change, the folds file changes, and the old fold runs are not this data's."""
    data_root = tmp_path / "data"
    shutil.copytree(tiny_data_root, data_root)
    config = planned_config(tmp_path)
    folded = config.models[1]
    data = check_layout(data_root)
    drawn = entry_folds(tmp_path, data, folded.per_fold()[0])
    for one in folded.per_fold():
        finish_fold_run(tmp_path, one, data.root, drawn.sha256)
    assert time_plan(config, data, tmp_path, BUDGET_MIB)[1].runs_left == 0, "the same folds: nothing left"

    data.train_images[0].unlink()  # one training image fewer: another folds file
    changed = check_layout(data_root)
    assert time_plan(config, changed, tmp_path, BUDGET_MIB)[1].runs_left == 3
    assert len(list((tmp_path / "folds").glob("*.csv"))) == 2, "two folds files, one per version of the data"
