import json

import numpy as np
import pandas as pd
import pytest

from paddy.core.errors import PaddyError
from paddy.kaggle.submit import default_message, log_submission, predictions_source, read_sample, write_submission
from paddy.runs.predictions import Predictions

VOCAB = ("blast", "hispa", "normal")


@pytest.fixture
def sample_csv(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_text("image_id,label\n200002.jpg,\n200001.jpg,\n200003.jpg,\n")
    return path


def preds(ids=("200001.jpg", "200002.jpg", "200003.jpg")):
    probs = np.eye(3, dtype=np.float32)[: len(ids)]
    meta = {"arch": "resnet18", "size": [64, 64], "item": "squish", "accum": 1, "valid_error": 0.1, "run": "r1"}
    return Predictions(probs, tuple(ids), VOCAB, meta)


def test_submission_follows_the_sample_order_and_header(sample_csv, tmp_path):
    made = write_submission(preds(), sample_csv, tmp_path / "out" / "s.csv", None)
    written = pd.read_csv(made.path)
    assert list(written.columns) == ["image_id", "label"]
    assert list(written.image_id) == ["200002.jpg", "200001.jpg", "200003.jpg"]
    assert list(written.label) == ["hispa", "blast", "normal"]
    assert made.rows == 3 and made.message == "paddy: resnet18 64x64 squish | valid error_rate 0.1000"


def test_missing_prediction_names_the_row(sample_csv, tmp_path):
    with pytest.raises(PaddyError, match="no prediction for 200003.jpg .*row 4"):
        write_submission(preds(ids=("200001.jpg", "200002.jpg")), sample_csv, tmp_path / "s.csv", None)
    assert not (tmp_path / "s.csv").exists()


def test_sample_must_have_two_columns(tmp_path):
    bad = tmp_path / "sample_submission.csv"
    bad.write_text("image_id\n1.jpg\n")
    with pytest.raises(PaddyError, match="two columns"):
        read_sample(bad)


def test_default_message_lists_ensemble_members_with_weights():
    members = [
        {"arch": "convnext_large", "size": "320x240", "item": "crop", "weight": 1.0},
        {"arch": "vit_large_patch16_224", "size": "224x224", "item": "squish", "weight": 2.0},
    ]
    ensemble = Predictions(np.eye(3, dtype=np.float32), ("a", "b", "c"), VOCAB, {"members": members})
    assert default_message(ensemble) == "paddy: convnext_large 320x240 crop; vit_large_patch16_224 224x224 squish w2"


def test_the_message_carries_the_ensembles_cv_score():
    members = [{"arch": "resnet18", "size": "64x64", "item": "squish", "weight": 1.0}]
    cv = {"error": 0.05, "log_loss": 0.1234}
    ensemble = Predictions(np.eye(3, dtype=np.float32), ("a", "b", "c"), VOCAB, {"members": members, "cv": cv})
    assert default_message(ensemble) == "paddy: resnet18 64x64 squish | CV error 0.0500, log loss 0.1234"


def test_one_runs_message_carries_its_validation_score_on_its_metric():
    run = Predictions(
        np.eye(3, dtype=np.float32), ("a", "b", "c"), VOCAB, {**preds().meta, "kind": "regression", "metric": "rmse"}
    )
    assert default_message(run) == "paddy: resnet18 64x64 squish | valid rmse 0.1000"
    members = [{"arch": "resnet18", "size": "64x64", "item": "squish", "weight": 1.0}]
    ensemble = Predictions(run.probs, run.image_ids, VOCAB, {"ensemble": True, "members": members, "valid_error": 0.2})
    assert default_message(ensemble) == "paddy: resnet18 64x64 squish", "no CV: an ensemble's mean is no score"


def test_log_appends_one_json_line_per_submission(tmp_path):
    log = tmp_path / "log.jsonl"
    log_submission(log, str(tmp_path / "s.csv"), "paddy: x", [{"run": "r1"}], "Successfully submitted", "comp")
    log_submission(log, str(tmp_path / "s.csv"), "paddy: x", [{"run": "r2"}], "Successfully submitted", "comp")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["members"][0]["run"] for r in records] == ["r1", "r2"]
    assert records[0]["answer"] == "Successfully submitted" and records[0]["file"].endswith("s.csv")
    assert {"time", "competition", "message"} <= set(records[0])


def test_predictions_source_is_the_ensemble_a_file_or_a_finished_run(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(PaddyError, match=f"no predictions file at {out}/ensemble.safetensors: make the ensemble"):
        predictions_source(out, None, None)
    out.mkdir()
    (out / "ensemble.safetensors").write_bytes(b"")
    assert predictions_source(out, None, None) == out / "ensemble.safetensors"
    assert predictions_source(out, None, tmp_path / "p.safetensors") == tmp_path / "p.safetensors"
    (out / "r1").mkdir(parents=True)
    (out / "r1" / "predictions.safetensors").write_bytes(b"")
    (out / "r1" / "result.json").write_text("{}")
    assert predictions_source(out, "r1", None) == out / "r1" / "predictions.safetensors"
    (out / "r2").mkdir()
    with pytest.raises(PaddyError, match="no finished run folder 'r2'"):
        predictions_source(out, "r2", None)
    with pytest.raises(PaddyError, match="not both"):
        predictions_source(out, "r1", tmp_path / "p.safetensors")
