"""Saved models and `paddy predict`: a finished run's model predicts any folder of images offline,
reproducing the run's own test predictions, and bad models or images are one error line."""

from __future__ import annotations

import io
import json
import shutil
import types

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_entry, trained
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import paddy.training.plan
from paddy.cli.app import app
from paddy.ensembling.predict import predictions_csv
from paddy.runs.predictions import Predictions, load_predictions


def predict(run, images, *flags):
    return CliRunner().invoke(app, ["predict", str(run.path), "--images", str(images), *flags])


def predicted(result, dest):
    assert result.exit_code == 0, result.output
    return load_predictions(dest)


def test_predict_reproduces_the_runs_own_tta_predictions(finished_run, tiny_data, tmp_path):
    dest = tmp_path / "p.safetensors"
    preds = predicted(predict(finished_run.run, tiny_data.root / "test_images", "--dest", str(dest)), dest)
    saved = load_predictions(finished_run.predictions_path)
    assert preds.image_ids == saved.image_ids and preds.vocab == saved.vocab
    np.testing.assert_allclose(preds.probs, saved.probs, rtol=0, atol=1e-6)
    table = pd.read_csv(dest.with_suffix(".csv"))
    assert list(table.columns) == ["image_id", "label", *saved.vocab]
    assert list(table.label) == saved.labels()


def test_predict_refuses_probabilities_larger_than_the_memory_before_loading_a_model(finished_run, tiny_data, tmp_path):
    """As training does: one line, exit 1, nothing written (not an out-of-memory kill after the last pass)."""
    n, classes = len(tiny_data.test_images), len(tiny_data.classes)
    small = types.SimpleNamespace(available=2 * n * classes * 4 - 1)  # one byte short of two float32 copies
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(paddy.training.plan.psutil, "virtual_memory", lambda: small)
        result = predict(finished_run.run, tiny_data.root / "test_images", "--dest", str(tmp_path / "p.safetensors"))
    assert result.exit_code == 1 and f"the probabilities of {n} images x {classes} classes" in result.output
    assert not list(tmp_path.glob("p.*"))


def test_without_tta_each_image_is_predicted_alone(finished_run, tiny_data, tmp_path):
    """No augmentation: an image's probabilities do not depend on which other images are in the folder."""
    some = tmp_path / "some"
    some.mkdir()
    for image in tiny_data.test_images[:3]:
        shutil.copy(image, some / image.name)
    every = predicted(
        predict(
            finished_run.run, tiny_data.root / "test_images", "--no-tta", "--dest", str(tmp_path / "a.safetensors")
        ),
        tmp_path / "a.safetensors",
    )
    three = predicted(
        predict(finished_run.run, some, "--no-tta", "--dest", str(tmp_path / "b.safetensors")),
        tmp_path / "b.safetensors",
    )
    np.testing.assert_allclose(three.probs, every.probs[:3], rtol=0, atol=1e-6)
    assert not np.allclose(every.probs, load_predictions(finished_run.predictions_path).probs), "TTA differs"


def test_a_multi_target_model_predicts_the_label_only(tiny_data, tmp_path):
    run = trained(tiny_entry(multi_target="variety", finetune=False), tiny_data, tmp_path / "runs", num_workers=0).run
    dest = tmp_path / "p.safetensors"
    preds = predicted(predict(run, tiny_data.root / "test_images", "--dest", str(dest)), dest)
    np.testing.assert_allclose(preds.probs, load_predictions(run.predictions_path).probs, rtol=0, atol=1e-6)
    assert preds.probs.shape == (len(tiny_data.test_images), len(tiny_data.classes))


@pytest.mark.parametrize(
    "settings, num_workers",
    [
        ({"item": "crop"}, 2),  # TTA's random crops are drawn in the loader's workers: predict uses as many
        ({"flip": False, "max_rotate": 30.0, "max_lighting": 0.0, "min_scale": 0.5}, 0),  # kept in the model
        ({"epochs": 2, "sizes": "16,32", "ema": 0.9}, 0),  # the saved model is the average, at the last size
    ],
    ids=["crop-with-workers", "own-augmentation", "progressive-resizing-ema"],
)
def test_predict_reproduces_the_runs_own_tta(tiny_data, tmp_path, settings, num_workers):
    entry = tiny_entry(**{"finetune": False, **settings})
    run = trained(entry, tiny_data, tmp_path / "runs", num_workers=num_workers).run
    dest = tmp_path / "p.safetensors"
    preds = predicted(predict(run, tiny_data.root / "test_images", "--dest", str(dest)), dest)
    np.testing.assert_allclose(preds.probs, load_predictions(run.predictions_path).probs, rtol=0, atol=1e-6)


def test_a_config_averages_its_entries_runs(finished_run, tiny_data, tmp_path):
    config = tmp_path / "c.toml"
    settings = {k: v for k, v in finished_run.entry.to_json().items() if v is not None and k != "accum"}
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    config.write_text(f'data = "{tiny_data.root}"\n[[models]]\n' + "\n".join(lines) + "\n")
    images = shutil.copytree(tiny_data.root / "test_images", tmp_path / "images")
    dest = tmp_path / "p.safetensors"
    out = ["--out", str(finished_run.run.path.parent), "--dest", str(dest)]
    shutil.move(tiny_data.root, tmp_path / "data-away")  # the training data is not needed
    try:
        result = CliRunner().invoke(app, ["predict", "--config", str(config), "--images", str(images), *out])
    finally:
        shutil.move(tmp_path / "data-away", tiny_data.root)
    preds = predicted(result, dest)
    np.testing.assert_allclose(preds.probs, load_predictions(finished_run.predictions_path).probs, atol=1e-6)


@pytest.fixture
def run_copy(finished_run, tmp_path):
    from paddy.runs.folder import RunFolder

    return RunFolder(shutil.copytree(finished_run.run.path, tmp_path / "runs" / finished_run.run.name))


def model_for_another_arch(run):
    with safe_open(run.model_path, framework="pt") as f:
        header = json.loads(f.metadata()["paddy"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    save_file(state, run.model_path, metadata={"paddy": json.dumps({**header, "arch": "resnet34"})})


@pytest.mark.parametrize(
    "breakage, images, fragment",
    [
        (lambda run, tmp: (tmp / "empty").mkdir(), "empty", "has no images"),
        (lambda run, tmp: None, "nowhere", "images folder not found"),
        (lambda run, tmp: (tmp / "bad").mkdir() or (tmp / "bad" / "x.jpg").write_bytes(b"junk"), "bad", "x.jpg"),
        (lambda run, tmp: model_for_another_arch(run), "test", "does not fit resnet34"),
        (
            lambda run, tmp: run.model_path.write_bytes(run.model_path.read_bytes()[:100]),
            "test",
            "not a readable paddy model",
        ),
        (lambda run, tmp: run.model_path.unlink(), "test", "has no model.safetensors"),
    ],
    ids=["no-images", "no-folder", "corrupt-image", "other-arch", "truncated-model", "no-model"],
)
def test_bad_models_and_images_are_one_error_line(run_copy, tiny_data, tmp_path, breakage, images, fragment):
    breakage(run_copy, tmp_path)
    folder = tiny_data.root / "test_images" if images == "test" else tmp_path / images
    dest = tmp_path / "p.safetensors"
    result = predict(run_copy, folder, "--dest", str(dest))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and fragment in lines[0], result.output
    assert not dest.exists() and not dest.with_suffix(".csv").exists()


def test_an_unknown_run_is_one_error_line(tiny_data, tmp_path):
    result = CliRunner().invoke(
        app, ["predict", "nope", "--images", str(tiny_data.root / "test_images"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "no finished run folder 'nope'" in result.stderr


def test_predict_needs_neither_the_training_data_nor_the_network(tiny_data_root, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from paddy.data.competition import check_layout

    data = check_layout(shutil.copytree(tiny_data_root, tmp_path / "data"))
    run = trained(tiny_entry(finetune=False), data, tmp_path / "runs", num_workers=0).run
    images = shutil.copytree(data.root / "test_images", tmp_path / "new-images")
    shutil.rmtree(data.root)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dest = tmp_path / "p.safetensors"
    preds = predicted(predict(run, images, "--dest", str(dest)), dest)
    np.testing.assert_allclose(preds.probs, load_predictions(run.predictions_path).probs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tta, passes", [(True, 5), (False, 1)], ids=["tta", "no-tta"])
def test_predict_reports_its_progress_over_every_pass(finished_run, tiny_data, tta, passes):
    from paddy.core.progress import reporting_to
    from paddy.ensembling.predict import predict_run

    reports = []
    with reporting_to(lambda *report: reports.append(report)):
        predict_run(finished_run.run, list(tiny_data.test_images), tta=tta)
    total = len(tiny_data.test_images) * passes
    assert {(what, of) for what, _, of in reports} == {(f"predicting with {finished_run.run.name}", total)}
    done = [done for _, done, _ in reports]
    assert done == sorted(done) and done[-1] == total and len(done) >= passes  # every batch of every pass


def test_predict_without_runs_named_uses_every_finished_run_and_says_which(finished_run, tiny_data, tmp_path):
    """As `paddy ensemble` does: it refused ('name the runs to predict with') where ensemble took them all."""
    out = tmp_path / "runs"
    shutil.copytree(finished_run.run.path, out / finished_run.run.name)
    dest = tmp_path / "all.safetensors"
    images = ["--images", str(tiny_data.root / "test_images")]
    result = CliRunner().invoke(app, ["predict", *images, "--out", str(out), "--dest", str(dest), "--no-tta"])
    preds = predicted(result, dest)
    assert f"{len(tiny_data.test_images)} images predicted by {finished_run.run.name}: {dest}" in result.stdout
    assert preds.meta["run"] == finished_run.run.name


def test_the_csv_says_what_a_submission_would_for_tags_and_grades():
    """Tags over their fitted thresholds (the most probable where none is over), grades at the fitted cut-points."""
    tags = Predictions(
        np.array([[0.9, 0.2], [0.3, 0.4]], dtype=np.float32),
        ("a.jpg", "b.jpg"),
        ("rust", "scab"),
        {"kind": "multi", "decisions": {"thresholds": [0.5, 0.1]}},
    )
    assert pd.read_csv(io.StringIO(predictions_csv(tags)))["labels"].tolist() == ["rust scab", "scab"]
    numbers = np.array([[0.4], [1.7], [3.9]], dtype=np.float32)
    cut = {"cutpoints": [0.5, 1.5, 2.5, 3.5], "grades": [0, 4]}
    grades = Predictions(numbers, ("a", "b", "c"), ("diagnosis",), {"kind": "ordinal", "decisions": cut})
    table = pd.read_csv(io.StringIO(predictions_csv(grades)))
    assert list(table.columns) == ["image_id", "grade", "diagnosis"] and table["grade"].tolist() == [0, 2, 4]
