"""Competitions whose files are named otherwise: class folders under train/ (plant-seedlings), Planet's
train_v2.csv, train-jpg/ and sample_submission_v2.csv, the older trainLabels.csv and sampleSubmission.csv.
Each was refused before anything trained ("no labels file", "no sample_submission.csv")."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_CLI, train_and_submit
from PIL import Image
from test_cli import assert_one_line_error, run_paddy
from typer.testing import CliRunner

from paddy.cli.app import app
from paddy.core.errors import PaddyError
from paddy.data.competition import check_layout
from paddy.data.locations import LABELS, SAMPLE_GLOB
from paddy.ensembling.predict import images_to_predict
from paddy.kaggle.kernels import KaggleGpu, inference_kernel, script_text, stage_models
from paddy.runs.predictions import load_predictions
from paddy.settings.competition import CompetitionSpec, TargetKind, overridden

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


def planet(
    root: Path, labels="train_v2.csv", sample="sample_submission_v2.csv", folders=("train-jpg", "test-jpg"), more=0
):
    """Space-separated tags in train_v2.csv (ids without .jpg), train-jpg/, test-jpg/, sample_submission_v2.csv;
    with `more`, as many more test images (file_0.jpg, ...) in test-jpg-additional/, listed by the sample too."""
    ids = [f"train_{k}" for k in range(12)]
    write_images(root / folders[0], [f"{i}.jpg" for i in ids], 0)
    tags = [" ".join(TAGS[k % 4 : k % 4 + 2]) for k in range(12)]
    pd.DataFrame({"image_name": ids, "tags": tags}).to_csv(root / labels, index=False)
    tests, additional = [f"test_{k}" for k in range(4)], [f"file_{k}" for k in range(more)]
    write_images(root / folders[1], [f"{i}.jpg" for i in tests], 1)
    if more:
        write_images(root / "test-jpg-additional", [f"{i}.jpg" for i in additional], 2)
    pd.DataFrame({"image_name": tests + additional, "tags": "clear"}).to_csv(root / sample, index=False)
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
        ("test",),
        "sample_submission.csv",
    )
    assert found.kind is TargetKind.single and found.description()["labels"] == "class folders under train/"
    assert found.metric == "accuracy", "a competition paddy knows by its folder's name: micro F1 of one label each"


def test_files_named_like_the_usual_ones_are_found_and_recorded(tmp_path):
    found = check_layout(planet(tmp_path / "planet-understanding-the-amazon-from-space"))
    spec = found.spec
    assert (spec.labels_file, spec.train_folder, spec.test_folder) == ("train_v2.csv", "train-jpg", ("test-jpg",))
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
                       r"train_images/, train/, images/, one named like them, or one folder down\)"):  # fmt: skip
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


def test_images_one_folder_down_are_found_below_the_usual_folders(tmp_path):
    """aerial-cactus-identification unzips to train/train/*.jpg and test/test/*.jpg beside train.csv: train/ has
    one subfolder, but train.csv labels its images with the sample's has_cactus, so that is the labels file (it
    was "only one class folder"); a nested folder given is recorded as given (it was recorded as its last part)."""
    root = tmp_path / "aerial-cactus-identification"
    ids = [f"{k:03d}.jpg" for k in range(10)]
    write_images(root / "train" / "train", ids, 0)
    pd.DataFrame({"id": ids, "has_cactus": [k % 2 for k in range(10)]}).to_csv(root / "train.csv", index=False)
    write_images(root / "test" / "test", ["a.jpg", "b.jpg"], 1)
    pd.DataFrame({"id": ["a.jpg", "b.jpg"], "has_cactus": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    found = check_layout(root)
    assert found.kind is TargetKind.binary and len(found.train_images) == 10 and found.test_ids == ["a.jpg", "b.jpg"]
    assert (found.metric, found.spec.labels_file, found.spec.train_folder) == ("roc_auc", "train.csv", "train")
    nested = check_layout(root, CompetitionSpec(train_folder="train/train", test_folder=("test/test",)))
    assert nested.spec.test_folder == ("test/test",) and check_layout(root, nested.spec).test_ids == found.test_ids
    (root / "train.csv").unlink()
    with pytest.raises(PaddyError, match=r"only one class folder; .* \(if a CSV labels the images in train/train/, "
                       r"give train_folder = 'train/train'\)"):  # fmt: skip
        check_layout(root)


HOTELS = {"0": ("1000", "1001"), "1": ("1010", "1011"), "2": ("1020", "1021")}  # chain: its hotels


def hotel_id(root: Path) -> Path:
    """hotel-id-2021-fgvc8: train_images/<chain>/<image>, train.csv image,chain,hotel_id,timestamp, a sample of
    image,hotel_id (five hotels a row, MAP@5)."""
    rows = []
    for chain, hotels in HOTELS.items():
        names = [f"{hotel}{k:03d}.jpg" for hotel in hotels for k in range(4)]
        write_images(root / "train_images" / chain, names, int(chain))
        rows += [(name, chain, name[:4], "2018-01-01 00:00:00") for name in names]
    pd.DataFrame(rows, columns=["image", "chain", "hotel_id", "timestamp"]).to_csv(root / "train.csv", index=False)
    write_images(root / "test_images", ["t0.jpg", "t1.jpg", "t2.jpg"], 9)
    sample = pd.DataFrame({"image": ["t0.jpg", "t1.jpg", "t2.jpg"], "hotel_id": "36363 53586 18807 64314 60181"})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


def test_subfolders_that_only_group_a_labels_files_images_are_not_its_classes(tmp_path):
    """hotel-id's chain folders: paddy trained on the 3 chains (exit 0, a submission of chains for hotels)."""
    found = check_layout(hotel_id(tmp_path / "hotel-id-2021-fgvc8"))
    assert found.classes == tuple(hotel for hotels in HOTELS.values() for hotel in hotels), "the hotels, not chains"
    assert found.target_of()["1011002.jpg"] == "1011" and len(found.train_images) == 24
    assert (found.spec.labels_file, found.spec.label_columns, found.spec.train_folder) == (
        "train.csv",
        ("hotel_id",),
        "train_images",
    )
    assert found.metric == "map5" and found.description()["labels"] == "train.csv: image -> hotel_id"
    assert check_layout(found.root, found.spec).target_of() == found.target_of(), "as recorded"
    shutil.copy(found.root / "train_images" / "0" / "1000000.jpg", found.root / "train_images" / "1")
    with pytest.raises(PaddyError, match=r"1000000.jpg is in .*train_images/0/ and .*train_images/1/: an image's name"):
        check_layout(found.root)


PLANET = "planet-understanding-the-amazon-from-space"
SPLIT = ["test_0.jpg", "test_1.jpg", "test_2.jpg", "test_3.jpg", "file_0.jpg", "file_1.jpg"]


def test_a_test_set_split_over_two_folders_is_read_whole(tmp_path):
    """Planet's test-jpg/ and test-jpg-additional/, one sample listing both: read as one test set."""
    found = check_layout(planet(tmp_path / PLANET, more=2))
    assert found.spec.test_folder == ("test-jpg", "test-jpg-additional") and found.test_ids == SPLIT
    assert found.description()["test images"] == "6 in test-jpg/, test-jpg-additional/"
    assert check_layout(found.root, found.spec).test_images == found.test_images, "as recorded"
    with pytest.raises(PaddyError, match=r"does not match test-jpg/: 2 of 6 ids match no image \(e\.g\. 'file_0'\)"):
        check_layout(found.root, CompetitionSpec(test_folder=("test-jpg",)))


def test_the_training_folder_named_picks_the_test_folders_named_like_it(tmp_path):
    """The real download has the .tif copies too (train-tif-v2/, test-tif-v2/): the one question is which
    training folder, and the test folders follow its name."""
    root = planet(tmp_path / PLANET, more=2)
    shutil.copytree(root / "train-jpg", root / "train-tif-v2")
    write_images(root / "test-tif-v2", [name.replace(".jpg", ".tif") for name in SPLIT], 3)
    with pytest.raises(PaddyError, match=r"could be its training image folder \(train-jpg, train-tif-v2\)"):
        check_layout(root)
    jpg = check_layout(root, CompetitionSpec(train_folder="train-jpg"))
    assert jpg.spec.test_folder == ("test-jpg", "test-jpg-additional") and jpg.test_ids == SPLIT
    tif = check_layout(root, CompetitionSpec(train_folder="train-tif-v2"))
    assert tif.spec.test_folder == ("test-tif-v2",) and len(tif.test_ids) == 6
    (root / "train-tif-v2").rename(root / "train")
    with pytest.raises(PaddyError, match=r"3 files or folders that could be its test image folder \(test-jpg, "
                       r"test-jpg-additional, test-tif-v2\): name one with test_folder in \[competition\] \(or a "
                       r"list of them, where the test set is split over several\)"):  # fmt: skip
        check_layout(root)


@pytest.mark.parametrize(
    "given, parsed",
    [("test", ("test",)), (["test-jpg", "test-jpg-additional"], ("test-jpg", "test-jpg-additional"))]
    + [(3, "test_folder: 3 is not a folder name or a list of them"), ([], "test_folder: \\[\\] is not a folder")],
)
def test_test_folder_is_one_name_or_a_list_of_them(given, parsed):
    if isinstance(parsed, tuple):
        assert overridden(CompetitionSpec(), {"test_folder": given}, "c.toml").test_folder == parsed
    else:
        with pytest.raises(PaddyError, match=parsed):
            overridden(CompetitionSpec(), {"test_folder": given}, "c.toml")


def test_an_image_in_two_test_folders_is_refused(tmp_path):
    root = planet(tmp_path / PLANET, more=2)
    shutil.copy(root / "test-jpg" / "test_0.jpg", root / "test-jpg-additional")
    twice = "test_0.jpg is in .*/test-jpg/ and .*/test-jpg-additional/: an image's name is its id"
    with pytest.raises(PaddyError, match=twice):
        check_layout(root)
    with pytest.raises(PaddyError, match=twice):
        images_to_predict([root / "test-jpg", root / "test-jpg-additional"], tmp_path / "runs")


def test_a_split_test_set_is_trained_submitted_predicted_and_sent_to_kaggle_whole(tmp_path):
    """train + submit write all six rows; `paddy predict --images A --images B` and the Kaggle inference
    notebook (its predict step, in this process) give the run's own predictions."""
    root, out, runner = planet(tmp_path / PLANET, more=2), tmp_path / "runs", CliRunner()
    run, _, csv = train_and_submit(root, out, *TINY_CLI)
    assert list(pd.read_csv(csv).image_name) == [name.removesuffix(".jpg") for name in SPLIT], "the sample order"
    own = load_predictions(run / "predictions.safetensors")
    images = ["--images", str(root / "test-jpg"), "--images", str(root / "test-jpg-additional")]
    predicted = runner.invoke(app, ["predict", run.name, *images, "--out", str(out)])
    assert predicted.exit_code == 0, predicted.output
    again = load_predictions(out / "predictions-test-jpg+test-jpg-additional.safetensors")
    assert sorted(again.image_ids) == sorted(own.image_ids) == sorted(SPLIT)
    order = [again.image_ids.index(i) for i in own.image_ids]
    np.testing.assert_allclose(again.probs[order], own.probs, atol=1e-5)
    kernel, chosen = inference_kernel([run.name], None, None, [out], "alice", None, KaggleGpu.t4x2, None)
    assert kernel.settings["test_folders"] == ["test-jpg", "test-jpg-additional"]
    script: dict = {}
    exec(compile(script_text(kernel.settings), "paddy_kernel.py", "exec"), script)
    stage_models(chosen, tmp_path / "input" / "models")
    (tmp_path / "work").mkdir()
    notebook = load_predictions(script["predict"](root, tmp_path / "input", tmp_path / "work"))
    assert notebook.image_ids == again.image_ids and np.allclose(notebook.probs, again.probs, atol=1e-6)


def test_hotel_id_trains_and_submits_five_hotels_an_image(tmp_path):
    _, _, csv = train_and_submit(hotel_id(tmp_path / "hotel-id-2021-fgvc8"), tmp_path / "runs", *TINY_CLI)
    submission = pd.read_csv(csv, dtype=str)
    hotels = {hotel for pair in HOTELS.values() for hotel in pair}
    assert list(submission.image) == ["t0.jpg", "t1.jpg", "t2.jpg"]
    assert all(len(set(row.split())) == 5 and set(row.split()) <= hotels for row in submission.hotel_id)


def state_farm(root: Path) -> Path:
    """state-farm-distracted-driver-detection: imgs/train/c0..c2/, imgs/test/, driver_imgs_list.csv (each
    image's driver), a sample of img and one probability column per class."""
    rows = []
    for c in range(3):
        names = [f"img_{c}{k:02d}.jpg" for k in range(8)]
        write_images(root / "imgs" / "train" / f"c{c}", names, c)
        rows += [(f"p{k % 4:03d}", f"c{c}", name) for k, name in enumerate(names)]
    pd.DataFrame(rows, columns=["subject", "classname", "img"]).to_csv(root / "driver_imgs_list.csv", index=False)
    write_images(root / "imgs" / "test", [f"img_{k}.jpg" for k in range(4)], 9)
    sample = pd.DataFrame({"img": [f"img_{k}.jpg" for k in range(4)], **dict.fromkeys(["c0", "c1", "c2"], 0.33)})
    sample.to_csv(root / "sample_submission.csv", index=False)
    return root


def test_image_folders_one_folder_down_are_found(tmp_path):
    """state-farm keeps its images in imgs/train/ and imgs/test/: "no class folders under a training image
    folder" before. Its drivers are a group only when named (a labels file's column, read from below)."""
    found = check_layout(state_farm(tmp_path / "state-farm-distracted-driver-detection"))
    assert (found.spec.train_folder, found.spec.test_folder) == ("imgs/train", ("imgs/test",))
    assert found.classes == ("c0", "c1", "c2") and len(found.train_images) == 24 and found.metric == "log_loss"
    assert found.description()["training images"] == "24 in imgs/train/"
    assert found.description()["labels"] == "class folders under imgs/train/" and found.groups is None
    spec = CompetitionSpec(labels_file="driver_imgs_list.csv", id_column="img", group_column="subject")
    grouped = check_layout(found.root, overridden(spec, {"label_columns": "classname"}, "config"))
    assert grouped.spec.train_folder == "imgs/train" and grouped.groups["img_105.jpg"] == "p001"
    shutil.copytree(found.root / "imgs", found.root / "more")
    with pytest.raises(PaddyError, match="no class folders under a training image folder"):
        check_layout(found.root)


def test_a_usual_folder_without_images_gives_way_to_the_images_one_folder_down(tmp_path):
    """siim-isic-melanoma-classification: train/ and test/ hold DICOM files, the JPEGs are in jpeg/train/ and
    jpeg/test/ ("train has no images" before, unless both folders were named)."""
    root = tmp_path / "siim-isic-melanoma-classification"
    ids, tests = [f"ISIC_{k:07d}" for k in range(12)], [f"ISIC_{k:07d}" for k in range(100, 104)]
    for folder, names in (("train", ids), ("test", tests)):
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / f"{name}.dcm").write_bytes(b"DICM")
        write_images(root / "jpeg" / folder, [f"{name}.jpg" for name in names], 0)
    table = pd.DataFrame({"image_name": ids, "patient_id": [f"IP_{k % 4}" for k in range(12)], "target": [0, 1] * 6})
    table.to_csv(root / "train.csv", index=False)
    pd.DataFrame({"image_name": tests, "patient_id": "IP_9"}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"image_name": tests, "target": 0}).to_csv(root / "sample_submission.csv", index=False)
    found = check_layout(root)
    assert (found.spec.train_folder, found.spec.test_folder) == ("jpeg/train", ("jpeg/test",))
    assert (found.kind, found.metric, len(found.train_images)) == (TargetKind.binary, "roc_auc", 12)
    assert found.test_ids == [f"{name}.jpg" for name in tests] and found.spec.labels_file == "train.csv"
    shutil.rmtree(root / "jpeg" / "test")
    with pytest.raises(PaddyError, match="test has no images"):
        check_layout(root)


def test_several_numbers_to_predict_are_one_error_line_not_a_traceback(tmp_path):
    """planttraits2024 asks for six traits at once; named as label columns they were a ValueError traceback
    (int() of '2.48') from reading them as one-hot columns."""
    root = tmp_path / "planttraits2024"
    ids = [str(1000 + k) for k in range(12)]
    write_images(root / "train_images", [f"{i}.jpeg" for i in ids], 0)
    traits = {"X4_mean": np.linspace(0.1, 3.0, 12), "X11_mean": np.linspace(1.5, 20.0, 12)}
    pd.DataFrame({"id": ids, **traits}).to_csv(root / "train.csv", index=False)
    write_images(root / "test_images", ["2000.jpeg"], 1)
    pd.DataFrame({"id": ["2000"], "X4": [0.5], "X11": [1.0]}).to_csv(root / "sample_submission.csv", index=False)
    flags = ["--label-column", "X4_mean", "--label-column", "X11_mean"]
    assert_one_line_error(
        run_paddy("train", "--data", str(root), *flags),
        "the one-hot columns X4_mean, X11_mean must hold only 0 and 1; paddy predicts one number, not 2",
    )
    with pytest.raises(PaddyError, match=r"the sample submission asks for 2 numbers an image \(X4, X11\); paddy"):
        check_layout(root, CompetitionSpec(label_columns=("X4_mean",)))  # was "class columns are not the classes"


def flat(root: Path) -> Path:
    """train/ and test/ beside train.csv (id,label) and a sample (id,label)."""
    ids = [f"a{k}.jpg" for k in range(8)]
    write_images(root / "train", ids, 0)
    pd.DataFrame({"id": ids, "label": ["x", "y"] * 4}).to_csv(root / "train.csv", index=False)
    write_images(root / "test", ["t0.jpg", "t1.jpg"], 1)
    pd.DataFrame({"id": ["t0.jpg", "t1.jpg"], "label": "x"}).to_csv(root / "sample_submission.csv", index=False)
    return root


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda r: (r / "sample_submission.csv").write_text("id,label\nt0.jpg,x\nt0.jpg,x\nt1.jpg,x\n"),
         "sample_submission.csv lists 't0.jpg' more than once"),  # was two test images of one file
        (lambda r: (r / "train.csv").write_text("id\na0.jpg\na1.jpg\n"),
         r"train.csv has one column \('id'\): no label beside the image id"),  # was "(columns: )"
        (lambda r: (r / "train.csv").write_text("id;label\na0.jpg;x\na1.jpg;y\n"),
         r"train.csv has one column \('id;label'\)"),
    ],
)  # fmt: skip
def test_what_a_file_gets_wrong_is_named(tmp_path, breakage, error):
    root = flat(tmp_path / "comp")
    breakage(root)
    with pytest.raises(PaddyError, match=error):
        check_layout(root)


def test_a_binary_target_of_three_classes_is_refused(tmp_path):
    """kind = "binary" on three class folders trained and scored the second class against the other two."""
    root = plant_seedlings(tmp_path / "seedlings")
    for spec in (CompetitionSpec(kind=TargetKind.binary), CompetitionSpec(positive_class="Black-grass")):
        with pytest.raises(PaddyError, match=r"a binary target has two classes, not 3 \(Black-grass, Common "):
            check_layout(root, spec)


def test_the_folders_can_be_named_by_flags(tmp_path):
    """Planet's real download asks which training folder (train-jpg/ or train-tif-v2/); a flag answers it,
    without a config written for that alone, and a split test set is the flag repeated."""
    root = planet(tmp_path / PLANET, more=2)
    shutil.copytree(root / "train-jpg", root / "train-tif-v2")
    flags = ["--arch", "test_resnet", "--size", "16", "--bs", "4", "--epochs", "1", "--one-cycle", "--no-pretrained"]
    out = str(tmp_path / "runs")
    assert_one_line_error(run_paddy("train", "--data", str(root), "--out", out, *flags), "name one with train_folder")
    tests = ["--test-folder", "test-jpg", "--test-folder", "test-jpg-additional"]
    trained = run_paddy("train", "--data", str(root), "--out", out, "--train-folder", "train-jpg", *tests, *flags)
    assert trained.exit_code == 0, trained.output
    assert "12 in train-jpg/" in trained.stdout and "6 in test-jpg/, test-jpg-additional/" in trained.stdout


def test_iwildcam_2019_a_csv_whose_first_column_is_no_id_says_which_key_names_it(tmp_path):
    """iwildcam-2019-fgvc6's train.csv starts with category_id, then file_name, id, location, ...: its first column,
    taken as the id, repeats; the error says so and which key names the id. Given, the CSV trains."""
    root = tmp_path / "iwildcam-2019-fgvc6"
    ids = [f"c{k}" for k in range(8)]
    write_images(root / "train_images", [f"{i}.jpg" for i in ids], 0)
    write_images(root / "test_images", ["t1.jpg", "t2.jpg"], 1)
    table = {"category_id": [0, 19] * 4, "file_name": [f"{i}.jpg" for i in ids], "id": ids, "location": [3] * 8}
    pd.DataFrame(table).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"Id": ["t1", "t2"], "Predicted": 0}).to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(PaddyError, match="lists '0' more than once .its first column, taken as the image id: name"):
        check_layout(root)
    found = check_layout(root, CompetitionSpec(id_column="id", label_columns=("category_id",)))
    assert found.classes == ("0", "19") and found.target_of()["c1.jpg"] == "19"
