"""Competitions whose files are named otherwise: class folders under train/ (plant-seedlings), Planet's
train_v2.csv, train-jpg/ and sample_submission_v2.csv, the older trainLabels.csv and sampleSubmission.csv.
Each was refused before anything trained ("no labels file", "no sample_submission.csv")."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.locations import LABELS, SAMPLE_GLOB
from paddy.kaggle.kernels import script_text
from paddy.settings.competition import CompetitionSpec, TargetKind

SEEDLINGS = ("Black-grass", "Common Chickweed", "Loose Silky-bent")
TAGS = ("agriculture", "clear", "primary", "water")


def write_images(folder: Path, names: list[str], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / name)


def plant_seedlings(root: Path) -> Path:
    """Class folders (names with spaces) under train/, .png, test/, a sample of file,species."""
    for index, species in enumerate(SEEDLINGS):
        write_images(root / "train" / species, [f"{index}{k:02d}.png" for k in range(6)], index)
    tests = [f"t{k}.png" for k in range(4)]
    write_images(root / "test", tests, 9)
    pd.DataFrame({"file": tests, "species": SEEDLINGS[0]}).to_csv(root / "sample_submission.csv", index=False)
    return root


def planet(root: Path, labels="train_v2.csv", sample="sample_submission_v2.csv", folders=("train-jpg", "test-jpg")):
    """Space-separated tags in train_v2.csv (ids without .jpg), train-jpg/, test-jpg/, sample_submission_v2.csv."""
    ids = [f"train_{k}" for k in range(12)]
    write_images(root / folders[0], [f"{i}.jpg" for i in ids], 0)
    tags = [" ".join(TAGS[k % 4 : k % 4 + 2]) for k in range(12)]
    pd.DataFrame({"image_name": ids, "tags": tags}).to_csv(root / labels, index=False)
    tests = [f"test_{k}" for k in range(4)]
    write_images(root / folders[1], [f"{i}.jpg" for i in tests], 1)
    pd.DataFrame({"image_name": tests, "tags": "clear"}).to_csv(root / sample, index=False)
    return root


def test_class_folders_under_train_are_read_as_the_paddy_layout(tmp_path):
    found = check_layout(plant_seedlings(tmp_path / "plant-seedlings-classification"))
    assert (
        found.classes == SEEDLINGS
        and len(found.train_images) == 18
        and found.test_ids == [f"t{k}.png" for k in range(4)]
    )
    assert (found.spec.train_folder, found.spec.test_folder, found.spec.sample_file) == (
        "train",
        "test",
        "sample_submission.csv",
    )
    assert found.kind is TargetKind.single and found.description()["labels"] == "class folders under train/"
    assert found.metric == "accuracy", "a competition paddy knows by its folder's name: micro F1 of one label each"


def test_files_named_like_the_usual_ones_are_found_and_recorded(tmp_path):
    found = check_layout(planet(tmp_path / "planet-understanding-the-amazon-from-space"))
    spec = found.spec
    assert (spec.labels_file, spec.train_folder, spec.test_folder) == ("train_v2.csv", "train-jpg", "test-jpg")
    assert spec.sample_file == "sample_submission_v2.csv" and found.sample_submission == found.root / spec.sample_file
    assert found.kind is TargetKind.multi and found.classes == TAGS and len(found.train_images) == 12
    older = check_layout(planet(tmp_path / "older", labels="trainLabels.csv", sample="sampleSubmission.csv"))
    assert (older.spec.labels_file, older.spec.sample_file) == ("trainLabels.csv", "sampleSubmission.csv")


def test_the_usual_name_wins_and_two_alike_are_a_question_for_the_user(tmp_path):
    root = planet(tmp_path / "planet")
    shutil.copy(root / "train_v2.csv", root / "train.csv")
    (root / "train_folds.csv").write_text("image_name,fold\n")
    assert check_layout(root).spec.labels_file == "train.csv", "train.csv is the usual name"
    shutil.copytree(root / "train-jpg", root / "train-tif")
    with pytest.raises(PaddyError, match="2 files or folders that could be its training image folder "
                       r"\(train-jpg, train-tif\): name one with train_folder in \[competition\]"):  # fmt: skip
        check_layout(root)
    assert check_layout(root, CompetitionSpec(train_folder="train-tif")).spec.train_folder == "train-tif"
    with pytest.raises(PaddyError, match="has no sample submission sample.csv"):
        check_layout(root, CompetitionSpec(train_folder="train-tif", sample_file="sample.csv"))


def test_nothing_like_a_labels_file_or_class_folders_says_what_was_looked_for(tmp_path):
    root = planet(tmp_path / "planet", labels="notes.csv", folders=("pictures", "test-jpg"))
    with pytest.raises(PaddyError, match=r"has no labels file \(looked for train.csv, labels.csv, train_labels.csv, or "
                       r"one named like them\) and no class folders under a training image folder \(looked for "
                       r"train_images/, train/, images/, or one named like them\)"):  # fmt: skip
        check_layout(root)


def test_train_and_submit_against_a_sample_of_another_name(tmp_path):
    root = planet(tmp_path / "planet-understanding-the-amazon-from-space")
    flags = ["--arch", "test_resnet", "--size", "16", "--bs", "4", "--epochs", "1", "--one-cycle", "--no-pretrained"]
    out = tmp_path / "runs"
    trained = CliRunner().invoke(app, ["train", "--data", str(root), "--out", str(out), *flags])
    assert trained.exit_code == 0, trained.output
    submissions = tmp_path / "submissions"
    run = next(p for p in out.iterdir() if not p.name.startswith("."))
    sent = ["submit", "--run", run.name, "--out", str(out), "--dry-run", "--submissions", str(submissions)]
    made = CliRunner().invoke(app, sent)
    assert made.exit_code == 0, made.output
    assert "4 rows, checked against sample_submission_v2.csv" in made.stdout
    assert "f2_samples" in trained.stdout and "| valid f2_samples" in made.stdout, "Planet is scored on F2"
    (csv,) = submissions.glob("submission-*.csv")
    submission = pd.read_csv(csv)
    assert list(submission.columns) == ["image_name", "tags"] and list(submission.image_name) == [
        f"test_{k}" for k in range(4)
    ]
    assert all(set(tags.split()) <= set(TAGS) for tags in submission.tags)


def test_the_kaggle_notebook_finds_the_data_by_a_sample_of_another_name(tmp_path):
    settings = {"mode": "train", "competition": "planet", "config": "", "config_name": "", "gpu_pool": False}
    script = {}
    exec(compile(script_text({**settings, "sample_glob": SAMPLE_GLOB}), "paddy_kernel.py", "exec"), script)
    data = planet(tmp_path / "input" / "planet", labels="trainLabels.csv", sample="sampleSubmission.csv")
    assert script["find_folder"](tmp_path / "input", script["SETTINGS"]["sample_glob"], "planet") == data


@pytest.mark.parametrize(
    "name, alike",
    [("train_v2.csv", True), ("trainlabels.csv", True), ("image_labels.csv", True), ("test_labels.csv", False)]
    + [("sample_submission_labels.csv", False), ("train_v2.txt", False), ("metadata.csv", False)],
)
def test_what_a_labels_file_is_named_like(name, alike):
    assert LABELS.alike(name) is alike


def test_images_one_folder_down_are_named_in_the_error_and_read_once_named(tmp_path):
    """aerial-cactus-identification unzips to train/train/*.jpg and test/test/*.jpg beside train.csv."""
    root = tmp_path / "aerial-cactus-identification"
    ids = [f"{k:03d}.jpg" for k in range(10)]
    write_images(root / "train" / "train", ids, 0)
    pd.DataFrame({"id": ids, "has_cactus": [k % 2 for k in range(10)]}).to_csv(root / "train.csv", index=False)
    write_images(root / "test" / "test", ["a.jpg", "b.jpg"], 1)
    pd.DataFrame({"id": ["a.jpg", "b.jpg"], "has_cactus": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(PaddyError, match=r"only one class folder; .* \(if a CSV labels the images in train/train/, "
                       r"give train_folder = 'train/train'\)"):  # fmt: skip
        check_layout(root)
    found = check_layout(root, CompetitionSpec(train_folder="train/train", test_folder="test/test"))
    assert found.kind is TargetKind.binary and len(found.train_images) == 10 and found.test_ids == ["a.jpg", "b.jpg"]
    assert found.metric == "roc_auc"
