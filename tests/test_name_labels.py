"""Labels in the training images' file names (dogs-vs-cats: train/cat.0.jpg, no labels file). Before, such a
folder was "only one class folder; a classifier needs at least two"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import train_and_submit
from test_locations import write_images
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.name_labels import NAME_PATTERN, labels_in_names, reads_as_classes
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import CompetitionSpec, MetricName, TargetKind

DOGS_VS_CATS = "dogs-vs-cats-redux-kernels-edition"
FLAGS = ["--arch", "test_resnet", "--size", "16", "--bs", "4", "--epochs", "1", "--one-cycle", "--no-pretrained"]


def dogs_vs_cats(root, names=None, tests=4):
    """train/cat.0.jpg .. dog.5.jpg, test/1.jpg .., sample_submission.csv id,label (P(dog), ids without .jpg)."""
    names = names or [f"{animal}.{k}.jpg" for animal in ("cat", "dog") for k in range(6)]
    write_images(root / "train", names, 0)
    write_images(root / "test", [f"{k}.jpg" for k in range(1, tests + 1)], 1)
    pd.DataFrame({"id": range(1, tests + 1), "label": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.mark.parametrize(
    "name, label",
    [("cat.0.jpg", "cat"), ("dog.12499.jpg", "dog"), ("great_pyrenees_12.jpg", "great_pyrenees")]
    + [("Abyssinian_100.jpg", "Abyssinian"), ("IMG-0001.png", "IMG"), ("1.jpg", None), ("cat.jpg", None)],
)
def test_the_name_before_a_trailing_number_is_the_label(tmp_path, name, label):
    assert labels_in_names([tmp_path / name], NAME_PATTERN) == [label]


@pytest.mark.parametrize(
    "labels, classes",
    [(["cat", "cat", "dog", "dog"], True), (["IMG", "IMG", "IMG"], False), (["cat", "cat", "dog"], False)]
    + [(["cat", "cat", "dog", "dog", None], False), ([], False)],
)
def test_names_found_unasked_are_classes_only_when_they_read_as_classes(labels, classes):
    """Every name fits, two labels or more, none on one image only (a camera's IMG_0001.jpg is no class)."""
    assert reads_as_classes(labels) is classes


def test_dogs_vs_cats_is_read_as_the_competition_scores_it(tmp_path):
    found = check_layout(dogs_vs_cats(tmp_path / DOGS_VS_CATS))
    assert found.classes == ("cat", "dog") and len(found.train_images) == 12
    assert found.target_of()["dog.3.jpg"] == "dog" and found.target_of()["cat.5.jpg"] == "cat"
    assert (found.kind, found.metric) == (TargetKind.binary, MetricName.log_loss)
    assert found.test_ids == [f"{k}.jpg" for k in range(1, 5)]
    assert (found.spec.labels_file, found.spec.label_pattern, found.spec.train_folder) == (None, NAME_PATTERN, "train")
    assert found.description()["labels"] == f"file names in train/ by {NAME_PATTERN} (cat.0.jpg: cat)"
    assert found.description()["submission"] == "positive_probability of dog, ids without the extension", "P(dog)"
    again = check_layout(found.root, found.spec)  # what later commands do with the recorded description
    assert again.target_of() == found.target_of() and again.spec == found.spec


def test_train_and_submit_dogs_vs_cats_the_probability_of_a_dog(tmp_path):
    run, printed, csv = train_and_submit(dogs_vs_cats(tmp_path / DOGS_VS_CATS), tmp_path / "runs", *FLAGS)
    assert "file names in train/" in printed and "log_loss" in printed
    assert json.loads((run / "config.json").read_text())["competition"]["label_pattern"] == NAME_PATTERN
    submission, preds = pd.read_csv(csv), load_predictions(run / "predictions.safetensors")
    assert list(submission.columns) == ["id", "label"] and list(submission.id) == [1, 2, 3, 4]
    dog = preds.probs[[preds.image_ids.index(f"{k}.jpg") for k in range(1, 5)], preds.vocab.index("dog")]
    np.testing.assert_allclose(submission.label, dog, atol=1e-6)


def test_a_pattern_given_as_a_flag_reads_names_no_inference_would(tmp_path):
    """Names whose label is not before a trailing number ("0_cat.jpg"): only a given pattern reads them."""
    names = [f"{k}_{animal}.jpg" for k in range(4) for animal in ("cat", "dog")]
    root = dogs_vs_cats(tmp_path / "pets", names)
    with pytest.raises(PaddyError, match=r"no class folders under train/ and no labels in its file names like "
                       r"cat.0.jpg \(give label_pattern in \[competition\] for others\)"):  # fmt: skip
        check_layout(root)
    flags = ["--label-pattern", r"_(\w+)\.jpg$", "--out", str(tmp_path / "runs"), *FLAGS]
    trained = CliRunner().invoke(app, ["train", "--data", str(root), *flags])
    assert trained.exit_code == 0, trained.output
    assert check_layout(root, CompetitionSpec(label_pattern=r"_(\w+)\.jpg$")).target_of()["3_dog.jpg"] == "dog"


@pytest.mark.parametrize(
    "spec, error",
    [
        (CompetitionSpec(label_pattern=r"^(cat)\."), r"6 of 12 file names in train/ do not fit .* \(e\.g\. dog\.0"),
        (CompetitionSpec(label_pattern=r"^(\w+"), r"label_pattern '\^\(\\\\w\+' is not a regular expression"),
        (CompetitionSpec(label_pattern=r"^(\w+)\.(\d+)"), "must have one group, the label \\(it has 2\\)"),
        (CompetitionSpec(label_pattern=r"(\.)jpg$"), r"finds one label in train/ \('\.'\): too few"),
        (CompetitionSpec(label_pattern=NAME_PATTERN, labels_file="x.csv"), "labels_file and label_pattern both say"),
        (CompetitionSpec(kind=TargetKind.regression), "the file names in train/ hold single-label classes, not a regr"),
        (CompetitionSpec(id_column="id"), "id_column names a column of a labels file, but the labels here are the "
                                          "file names in train/"),
    ],
)  # fmt: skip
def test_what_cannot_be_read_from_names_is_one_error_line(tmp_path, spec, error):
    with pytest.raises(PaddyError, match=error):
        check_layout(dogs_vs_cats(tmp_path / "dogs"), spec)


def test_a_labels_file_and_class_folders_still_come_before_names(tmp_path):
    root = dogs_vs_cats(tmp_path / "dogs")
    pd.DataFrame({"id": [f"{a}.{k}.jpg" for a in ("cat", "dog") for k in range(6)], "label": [0, 1] * 6}).to_csv(
        root / "train.csv", index=False
    )
    found = check_layout(root)
    assert found.spec.labels_file == "train.csv" and found.target_of()["cat.0.jpg"] == "0", "the CSV's labels"
    assert found.spec.label_pattern is None


def test_the_positive_class_is_the_second_in_order_unless_the_description_names_it(tmp_path):
    """A binary submission gives the last class's probability: dog of cat/dog, 1 of 0/1; a competition that
    wants the other (a FAKE of REAL/FAKE) names it, and the model's outputs, scores and submission follow."""
    root, out, runner = dogs_vs_cats(tmp_path / DOGS_VS_CATS), tmp_path / "runs", CliRunner()
    found = check_layout(root, CompetitionSpec(positive_class="cat"))
    assert found.classes == ("dog", "cat") and found.description()["submission"].startswith(
        "positive_probability of cat"
    )
    config = tmp_path / "cats.toml"
    config.write_text('[competition]\npositive_class = "cat"\n[[models]]\narch = "test_resnet"\nsize = 16\nbs = 4\n'
                      'epochs = 1\npretrained = false\n')  # fmt: skip
    trained = runner.invoke(app, ["run", str(config), "--data", str(root), "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    (preds_path,) = out.glob("*/predictions.safetensors")
    preds = load_predictions(preds_path)
    assert preds.vocab == ("dog", "cat") and preds.meta["competition"]["positive_class"] == "cat"
    sent = runner.invoke(app, ["submit", "--predictions", str(preds_path), "--dry-run", "--submissions", str(out)])
    assert sent.exit_code == 0, sent.output
    (csv,) = out.glob("submission-*.csv")
    cat = preds.probs[[preds.image_ids.index(f"{k}.jpg") for k in range(1, 5)], 1]
    np.testing.assert_allclose(pd.read_csv(csv).label, cat, atol=1e-6)
    with pytest.raises(PaddyError, match=r"positive_class 'bird' is not one of the classes \(cat, dog\)"):
        check_layout(root, CompetitionSpec(positive_class="bird"))
    with pytest.raises(PaddyError, match="positive_class 'cat' is for a binary target, not a single one"):
        check_layout(root, CompetitionSpec(positive_class="cat", kind=TargetKind.single))
