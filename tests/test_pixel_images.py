"""Images given as pixel columns of CSVs (digit-recognizer, Kannada-MNIST): refused by name with the way out,
written as PNG files by `paddy presize`, and the copy trained and submitted. Before, digit-recognizer's train.csv
was read as a labels file of 785 columns ("cannot tell which column of train.csv is the label")."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CLI, train_and_submit
from PIL import Image
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.locations import SAMPLE_GLOB
from paddy.data.presize import presize_dataset
from paddy.kaggle.kernels import script_text
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import MetricName, TargetKind

SIDE = 8  # 64 pixel columns: pixel0..pixel63


def pixels(rng: np.random.Generator, labels: list[int]) -> np.ndarray:
    """A row of pixels an image, its brightness its label's (60 + 80 a label, noise of +-10)."""
    return np.clip(60 + 80 * np.array(labels)[:, None] + rng.integers(-10, 11, (len(labels), SIDE * SIDE)), 0, 255)


def digit_recognizer(root, tests: int = 5, test_ids: list[str] | None = None):
    """train.csv label,pixel0..pixel63 (three digits, six images each), test.csv of the pixels alone (or with an
    id column first, as Kannada-MNIST's), a sample ImageId,Label whose ids are the test rows' order from 1."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    columns = [f"pixel{k}" for k in range(SIDE * SIDE)]
    labels = [0, 1, 2] * 6
    train = pd.DataFrame(pixels(rng, labels), columns=columns)
    train.insert(0, "label", labels)
    train.to_csv(root / "train.csv", index=False)
    test = pd.DataFrame(pixels(rng, [k % 3 for k in range(tests)]), columns=columns)
    if test_ids is not None:
        test.insert(0, "id", test_ids)
    test.to_csv(root / "test.csv", index=False)
    ids = sorted(test_ids) if test_ids is not None else list(range(1, tests + 1))
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(root / "sample_submission.csv", index=False)
    return root, train, test


def test_a_pixel_csv_competition_is_refused_naming_presize(tmp_path):
    root, _, _ = digit_recognizer(tmp_path / "digit-recognizer")
    with pytest.raises(PaddyError, match=r"train.csv holds its images as 64 pixel columns \(8x8\).*paddy presize"):
        check_layout(root)


def test_presize_writes_each_row_as_a_png_and_the_copy_reads_as_the_competition(tmp_path):
    root, train, test = digit_recognizer(tmp_path / "digit-recognizer")
    report = presize_dataset(root, tmp_path / "png", workers=0)
    assert (report.resized, report.skipped, report.pixels_side) == (18 + 5, 0, SIDE)
    with Image.open(tmp_path / "png" / "train" / "2" / "5.png") as image:  # row 5 is a 2
        assert image.mode == "L" and image.size == (SIDE, SIDE)
        np.testing.assert_array_equal(np.asarray(image).ravel(), train.iloc[5, 1:].to_numpy())
    with Image.open(tmp_path / "png" / "test" / "3.png") as image:  # ImageId 3: the third test row
        np.testing.assert_array_equal(np.asarray(image).ravel(), test.iloc[2].to_numpy())
    copy = check_layout(tmp_path / "png")
    assert copy.classes == ("0", "1", "2") and len(copy.train_images) == 18
    assert (copy.spec.slug, copy.kind, copy.metric) == ("digit-recognizer", TargetKind.single, MetricName.accuracy)
    assert copy.test_ids == [f"{k}.png" for k in range(1, 6)]
    again = presize_dataset(root, tmp_path / "png", workers=0)  # resumed: nothing written twice
    assert (again.resized, again.skipped) == (0, 23)


def test_train_and_submit_the_copy_each_image_id_its_rows_digit(tmp_path):
    root, _, _ = digit_recognizer(tmp_path / "digit-recognizer")
    presized = CliRunner().invoke(app, ["presize", str(tmp_path / "png"), "--data", str(root), "--workers", "0"])
    assert presized.exit_code == 0, presized.output
    assert "23 " in presized.stdout and "written from pixels" in presized.stdout and "8x8 px" in presized.stdout
    run, printed, csv = train_and_submit(tmp_path / "png", tmp_path / "runs", *TINY_CLI)
    assert "class folders under train/" in printed and "accuracy" in printed
    submission, preds = pd.read_csv(csv), load_predictions(run / "predictions.safetensors")
    assert list(submission.columns) == ["ImageId", "Label"] and list(submission.ImageId) == [1, 2, 3, 4, 5]
    rows = [preds.image_ids.index(f"{k}.png") for k in range(1, 6)]
    assert list(submission.Label) == [int(preds.vocab[j]) for j in preds.probs[rows].argmax(axis=1)]


def test_kannada_mnist_test_rows_are_named_by_their_id_column_not_their_order(tmp_path):
    root, _, test = digit_recognizer(tmp_path / "Kannada-MNIST", test_ids=["7", "3", "9", "1", "5"])
    presize_dataset(root, tmp_path / "png", workers=0)
    with Image.open(tmp_path / "png" / "test" / "7.png") as image:  # the first row, id 7
        np.testing.assert_array_equal(np.asarray(image).ravel(), test.iloc[0, 1:].to_numpy())
    copy = check_layout(tmp_path / "png")
    assert copy.test_ids == ["1.png", "3.png", "5.png", "7.png", "9.png"] and copy.metric is MetricName.accuracy


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, s: (t.drop(columns="pixel63"), s), "63 pixel columns: not a square image's"),
        (lambda t, s: (t.assign(other=1), s), r"needs one label column beside its pixel columns, not \['label', 'ot"),
        (lambda t, s: (t.assign(pixel3=300), s), "pixel columns must hold whole numbers from 0 to 255"),
        (lambda t, s: (t, s.iloc[:4]), "test.csv has 5 rows and no id column, and the sample lists 4 ids"),
    ],
)
def test_pixel_csvs_that_cannot_be_right_are_one_line(tmp_path, change, message):
    root, train, _ = digit_recognizer(tmp_path / "digit-recognizer")
    changed, sample = change(train, pd.read_csv(root / "sample_submission.csv"))
    changed.to_csv(root / "train.csv", index=False)
    sample.to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(PaddyError, match=message):
        presize_dataset(root, tmp_path / "png", workers=0)
    assert not (tmp_path / "png").exists(), "refused before the copy is begun"


def test_the_kaggle_notebook_trains_on_the_png_copy_of_pixel_csvs(tmp_path, tiny_data_root):
    """Its data found by the sample, the notebook presizes pixel CSVs into a temp folder (not /kaggle/working,
    whose files become the notebook's outputs) and trains on that; a competition of image files is read where
    it is."""
    settings = {"mode": "train", "competition": "digit-recognizer", "config": "", "config_name": "", "gpu_pool": False}
    script: dict = {}
    exec(compile(script_text({**settings, "sample_glob": SAMPLE_GLOB}), "paddy_kernel.py", "exec"), script)
    root, _, _ = digit_recognizer(tmp_path / "input" / "digit-recognizer")
    found = script["find_folder"](tmp_path / "input", SAMPLE_GLOB, "digit-recognizer")
    copy = script["trainable"](found)
    assert found == root and copy.name == "digit-recognizer" and not copy.is_relative_to(tmp_path)
    assert check_layout(copy).test_ids == [f"{k}.png" for k in range(1, 6)]
    assert check_layout(copy).spec.slug == "digit-recognizer", "read as the competition"
    assert script["trainable"](tiny_data_root) == tiny_data_root
    shutil.rmtree(copy.parent)
