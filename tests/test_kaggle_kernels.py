"""`paddy kaggle push/status/pull` and `paddy submit --kernel`: the real kaggle client against the
recording Kaggle of tests/kaggle_server.py. What is sent, what is refused before anything is sent,
and what is on disk after a pull."""

from __future__ import annotations

import io
import json
import shutil
import types
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.kaggle.access import upload_private_dataset
from paddy.kaggle.kernels import KERNEL_FILE, NOTEBOOK_SCRIPT, follow_kernel, script_text
from paddy.kaggle.outputs import merge_runs
from paddy.runs.folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"
runner = CliRunner()


@pytest.fixture
def kaggle(credentials, kaggle_server):
    """A recording Kaggle where alice has run `paddy kaggle pack-libs`."""
    kaggle_server.datasets.add("alice/paddy-libs")
    return kaggle_server


def paddy(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    """The one line a refused command prints (and no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_push_sends_a_private_gpu_notebook_with_the_competition_and_libs(kaggle, tmp_path):
    result = paddy("kaggle", "push", TINY, "--gpu", "t4x2", "--folder", tmp_path)
    assert result.exit_code == 0, result.output
    (sent,) = kaggle.calls("SaveKernel")
    assert sent["slug"] == "alice/paddy-tiny" and sent["newTitle"] == "paddy tiny"
    assert sent["enableGpu"] is True and sent["machineShape"] == "NvidiaTeslaT4"  # Kaggle's "GPU T4 x2"
    assert sent["enableInternet"] is True and sent["isPrivate"] is True
    assert sent["datasetDataSources"] == ["alice/paddy-libs"]
    assert sent["competitionDataSources"] == ["paddy-disease-classification"]
    assert (sent["language"], sent["kernelType"]) == ("python", "script")
    script = tmp_path / "paddy-tiny" / KERNEL_FILE
    assert sent["text"] == script.read_text()
    settings = settings_of(sent["text"])
    assert settings["config"] == TINY.read_text() and settings["mode"] == "train" and settings["gpu_pool"] is True
    assert "https://www.kaggle.com/code/alice/paddy-tiny" in result.stdout
    assert "paddy kaggle pull alice/paddy-tiny" in result.stdout


def settings_of(script: str) -> dict:
    """The SETTINGS a pushed script carries (running it as a module, not as __main__)."""
    namespace: dict = {"__name__": "pushed"}
    exec(compile(script, KERNEL_FILE, "exec"), namespace)
    return namespace["SETTINGS"]


def test_push_without_gpu_or_internet(kaggle, tmp_path):
    result = paddy(
        "kaggle", "push", TINY, "--gpu", "none", "--no-internet", "--title", "tiny on cpu", "--folder", tmp_path
    )
    assert result.exit_code == 0, result.output
    (sent,) = kaggle.calls("SaveKernel")
    assert sent["enableGpu"] is False and "machineShape" not in sent and sent["enableInternet"] is False
    assert sent["slug"] == "alice/tiny-on-cpu"


def test_p100_is_asked_for_with_a_warning_that_kaggle_retired_it(kaggle, tmp_path):
    result = paddy("kaggle", "push", TINY, "--gpu", "p100", "--folder", tmp_path)
    assert result.exit_code == 0, result.output
    assert kaggle.calls("SaveKernel")[0]["machineShape"] == "NvidiaTeslaP100" and "retired" in result.stderr


def test_hub_weights_with_the_internet_off_are_refused_before_anything_is_sent(kaggle, tmp_path):
    config = tmp_path / "pretrained.toml"
    config.write_text('[[models]]\narch = "resnet18"\n')
    result = paddy("kaggle", "push", config, "--no-internet", "--folder", tmp_path / "kernels")
    assert "entry 1 (resnet18) needs hub weights" in error_line(result)
    assert not kaggle.requests and not (tmp_path / "kernels").exists()


def test_push_without_the_libs_dataset_says_to_pack_them_first(credentials, kaggle_server, tmp_path):
    result = paddy("kaggle", "push", TINY, "--folder", tmp_path)
    assert "paddy kaggle pack-libs" in error_line(result)
    assert not kaggle_server.calls("SaveKernel")


def test_push_without_credentials_is_one_line_and_builds_nothing(no_credentials, tmp_path):
    result = paddy("kaggle", "push", TINY, "--folder", tmp_path / "kernels")
    assert "KAGGLE_USERNAME" in error_line(result)
    assert not (tmp_path / "kernels").exists()


def test_refused_credentials_are_one_line(kaggle):
    kaggle.forbidden = True
    line = error_line(paddy("kaggle", "status", "alice/paddy-tiny"))
    assert line.endswith(
        "cannot read the status of alice/paddy-tiny: Cannot access kernel 'alice/paddy-tiny' "
        "(Permission 'kernels.get' was denied)"
    )


def test_status_polls_until_the_notebook_ends(kaggle):
    kaggle.statuses = ["QUEUED", "RUNNING", "RUNNING", "COMPLETE"]
    seen = []
    status = follow_kernel("alice/paddy-tiny", wait=True, interval_s=0, on_status=lambda s: seen.append(s.state))
    assert status.state == "complete" and seen == ["queued", "running", "running", "complete"]
    asked = kaggle.calls("GetKernelSessionStatus")
    assert len(asked) == 4 and asked[0] == {"userName": "alice", "kernelSlug": "paddy-tiny"}


def test_status_without_wait_asks_once(kaggle):
    kaggle.statuses = ["RUNNING", "COMPLETE"]
    result = paddy("kaggle", "status", "alice/paddy-tiny")
    assert result.exit_code == 0 and "alice/paddy-tiny: running" in result.stdout
    assert len(kaggle.calls("GetKernelSessionStatus")) == 1


def test_a_failed_notebook_is_exit_1_with_kaggles_reason(kaggle):
    kaggle.statuses, kaggle.failure_message = ["ERROR"], "CUDA out of memory"
    assert "alice/paddy-tiny failed: CUDA out of memory" in error_line(paddy("kaggle", "status", "alice/paddy-tiny"))


def notebook_output(tmp_path: Path, run: RunFolder) -> Path:
    """A notebook's /kaggle/working: a finished run, an unfinished one, submission.csv."""
    working = tmp_path / "working"
    shutil.copytree(run.path, working / "runs" / run.name)
    (working / "runs" / "tiny-01-unfinished").mkdir(parents=True)
    (working / "runs" / "tiny-01-unfinished" / "config.json").write_text("{}")
    (working / "submission.csv").write_text("image_id,label\n")
    return working


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pull_adds_finished_runs_and_keeps_the_rest_in_the_output(kaggle, finished_run, tmp_path):
    kaggle.serve_output(notebook_output(tmp_path, finished_run.run))
    out = tmp_path / "runs"
    result = paddy("kaggle", "pull", "alice/paddy-tiny", "--out", out, "--folder", tmp_path / "kaggle")
    assert result.exit_code == 0, result.output
    name = finished_run.run.name
    assert [p.name for p in out.iterdir()] == [name]
    assert tree(out / name) == tree(finished_run.run.path)
    (output,) = (tmp_path / "kaggle" / "paddy-tiny").iterdir()
    assert (output / "submission.csv").is_file() and (output / "paddy-tiny.log").is_file()
    assert (output / "runs" / "tiny-01-unfinished").is_dir() and not (output / "runs" / name).exists()
    assert "unfinished" in result.stdout and "added to" in result.stdout
    assert not list((tmp_path / "kaggle" / "paddy-tiny").glob(".*"))  # no staging left behind


def test_pull_never_replaces_a_local_run(kaggle, finished_run, tmp_path):
    kaggle.serve_output(notebook_output(tmp_path, finished_run.run))
    mine = tmp_path / "runs" / finished_run.run.name
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    result = paddy("kaggle", "pull", "alice/paddy-tiny", "--out", tmp_path / "runs", "--folder", tmp_path / "k")
    assert result.exit_code == 0, result.output
    assert tree(mine) == {"notes.txt": b"mine"} and "yours kept" in result.stdout


def test_pull_of_a_running_notebook_downloads_nothing(kaggle, tmp_path):
    kaggle.statuses = ["RUNNING"]
    result = paddy("kaggle", "pull", "alice/paddy-tiny", "--out", tmp_path / "runs", "--folder", tmp_path / "k")
    assert "is running" in error_line(result)
    assert not kaggle.calls("ListKernelSessionOutput") and not (tmp_path / "runs").exists()


def test_a_damaged_pulled_run_is_refused(finished_run, tmp_path):
    pulled = tmp_path / "pulled"
    shutil.copytree(finished_run.run.path, pulled / finished_run.run.name)
    RunFolder(pulled / finished_run.run.name).predictions_path.write_bytes(b"not safetensors")
    with pytest.raises(PaddyError, match="predictions"):
        merge_runs(pulled, tmp_path / "runs")
    assert not list((tmp_path / "runs").iterdir())


def test_datasets_are_created_private_then_versioned(credentials, kaggle_server, tmp_path):
    from paddy.kaggle.access import kaggle_api

    (tmp_path / "a.whl").write_bytes(b"wheel")
    api = kaggle_api()
    assert upload_private_dataset(api, tmp_path, "alice/paddy-libs", "paddy libs", "v1").startswith("created")
    assert upload_private_dataset(api, tmp_path, "alice/paddy-libs", "paddy libs", "v2").startswith("new version")
    (created,) = kaggle_server.calls("CreateDataset")
    assert created["isPrivate"] is True and created["slug"] == "paddy-libs" and created["ownerSlug"] == "alice"
    (versioned,) = kaggle_server.calls("CreateDatasetVersion")
    assert versioned["body"]["versionNotes"] == "v2"
    assert kaggle_server.uploads() == [b"wheel", b"wheel"]  # the metadata file is not uploaded


def test_push_inference_uploads_the_models_privately_and_turns_the_internet_off(kaggle, finished_run, tmp_path):
    out = finished_run.run.path.parent
    result = paddy("kaggle", "push", "--inference", finished_run.run.name, "--out", out, "--folder", tmp_path)
    assert result.exit_code == 0, result.output
    (dataset,) = kaggle.calls("CreateDataset")
    (sent,) = kaggle.calls("SaveKernel")
    models = f"alice/{dataset['slug']}"
    assert dataset["isPrivate"] is True and sent["datasetDataSources"] == ["alice/paddy-libs", models]
    assert sent["enableInternet"] is False and sent["enableGpu"] is True
    (upload,) = kaggle.uploads()
    names = zipfile.ZipFile(io.BytesIO(upload)).namelist()
    assert "model.safetensors" in names and "checkpoint.pt" not in names
    assert settings_of(sent["text"])["runs"] == [finished_run.run.name]
    assert f"paddy submit --kernel {sent['slug']} --version 2" in result.stdout


def test_submit_kernel_sends_a_code_submission_and_logs_it(kaggle, tmp_path):
    result = paddy("submit", "--kernel", "alice/paddy-tiny-inference", "--version", 3, "--submissions", tmp_path)
    assert result.exit_code == 0, result.output
    (sent,) = kaggle.calls("CreateCodeSubmission")
    assert sent == {
        "competitionName": "paddy-disease-classification",
        "kernelOwner": "alice",
        "kernelSlug": "paddy-tiny-inference",
        "kernelVersion": 3,
        "fileName": "submission.csv",
        "submissionDescription": "paddy: notebook alice/paddy-tiny-inference version 3",
    }
    (record,) = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert record["answer"] == "Your code submission was queued"


def test_submit_kernel_refuses_a_csv_option(kaggle):
    assert "--kernel" in error_line(paddy("submit", "--kernel", "alice/x-inference", "--dry-run"))
    assert not kaggle.requests


def test_the_pushed_script_carries_its_settings_and_compiles():
    settings = {"mode": "train", "competition": "c", "config": 'x = "a"\n', "config_name": "x.toml", "gpu_pool": True}
    text = script_text({**settings, "trained_on": None})
    assert settings_of(text) == {**settings, "trained_on": None}


def notebook_script() -> types.ModuleType:
    """The notebook's script, package data that paddy never imports, loaded as a module of its own."""
    module = types.ModuleType("paddy_kernel")
    exec(compile(NOTEBOOK_SCRIPT.read_text(), str(NOTEBOOK_SCRIPT), "exec"), module.__dict__)
    return module


def test_the_notebook_installs_offline_with_kaggles_torch_pinned(monkeypatch, tmp_path):
    from importlib.metadata import version

    kaggle_kernel_script = notebook_script()
    seen = []

    def run(command):
        pins = Path(command[command.index("--constraint") + 1]).read_text()
        seen.append((command, pins))

    monkeypatch.setattr(kaggle_kernel_script, "run", run)
    kaggle_kernel_script.install_paddy(tmp_path)
    ((command, pins),) = seen
    assert "--no-index" in command and command[command.index("--find-links") + 1] == str(tmp_path)
    assert pins.splitlines() == [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]


def test_a_notebook_without_its_dataset_stops_with_one_line(tmp_path):
    script = notebook_script()

    (tmp_path / "paddy-disease-classification").mkdir()
    with pytest.raises(SystemExit, match="nothing under .* holds paddy_trainer-.*whl"):
        script.find_folder(tmp_path, script.PADDY_WHEELS)
