import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.core.files import read_json, write_json
from paddy.runs.folder import RunFolder, matched_settings, settings_key
from paddy.runs.lookup import find_run, run_summary
from paddy.settings.entry import Keep, OptimizerChoice
from paddy.settings.legacy import SETTINGS_SINCE_0_2, Recorded, upgraded

PICTURES = ["confusion.png", "loss.png", "top_losses.png"]  # a single-label run's


def test_run_summary_of_a_finished_run(finished_run):
    summary = run_summary(finished_run.run)
    assert summary.config["arch"] == "test_resnet"
    assert summary.result["valid_error"] == pytest.approx(finished_run.valid_error)
    assert [p.name for p in summary.pictures] == PICTURES
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in summary.pictures)
    assert len(summary.history) == 2


def test_unfinished_run_has_no_result(finished_run, tmp_path):
    copy = shutil.copytree(finished_run.run.path, tmp_path / "copy")
    (copy / "predictions.safetensors").unlink()
    assert run_summary(RunFolder(copy)).result is None
    shown = CliRunner().invoke(app, ["show", str(copy)])
    best = finished_run.history.error_rate.min()
    assert f"unfinished: no predictions yet; best epoch so far: valid error_rate {best:.4f}" in shown.stdout


def test_find_run_by_name_or_path(finished_run):
    out = finished_run.run.path.parent
    assert find_run(finished_run.run.path.name, out) == finished_run.run
    assert find_run(str(finished_run.run.path), out / "elsewhere") == finished_run.run
    with pytest.raises(PaddyError, match="no run folder"):
        find_run("nope", out)


def test_show_prints_settings_history_and_pictures(finished_run):
    result = CliRunner().invoke(app, ["show", finished_run.run.path.name, "--out", str(finished_run.run.path.parent)])
    assert result.exit_code == 0, result.output
    assert "test_resnet" in result.stdout and "history" in result.stdout and "valid error_rate" in result.stdout
    assert all(f"picture: {finished_run.run.path / name}" in result.stdout.replace("\n", "") for name in PICTURES)
    rows = [[cell.strip() for cell in line.split("│")[1:3]] for line in result.stdout.splitlines() if "│" in line]
    settings = dict(row for row in rows if len(row) == 2)
    assert rows[0] == ["arch", "test_resnet"], "what the run trained first, the settings added since 0.2 after"
    assert settings["size"] == "32x32" and settings["lr"] == "0.01" and settings["trackers"] == "-"
    competition = "train_folder train_images, test_folder test_images, sample_file sample_submission.csv, kind single"
    competition += ", metric error_rate"
    assert settings["competition"] == competition, "a table of settings: its given keys, not a dict's repr"
    assert "None" not in result.stdout, "what a run left out is '-'"
    history = result.stdout[result.stdout.index("history") :]
    marked = [line.rstrip().endswith("│ *    │") for line in history.splitlines() if line.startswith("│")]
    assert marked == [row == finished_run.kept.epoch for row in range(len(finished_run.history))], "the kept epoch"
    assert "*: the epoch whose weights were kept" in history


def test_the_settings_of_an_older_run_come_in_the_order_it_recorded_them():
    upgraded_settings = upgraded(Recorded.settings, {"arch": "resnet18", "size": [64, 64]})
    assert list(upgraded_settings)[:2] == ["arch", "size"] and set(SETTINGS_SINCE_0_2) <= set(upgraded_settings)


def test_runs_of_paddy_0_2_still_match_in_the_same_folders(finished_run, tmp_path):
    """paddy 0.2 recorded none of the later settings, trained with fastai's Adam and kept the last epoch."""
    old = tmp_path / "old"
    shutil.copytree(finished_run.run.path, old)
    config = {k: v for k, v in read_json(old / "config.json").items() if k not in SETTINGS_SINCE_0_2}
    write_json(old / "config.json", config)
    data_root = Path(config["data"])
    entry_of_0_2 = replace(finished_run.entry, opt=OptimizerChoice.fastai, keep=Keep.last)
    assert RunFolder(old).matches(entry_of_0_2, data_root, None), "a paddy 0.2 run is still its entry's run"
    assert not RunFolder(old).matches(finished_run.entry, data_root, None), "today's default optimizer is another"
    assert not RunFolder(old).matches(replace(entry_of_0_2, folds=3, fold=1), data_root, "any")
    older = {k: v for k, v in matched_settings(entry_of_0_2, data_root).items() if k not in SETTINGS_SINCE_0_2}
    digest = hashlib.sha256(json.dumps(older, sort_keys=True).encode()).hexdigest()[:8]
    assert settings_key(entry_of_0_2, data_root) == digest, "the folder name paddy 0.2 gave the entry"
    assert settings_key(finished_run.entry, data_root) != digest
