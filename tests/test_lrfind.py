import json

from conftest import KAGGLE_GPU_MIB, assert_no_redrawn_bars, tiny_entry
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.training.lr_find import find_lr


def test_lr_find_saves_plot_and_suggestions(tiny_data, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = find_lr(tiny_entry(bs=8, accum=2), tiny_data, tmp_path / "runs", KAGGLE_GPU_MIB, num_workers=0)
    assert not list((tmp_path / "cwd").iterdir()), "fastai's temporary weights stay out of the working folder"
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.suggestions) == {"minimum", "steep", "valley", "slide"}
    assert all(1e-8 < lr < 10 for lr in result.suggestions.values())
    assert json.loads((result.run.path / "lr_find.json").read_text()) == result.suggestions
    assert json.loads((result.run.path / "config.json").read_text())["step_bs"] == 4
    assert not (result.run.path / "predictions.safetensors").exists()


def test_lr_find_command_prints_suggestions_without_bars(tiny_data_root, tmp_path):
    flags = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--accum", "2", "--no-pretrained", "--seed", "0"]
    result = CliRunner().invoke(
        app, ["lr-find", "--data", str(tiny_data_root), "--out", str(tmp_path), *flags], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "lr_find test_resnet-32x32-squish" in result.stdout and "valley" in result.stdout
    (plot,) = tmp_path.glob("*/lr_find.png")
    assert f"plot: {plot}" in result.stdout.replace("\n", "")
    assert_no_redrawn_bars(result.stdout)
