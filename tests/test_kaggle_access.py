"""The real kaggle client, pointed at a recording server on loopback (tests/kaggle_server.py), and
the no-credentials and offline paths."""

import base64
import json
import shutil

import pytest
from kaggle_server import COMPETITIONS as SERVICE
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.kaggle.access import competition_folder, submit_csv
from paddy.runs.predictions import load_predictions


def test_submit_drives_the_real_client_with_the_right_arguments(credentials, kaggle_server, tmp_path):
    csv = tmp_path / "submission.csv"
    csv.write_text("image_id,label\n200001.jpg,blast\n")
    answer = submit_csv(csv, "paddy: resnet18 64x64 squish", "paddy-disease-classification")
    assert answer == "Successfully submitted to Paddy Doctor"
    (start, upload, create) = kaggle_server.requests
    start_body = json.loads(start[3])
    assert start[1] == f"{SERVICE}/StartSubmissionUpload"
    assert start_body["competitionName"] == "paddy-disease-classification"
    assert start_body["fileName"] == "submission.csv" and start_body["contentLength"] == csv.stat().st_size
    assert start[2]["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert upload[:2] == ("PUT", "/upload/blob") and upload[3] == csv.read_bytes()
    create_body = json.loads(create[3])
    assert create[1] == f"{SERVICE}/CreateSubmission"
    assert create_body["competitionName"] == "paddy-disease-classification"
    assert create_body["blobFileTokens"] == "blob-token"
    assert create_body["submissionDescription"] == "paddy: resnet18 64x64 squish"


def test_refused_upload_is_one_clear_error_and_nothing_is_created(credentials, kaggle_server, tmp_path, capsys):
    kaggle_server.refuse_uploads = True
    csv = tmp_path / "s.csv"
    csv.write_text("image_id,label\n")
    with pytest.raises(PaddyError, match="the upload to Kaggle failed .*kept at .*s.csv"):
        submit_csv(csv, "m", "comp")
    assert [path for _, path, _, _ in kaggle_server.requests] == [f"{SERVICE}/StartSubmissionUpload", "/upload/blob"]
    assert capsys.readouterr().out == ""


def test_forbidden_submission_is_one_clear_error(credentials, kaggle_server, tmp_path):
    kaggle_server.forbidden = True
    csv = tmp_path / "s.csv"
    csv.write_text("image_id,label\n")
    with pytest.raises(PaddyError, match="Kaggle refused the submission .*403.*kept at .*s.csv"):
        submit_csv(csv, "m", "comp")


def test_no_credentials_is_one_clear_error_without_kaggle_output(no_credentials, tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("image_id,label\n")
    with pytest.raises(PaddyError, match="KAGGLE_USERNAME and KAGGLE_KEY.*kept at .*s.csv"):
        submit_csv(csv, "m", "comp")
    assert capsys.readouterr().out == ""
    assert csv.exists()


def test_no_network_keeps_the_csv(credentials, tmp_path):
    csv = tmp_path / "s.csv"
    csv.write_text("image_id,label\n")
    with pytest.raises(PaddyError, match="cannot reach Kaggle .*kept at .*s.csv"):
        submit_csv(csv, "m", "comp")


def test_setup_uses_kaggle_input_when_there(tiny_data_root, tmp_path):
    kaggle_input = tmp_path / "input"
    shutil.copytree(tiny_data_root, kaggle_input / "paddy-disease-classification")
    found = competition_folder("paddy-disease-classification", tmp_path / "dl", kaggle_input=kaggle_input)
    assert found == kaggle_input / "paddy-disease-classification"


def test_setup_offline_is_one_clear_error(credentials, tmp_path):
    with pytest.raises(PaddyError, match="cannot download paddy-disease-classification .*offline"):
        competition_folder("paddy-disease-classification", tmp_path / "dl", kaggle_input=tmp_path / "none")
    assert not [p for p in (tmp_path / "dl").iterdir()]


runner = CliRunner()


def test_ensemble_then_submit_dry_run_end_to_end(finished_run, tiny_data, tiny_data_root, tmp_path):
    out = finished_run.run.path.parent
    ensembled = runner.invoke(app, ["ensemble", "--out", str(out), "--dest", str(tmp_path / "e.safetensors")])
    assert ensembled.exit_code == 0, ensembled.output
    assert "ensemble of 1 members" in ensembled.stdout and "test_resnet" in ensembled.stdout
    (member,) = load_predictions(tmp_path / "e.safetensors").meta["members"]
    assert (member["run"], member["arch"], member["weight"]) == (finished_run.run.path.name, "test_resnet", 1.0)
    result = runner.invoke(
        app,
        [
            "submit",
            "--dry-run",
            "--predictions",
            str(tmp_path / "e.safetensors"),
            "--data",
            str(tiny_data_root),
            "--submissions",
            str(tmp_path / "subs"),
        ],
    )
    assert result.exit_code == 0, result.output
    (csv,) = (tmp_path / "subs").glob("submission-*.csv")
    lines = csv.read_text().splitlines()
    assert lines[0] == "image_id,label"
    assert [line.split(",")[0] for line in lines[1:]] == tiny_data.test_ids
    assert all(line.split(",")[1] in tiny_data.classes for line in lines[1:])
    assert "dry run" in result.stdout and not (tmp_path / "subs" / "log.jsonl").exists()


def submit_run(finished_run, data_root, submissions):
    """`paddy submit` of the finished run's own predictions."""
    run_dir = finished_run.run.path
    options = ["--run", run_dir.name, "--out", run_dir.parent, "--data", data_root, "--submissions", submissions]
    return runner.invoke(app, ["submit", *map(str, options)])


def test_submit_without_credentials_exits_1_and_keeps_the_csv(no_credentials, finished_run, tiny_data_root, tmp_path):
    result = submit_run(finished_run, tiny_data_root, tmp_path / "subs")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "KAGGLE_USERNAME" in lines[0] and "Traceback" not in result.output
    assert list((tmp_path / "subs").glob("submission-*.csv"))


def test_submit_logs_what_kaggle_answered(credentials, kaggle_server, finished_run, tiny_data_root, tmp_path):
    result = submit_run(finished_run, tiny_data_root, tmp_path / "subs")
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in (tmp_path / "subs" / "log.jsonl").read_text().splitlines()]
    assert record["answer"] == "Successfully submitted to Paddy Doctor"
    assert record["message"].startswith("paddy: test_resnet 32x32 squish")
    assert json.loads(kaggle_server.requests[-1][3])["submissionDescription"] == record["message"]


SCORED = [
    {
        "ref": 2,
        "date": "2026-12-07T10:30:00.000Z",
        "description": "paddy: resnet18 64x64 squish | CV accuracy 0.9123",
        "fileName": "submission-20261207-103000.csv",
        "publicScore": "0.91500",
        "privateScore": "",
        "status": "COMPLETE",
    },
    {"ref": 1, "date": "2026-12-06T09:00:00Z", "description": "by hand", "fileName": "s.csv", "status": "PENDING"},
]


def row_of(stdout: str, text: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if text in line)
    return [cell.strip() for cell in line.strip("│ ").split("│")]


def test_scores_show_kaggles_scores_beside_each_message_for_the_competition_last_submitted_to(
    credentials, kaggle_server, tmp_path
):
    kaggle_server.submissions = SCORED
    subs = tmp_path / "subs"
    subs.mkdir()
    logged = [{"competition": "paddy-disease-classification"}, {"competition": "cassava-leaf-disease-classification"}]
    (subs / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in logged))
    command = ["kaggle", "scores", "--submissions", str(subs), "--most", "5"]
    result = CliRunner().invoke(app, command, terminal_width=200)
    assert result.exit_code == 0, result.output
    (asked,) = kaggle_server.calls("ListSubmissions")
    assert asked["competitionName"] == "cassava-leaf-disease-classification" and asked["pageSize"] == 5
    assert "your submissions to cassava-leaf-disease-classification" in result.stdout
    assert row_of(result.stdout, "CV accuracy") == [
        "2026-12-07 10:30",
        "paddy: resnet18 64x64 squish | CV accuracy 0.9123",
        "complete",
        "0.91500",
        "-",
    ], "no private score until the competition ends"
    assert row_of(result.stdout, "by hand")[2:] == ["pending", "-", "-"]


def test_scores_of_a_competition_without_submissions_or_refused_are_one_line(credentials, kaggle_server, tmp_path):
    command = ["kaggle", "scores", "--competition", "aptos2019-blindness-detection", "--submissions", str(tmp_path)]
    empty = CliRunner().invoke(app, command)
    assert empty.exit_code == 0 and empty.stdout.strip() == "no submissions to aptos2019-blindness-detection yet"
    kaggle_server.forbidden = True
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "Kaggle refused the submissions of aptos2019-blindness-detection" in refused.stderr


def test_scores_without_credentials_or_network_are_one_line(no_credentials, tmp_path):
    result = CliRunner().invoke(app, ["kaggle", "scores", "--submissions", str(tmp_path)])
    assert (
        result.exit_code == 1 and "KAGGLE_USERNAME and KAGGLE_KEY" in result.stderr and "Traceback" not in result.output
    )


def test_scores_offline_are_one_line(credentials, tmp_path):
    result = CliRunner().invoke(app, ["kaggle", "scores", "--submissions", str(tmp_path)])
    assert result.exit_code == 1 and "cannot reach Kaggle" in result.stderr and "Traceback" not in result.output
