"""What paddy says: every message that misled a new user (issue 25), read as the user reads it, and the
help, version and shell completion of the command."""

from __future__ import annotations

import inspect
import io
import re
import subprocess
import sys

import pytest
from conftest import with_callbacks
from fastai.vision.all import Callback
from typer.testing import CliRunner

import paddy
from paddy.cli.app import app
from paddy.cli.output import console, kept_words, ordinal
from paddy.data.competition import check_layout, resolve_data
from paddy.data.demo_layouts import make_layout
from paddy.runs.predictions import Predictions, load_predictions, save_predictions

runner = CliRunner()
TINY = ["--arch", "test_resnet", "--size", "32", "--bs", "8", "--epochs", "3", "--one-cycle", "--no-pretrained"]


def paddy_says(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def run_folders(out):
    return sorted(p for p in out.iterdir() if not p.name.startswith("."))


class CtrlC(Callback):
    """Ctrl-C as the second epoch starts (the first is checkpointed)."""

    def before_epoch(self):
        if self.epoch == 1:
            raise KeyboardInterrupt


def test_the_demo_line_shows_the_settings_given_over_the_preset(tmp_path):
    (tmp_path / "file").write_text("")
    result = paddy_says("train", "--arch", "test_resnet", "--epochs", "2", "--out", tmp_path / "file" / "runs")
    (note,) = [line for line in result.stdout.splitlines() if "demo dataset" in line]
    assert "arch test_resnet (given)" in note and "epochs 2 (given)" in note and "bs 16," in note
    assert "resnet18" not in note and "epochs 4" not in note


def test_entry_without_config_is_refused():
    assert "--entry 1 picks an entry of a config: give --config too" in error_line(paddy_says("train", "--entry", "1"))


def test_resuming_a_finished_run_names_its_predictions_and_no_flag_train_lacks(finished_run):
    run = finished_run.run
    result = paddy_says("train", "--resume", run.name, "--out", run.path.parent)
    line = error_line(result)
    assert "has finished: nothing to resume" in line and str(run.predictions_path) in line
    assert "--force" not in line and "demo" not in result.stdout


def test_resuming_on_data_given_is_refused(finished_run, tiny_data_root):
    """A resumed run trains on its own data: --data would be ignored, so it is refused."""
    run = finished_run.run
    result = paddy_says("train", "--resume", run.name, "--out", run.path.parent, "--data", tiny_data_root)
    assert "--resume goes on with the run's own settings: drop --data" in error_line(result)


def test_an_interrupted_train_says_how_to_go_on_and_that_command_resumes(tiny_data_root, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    with monkeypatch.context() as patch:
        with_callbacks(patch, CtrlC())
        result = paddy_says("train", "--data", tiny_data_root, "--out", out, *TINY)
    assert result.exit_code == 130
    (run,) = run_folders(out)
    assert f"go on with: paddy train --resume {run.name} --out {out}" in result.stderr
    resumed = paddy_says("train", "--resume", run.name, "--out", out)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {run} with its own settings, on the data it trained on: {tiny_data_root}" in resumed.stdout
    assert "demo" not in resumed.stdout and len(load_predictions(run / "predictions.safetensors").image_ids) == 8


def test_an_interrupted_paddy_run_numbers_entries_from_0_and_says_how_to_go_on(tiny_data_root, tmp_path, monkeypatch):
    config, out = tmp_path / "one.toml", tmp_path / "runs"
    config.write_text(
        '[defaults]\nbs = 8\nsize = 32\nepochs = 3\npretrained = false\n[[models]]\narch = "test_resnet"\n'
    )
    with_callbacks(monkeypatch, CtrlC())
    result = paddy_says("run", config, "--data", tiny_data_root, "--out", out, "--force")
    assert result.exit_code == 130
    assert "entry 0 of 0-0: test_resnet-32x32-squish" in result.stdout
    (run,) = run_folders(out)
    assert run.name.startswith("one-00-"), "the folder numbers the entry as the progress line does"
    go_on = f"go on with: paddy run {config} --data {tiny_data_root} --out {out} --bad-images fail"
    assert go_on in result.stderr and "--force" not in result.stderr


def test_no_finished_runs_names_the_folder_and_the_command_first(tmp_path):
    line = error_line(paddy_says("ensemble", "--out", tmp_path / "empty"))
    assert f"no finished runs in {tmp_path / 'empty'}: train some there first" in line
    assert f"paddy train --out {tmp_path / 'empty'}" in line


def test_no_ensemble_to_submit_names_the_file_and_the_command_first(tmp_path):
    line = error_line(paddy_says("submit", "--dry-run", "--out", tmp_path))
    assert f"no predictions file at {tmp_path / 'ensemble.safetensors'}" in line
    assert f"paddy ensemble --out {tmp_path}" in line and "--run NAME" in line


def test_data_one_folder_too_high_says_did_you_mean(tiny_data_root, tmp_path):
    line = error_line(paddy_says("train", "--data", tiny_data_root.parent, "--out", tmp_path))
    assert f"did you mean {tiny_data_root}?" in line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_paths_whole_at_120_columns(monkeypatch):
    """rich would wrap a long line at the terminal's width, mid-path: paddy's consoles never break a line."""
    monkeypatch.setattr(sys, "stdout", Terminal())
    monkeypatch.setenv("COLUMNS", "120")
    terminal = console()
    assert terminal.width == 120
    path = (
        "/kaggle/working/"
        + "a-long-folder-name/" * 8
        + "20261201-convnext_small-224x224-squish/predictions.safetensors"
    )
    terminal.print(f"resnet18 accum=1: valid error_rate [bold]0.1234[/bold]; predictions: {path}")
    assert path in re.sub(r"\x1b\[[0-9;]*m", "", sys.stdout.getvalue())


def test_the_torch_jit_warning_is_hidden(tiny_data_root, tmp_path):
    """A command that imports fastai (training) prints its one line, not torch's FutureWarning."""
    command = [sys.executable, "-m", "paddy", "train", "--resume", "nope", "--out", tmp_path]
    result = subprocess.run([*map(str, command)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().startswith("error: no run folder 'nope'"), result.stderr
    assert "Warning" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_predict_keeps_earlier_predictions_unless_forced(finished_run, tiny_data, tmp_path):
    dest = tmp_path / "p.safetensors"
    predict = ["predict", finished_run.run.path, "--images", tiny_data.root / "test_images", "--dest", dest, "--no-tta"]
    assert paddy_says(*predict).exit_code == 0
    first = dest.stat().st_mtime_ns
    line = error_line(paddy_says(*predict))
    assert f"{dest} holds earlier predictions: give another --dest, or --force to replace them" in line
    assert dest.stat().st_mtime_ns == first
    assert paddy_says(*predict, "--force").exit_code == 0 and dest.stat().st_mtime_ns != first


def test_demo_data_is_recorded_as_demo_and_real_data_is_not(tiny_data, tmp_path):
    assert resolve_data(None).identity()["demo"] is True
    assert check_layout(make_layout("cassava", tmp_path / "cassava")).identity()["demo"] is True
    assert "demo" not in tiny_data.identity()


def test_submit_refuses_predictions_of_the_demo_data(
    credentials, kaggle_server, finished_run, tiny_data_root, tmp_path
):
    preds = load_predictions(finished_run.predictions_path)
    demo = save_predictions(
        Predictions(preds.probs, preds.image_ids, preds.vocab, {**preds.meta, "demo": True}), tmp_path / "demo.st"
    )
    submit = ["submit", "--predictions", demo, "--data", tiny_data_root, "--submissions", tmp_path / "subs"]
    line = error_line(paddy_says(*submit))
    assert "was predicted on paddy's demo data, not on paddy-disease-classification's" in line
    assert not kaggle_server.requests, "nothing was sent"
    assert paddy_says(*submit, "--dry-run").exit_code == 0, "a dry run of the demo is how to try submit"


def test_version():
    result = paddy_says("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"paddy {paddy.__version__}"


@pytest.mark.parametrize("args", [["--version"], ["configs"]])
def test_version_and_configs_import_no_torch(args):
    script = "import sys\nfrom paddy.cli.app import main\nsys.argv = ['paddy', *sys.argv[1:]]\ntry:\n    main()\n"
    script += "except SystemExit:\n    pass\nprint('torch' in sys.modules, 'fastai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "False False", result.stderr


def test_shell_completion_installs_and_completes_commands_options_and_built_in_configs():
    assert "--install-completion" in paddy_says("--help").stdout
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="paddy")
    assert script.exit_code == 0 and "_PADDY_COMPLETE=complete_bash" in script.stdout

    def completes(words: str) -> list[str]:
        env = {"_PADDY_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        return runner.invoke(app, [], prog_name="paddy", env=env).stdout.split()

    assert completes("paddy tr") == ["train"]
    assert "--arch" in completes("paddy train --ar")
    assert completes("paddy run ti") == ["tiny"]


def every_help() -> dict[tuple[str, ...], str]:
    """The --help text of paddy and of every command and group, by its words."""
    from typer.main import get_command

    def texts(command, words: tuple[str, ...]) -> dict[tuple[str, ...], str]:
        found = {words: runner.invoke(app, [*words, "--help"], env={"COLUMNS": "120"}).stdout}
        for name, sub in getattr(command, "commands", {}).items():
            found.update(texts(sub, (*words, name)))
        return found

    return texts(get_command(app), ())


def test_no_help_shows_a_bool_metavar():
    texts = every_help()
    assert len(texts) > 15 and ("kaggle", "push") in texts
    assert not [words for words, text in texts.items() if "<bool>" in text]


@pytest.mark.parametrize("words", [(), ("kaggle",)])
def test_a_groups_command_list_shows_each_summary_on_one_line(words):
    """Wide enough for every summary, each command's first docstring paragraph is one line of the list."""
    from typer.main import get_command

    group = get_command(app)
    for word in words:
        group = group.commands[word]
    text = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "300"}).stdout
    rows = {line.split("│")[1].split(maxsplit=1)[0]: line for line in text.splitlines() if line.startswith("│ ")}
    for name, command in group.commands.items():
        summary = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].split())
        assert summary in rows[name], (name, summary)


def test_train_help_groups_its_options_in_panels():
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"}).stdout
    panels = re.findall(r"╭─ (\w+) ─", text)
    assert {"Data", "Model", "Training", "Augmentation", "Output"} <= set(panels)
    data = text[text.index("╭─ Data ─") : text.index("╰", text.index("╭─ Data ─"))]
    assert "--data" in data and "--competition" in data and "--arch" not in data


@pytest.mark.parametrize(
    "command, ignored",
    [
        ("lr-find", ["--epochs", "--lr", "--ema", "--tracker"]),
        ("probe-memory", ["--epochs", "--accum", "--seed", "--folds"]),
    ],
)
def test_lr_find_and_probe_memory_list_no_option_they_ignore(command, ignored):
    def options(command: str) -> set[str]:
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).stdout
        return set(re.findall(r"^│ (--[a-z-]+)", text, re.MULTILINE))

    assert {"--arch", "--bs", "--size"} <= options(command)
    assert not options(command) & set(ignored) and set(ignored) <= options("train")


def test_an_ignored_option_is_still_taken_so_a_train_command_line_runs(tiny_data_root, tmp_path):
    """Swap `train` for `probe-memory` in a command line: --epochs is not listed, but it is no error."""
    out = tmp_path / "file"
    out.write_text("")
    result = runner.invoke(app, ["probe-memory", "--data", str(tiny_data_root), "--epochs", "3", "--out", str(out)])
    assert "No such option" not in result.output and "cannot write" in error_line(result)


def test_work_the_library_reports_is_drawn_as_a_bar_on_a_terminal_and_gone_at_its_end():
    from rich.console import Console

    from paddy.cli.output import LibraryProgress

    terminal = Console(file=io.StringIO(), force_terminal=True, width=100)
    bars = LibraryProgress(terminal)
    bars("checking images", 64, 128)
    assert bars.what == "checking images"
    bars("checking images", 128, 128)
    assert bars.what is None, "the bar ends with its work"
    drawn = terminal.file.getvalue()
    assert "checking images" in drawn and "128/128" in drawn
    log = Console(file=io.StringIO(), force_terminal=False)
    LibraryProgress(log)("checking images", 128, 128)
    assert log.file.getvalue() == "", "a log shows no bar, not even an empty line"


def test_every_command_draws_what_the_library_reports(monkeypatch):
    """reports_errors, which every command goes through, sets the reporter for the command's duration."""
    from paddy.cli.output import LibraryProgress, reports_errors
    from paddy.core import progress

    seen = []
    reports_errors(lambda: seen.append(progress._reporter.get()))()
    assert isinstance(seen[0], LibraryProgress) and progress._reporter.get() is None


def test_which_epoch_a_run_kept_is_said_only_where_there_was_a_choice():
    kept = {"keep": "best", "kept_epoch": 2, "epochs_run": 5, "stopped_early": True}
    assert kept_words(kept) == " (best of 5 epochs: the 3rd, stopped early)", "history's 3rd row"
    one_epoch = {**kept, "kept_epoch": 0, "epochs_run": 1, "stopped_early": False}
    assert kept_words(one_epoch) == "", "not (best of 1 epochs: the 1st)"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th",
    ]  # fmt: skip
    assert kept_words({"keep": "last", "kept_epoch": None, "epochs_run": 3}) == "", "a run from before runs said so"
