"""The configs that ship with paddy: in the wheel, listed by `paddy configs`, and run by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.settings.builtin_configs import builtin_configs, resolve_config
from paddy.settings.config_file import load_config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_the_shipped_configs_are_valid_and_a_clone_still_has_them_under_configs():
    shipped = builtin_configs()
    assert {"tiny", "course-ensemble", "folds-demo"} <= {c.name for c in shipped}
    for config in shipped:
        assert load_config(config.path).models and config.description
        assert (ROOT / "configs" / config.path.name).read_text() == config.path.read_text()


def test_a_bare_name_is_the_built_in_config_and_a_file_comes_first(tmp_path, monkeypatch):
    (tiny,) = [c for c in builtin_configs() if c.name == "tiny"]
    assert load_config(Path("tiny")).source == tiny.path and load_config(Path("tiny")).name == "tiny"
    monkeypatch.chdir(tmp_path)
    Path("tiny").write_text('[[models]]\narch = "resnet18"\n')
    assert resolve_config(Path("tiny")) == Path("tiny"), "a file of that name is the user's own"


def test_paddy_configs_lists_every_name_with_its_description():
    result = runner.invoke(app, ["configs"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for config in builtin_configs():
        (line,) = [line for line in result.stdout.splitlines() if f" {config.name} " in line]
        assert config.description[:40] in line
    assert "paddy run tiny" in result.stdout


def test_paddy_run_finds_a_built_in_config_by_name(tiny_data_root):
    """Past loading the config (the shard is checked after it), so `tiny` was found."""
    result = runner.invoke(app, ["run", "tiny", "--data", str(tiny_data_root), "--shard", "3/2"])
    assert result.exit_code == 1 and "--shard '3/2': I must be one of 1..N" in result.stderr, result.output


def test_an_unknown_config_name_is_one_line_listing_the_built_in_names():
    result = runner.invoke(app, ["run", "tinny"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "no config file tinny and no built-in config of that name" in lines[0]
    assert all(config.name in lines[0] for config in builtin_configs())


def test_a_missing_configs_path_names_the_built_in_way(tmp_path, monkeypatch):
    """After `pip install` there is no configs/ folder: the README's old path says to give the name."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "configs/tiny.toml"])
    assert result.exit_code == 1 and "the built-in config 'tiny' is run by its name alone" in result.stderr


def test_the_wheel_has_the_built_in_configs(tmp_path):
    """A wheel built from a copy of the sources (no build isolation: nothing downloaded) holds every config."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    wheel = tmp_path / "dist" / result.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"paddy/configs/{c.path.name}" for c in builtin_configs()} <= names


def test_a_kaggle_notebook_trains_a_built_in_config_given_by_name():
    from paddy.kaggle.kernels import KaggleGpu, training_kernel

    kernel = training_kernel(Path("tiny"), "alice", None, KaggleGpu.none, False, None)
    (tiny,) = [c for c in builtin_configs() if c.name == "tiny"]
    assert kernel.settings["config"] == tiny.path.read_text() and kernel.settings["config_name"] == "tiny.toml"
