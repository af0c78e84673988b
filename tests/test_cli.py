"""End-to-end runs of the `paddy` command on tiny images, and its one-line errors."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import assert_no_redrawn_bars
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.processes import RARE_COLLECTIONS
from paddy.runs.predictions import load_predictions

runner = CliRunner()
TINY_FLAGS = ["--arch", "resnet18", "--size", "32", "--bs", "8", "--epochs", "1", "--no-pretrained", "--seed", "0"]


def run_paddy(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_folders(out):
    """The run folders under `out` (not its hidden lock folder)."""
    return [p for p in out.iterdir() if not p.name.startswith(".")]


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_end_to_end_writes_a_run_folder(tiny_data_root, tmp_path):
    result = run_paddy(
        "train", "--data", str(tiny_data_root), "--out", str(tmp_path / "runs"), *TINY_FLAGS, "--one-cycle"
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders(tmp_path / "runs")
    assert run_dir.name.endswith("resnet18-32x32-squish")
    assert "valid error_rate" in result.stdout
    assert_no_redrawn_bars(result.stdout)
    preds = load_predictions(run_dir / "predictions.safetensors")
    assert len(preds.image_ids) == 8 and preds.meta["finetune"] is False


def test_train_without_data_uses_the_demo(tmp_path):
    result = run_paddy("train", "--out", str(tmp_path / "runs"), "--epochs", "1", "--size", "32")
    assert result.exit_code == 0, result.output
    assert "demo dataset" in result.stdout
    (run_dir,) = run_folders(tmp_path / "runs")
    preds = load_predictions(run_dir / "predictions.safetensors")
    assert preds.meta["arch"] == "resnet18" and preds.meta["pretrained"] is False and preds.meta["bs"] == 16


def test_train_from_config_entry_with_flag_override(tiny_data_root, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        f'data = "{tiny_data_root}"\n[defaults]\nbs = 8\nepochs = 1\npretrained = false\nfinetune = false\n'
        '[[models]]\narch = "resnet18"\nsize = 48\n\n[[models]]\narch = "resnet34"\nsize = 32\n'
    )
    result = run_paddy(
        "train",
        "--config",
        str(config),
        "--entry",
        "0",
        "--size",
        "32",
        "--item",
        "crop",
        "--out",
        str(tmp_path / "runs"),
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders(tmp_path / "runs")
    assert run_dir.name.endswith("resnet18-32x32-crop")


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--item", "stretch"], "'stretch' is not one of 'squish', 'crop', 'pad'"),
        (["--bad-images", "ignore"], "'ignore' is not one of 'fail', 'skip'"),
        (["--precision", "fp8"], "'fp8' is not one of 'auto', 'fp16', 'fp32'"),
        (["--accum", "two"], "'two' is not a whole number or 'auto'"),
        (["--keep", "worst"], "'worst' is not one of 'best', 'last'"),
    ],
)
def test_choices_are_validated_by_typer_before_anything_runs(tiny_data_root, tmp_path, flags, fragment):
    result = runner.invoke(app, ["train", "--data", str(tiny_data_root), "--out", str(tmp_path / "runs"), *flags])
    assert result.exit_code == 2 and fragment in " ".join(result.stderr.replace("│", " ").split())
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


@pytest.fixture
def broken_data(tiny_data_root, tmp_path):
    return shutil.copytree(tiny_data_root, tmp_path / "data")


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--arch", "resnet_18"], ["unknown arch 'resnet_18'", "resnet18"]),
        (["--size", "0"], ["size"]),
        (["--accum", "3"], ["accum: 3 does not divide bs 8"]),
        (["--accum", "0"], ["accum: 0 must be at least 1"]),
        (["--multi-target", "colour"], ["no extra column 'colour'", "variety"]),
        (["--mixup", "0"], ["mixup: 0.0 must be positive"]),
        (["--label-smoothing", "1"], ["label_smoothing: 1.0 must be in [0, 1)"]),
        (["--patience", "0"], ["patience: 0 must be at least 1"]),
        (["--multi-target", "variety", "--mixup", "0.4"], ["cannot be combined with multi_target"]),
    ],
)
def test_bad_options_are_one_line_errors(tiny_data_root, tmp_path, flags, fragments):
    result = run_paddy("train", "--data", str(tiny_data_root), "--out", str(tmp_path / "runs"), *TINY_FLAGS, *flags)
    assert_one_line_error(result, *fragments)
    assert not list(tmp_path.glob("runs/*/predictions.safetensors"))


@pytest.mark.parametrize(
    "breakage, fragment",
    [
        (lambda root: shutil.rmtree(root), "data folder not found"),
        (lambda root: [p.unlink() for p in (root / "train_images" / "blast").iterdir()], "has no images"),
        (lambda root: [p.unlink() for p in (root / "test_images").iterdir()], "test_images has no images"),
        (lambda root: (root / "train_images" / "blast" / "bad.jpg").write_bytes(b"junk"), "bad.jpg"),
    ],
)
def test_bad_data_is_a_one_line_error_and_nothing_is_written(broken_data, tmp_path, breakage, fragment):
    breakage(broken_data)
    result = run_paddy("train", "--data", str(broken_data), "--out", str(tmp_path / "runs"), *TINY_FLAGS)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "runs").exists()


def test_corrupt_images_can_be_skipped(broken_data, tmp_path):
    (broken_data / "train_images" / "blast" / "bad.jpg").write_bytes(b"junk")
    result = run_paddy(
        "train",
        "--data",
        str(broken_data),
        "--out",
        str(tmp_path / "runs"),
        *TINY_FLAGS,
        "--one-cycle",
        "--bad-images",
        "skip",
    )
    assert result.exit_code == 0, result.output


def test_unwritable_output_folder(tiny_data_root, tmp_path):
    (tmp_path / "file").write_text("")
    result = run_paddy("train", "--data", str(tiny_data_root), "--out", str(tmp_path / "file" / "runs"), *TINY_FLAGS)
    assert_one_line_error(result, "cannot write to output folder")


def test_multi_target_column_with_missing_values(broken_data, tmp_path):
    csv = broken_data / "train.csv"
    lines = csv.read_text().splitlines()
    lines[3] = ",".join(lines[3].split(",")[:2]) + ",,50"
    csv.write_text("\n".join(lines) + "\n")
    result = run_paddy(
        "train", "--data", str(broken_data), "--out", str(tmp_path / "runs"), *TINY_FLAGS, "--multi-target", "variety"
    )
    assert_one_line_error(result, "column 'variety' has 1 missing values (first on line 4)")


def test_error_text_in_brackets_is_printed_not_taken_as_markup(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[defaults]\ncolour = "red"\n[[models]]\narch = "resnet18"\n')
    result = run_paddy("train", "--config", str(config))
    assert_one_line_error(result, "[defaults]: unknown setting 'colour'")


def test_a_log_gets_the_epoch_table_once_and_tables_unwrapped(tiny_data_root, tmp_path):
    """Piped output (Kaggle's "Save & Run All", tee, CI): fastai's per-epoch lines once, no 80-column wrap."""
    data = shutil.copytree(tiny_data_root, tmp_path / ("a-long-folder-name-" * 5) / "data")
    out = tmp_path / "runs"
    result = run_paddy("train", "--data", str(data), "--out", str(out), *TINY_FLAGS, "--one-cycle")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("train_loss") == 1, "one line for the one epoch, no table header or repeat"
    assert_no_redrawn_bars(result.stdout)
    assert "training took" in result.stdout and "pictures and TTA" in result.stdout
    (run_dir,) = run_folders(out)
    shown = run_paddy("show", run_dir.name, "--out", str(out))
    assert len(str(data)) > 100 and any(str(data) in line for line in shown.stdout.splitlines())
    assert any(line.count("train_loss") and line.count("valid_loss") for line in shown.stdout.splitlines())


HEAVY = ("torch", "fastai", "timm")


def heavy_imports(*args: str) -> list[str]:
    """Which of torch, fastai and timm a `paddy` command line imports, run in a fresh interpreter."""
    script = (
        "import sys\nfrom paddy.cli.app import main\nsys.argv = ['paddy', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1].replace("'", '"'))


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["ensemble", "--help"], ["kaggle", "--help"]])
def test_help_imports_no_torch(args):
    """`paddy --help` (and every command's help) stays fast: torch, fastai and timm load only to train."""
    assert heavy_imports(*args) == []


def test_show_and_ensemble_import_no_torch(finished_run, tmp_path):
    out = str(finished_run.run.path.parent)
    assert heavy_imports("show", finished_run.run.name, "--out", out) == []
    assert heavy_imports("ensemble", "--out", out, "--dest", str(tmp_path / "e.safetensors")) == []
    assert (tmp_path / "e.safetensors").is_file(), "the ensemble was really made"
    submissions = tmp_path / "submissions"
    submit = ["submit", "--run", finished_run.run.name, "--out", out, "--dry-run", "--submissions", str(submissions)]
    assert heavy_imports(*submit) == []
    assert len(list(submissions.glob("submission-*.csv"))) == 1, "the submission was really written"


def test_kaggle_status_and_pull_import_no_torch():
    """What `paddy kaggle status` and `paddy kaggle pull` run, imported in a fresh interpreter."""
    script = "import sys, paddy.cli.kaggle, paddy.kaggle.kernels, paddy.kaggle.outputs\n"
    script += f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_the_paddy_command_collects_its_garbage_rarely(monkeypatch):
    """The console script sets the collector's thresholds before any command imports torch and fastai."""
    import gc

    import paddy.cli.app

    monkeypatch.setattr(paddy.cli.app, "app", lambda: None)
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        paddy.cli.app.main()
        assert gc.get_threshold() == RARE_COLLECTIONS
    finally:
        gc.set_threshold(*before)
