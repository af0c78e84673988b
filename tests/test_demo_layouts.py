"""The generated demo competitions: real competitions' files and columns, every class often enough for
5 folds, the same bytes for a seed, and labels a model can see in the pixels."""

from __future__ import annotations

import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paddy.core.errors import PaddyError
from paddy.data.demo import DEMO_MARKER
from paddy.data.demo_layouts import LAYOUTS, layout_spec, make_layout
from paddy.data.folds import FoldInput, draw_folds
from paddy.orchestration.selection import choose_model
from paddy.settings.entry import DEMO_PRESET, ModelEntry
from paddy.training.plan import check_against_data

# name: labels file, its columns, train folder, test folders, extension, sample submission's columns
EXPECTED = {
    "cassava": ("train.csv", ["image_id", "label"], "train_images", ("test_images",), ".jpg", ["image_id", "label"]),
    "dog-breed": (
        "labels.csv", ["id", "breed"], "train", ("test",), ".jpg",
        ["id", "affenpinscher", "afghan_hound", "african_hunting_dog", "airedale"],
    ),
    "plant-pathology-2021": (
        "train.csv", ["image", "labels"], "train_images", ("test_images",), ".jpg", ["image", "labels"],
    ),
    "planet": (
        "train_v2.csv", ["image_name", "tags"], "train-jpg", ("test-jpg", "test-jpg-additional"), ".jpg",
        ["image_name", "tags"],
    ),
    "histopathologic": ("train_labels.csv", ["id", "label"], "train", ("test",), ".tif", ["id", "label"]),
    "aptos": (
        "train.csv", ["id_code", "diagnosis"], "train_images", ("test_images",), ".png", ["id_code", "diagnosis"],
    ),
    "petfinder": (
        "train.csv", ["Id", "Subject Focus", "Eyes", "Face", "Near", "Pawpularity"], "train", ("test",), ".jpg",
        ["Id", "Pawpularity"],
    ),
    "ranzcr": (
        "train.csv", ["StudyInstanceUID", "ETT - Abnormal", "ETT - Borderline", "ETT - Normal", "PatientID"],
        "train", ("test",), ".jpg", ["StudyInstanceUID", "ETT - Abnormal", "ETT - Borderline", "ETT - Normal"],
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    return {name: make_layout(name, root / name, size=32) for name in LAYOUTS}


def file_name(image_id: str, extension: str) -> str:
    return image_id if image_id.endswith(extension) else image_id + extension


def labels_of(name: str, table: pd.DataFrame) -> list[str]:
    """Each training image's label as text: the class, the tags, the one-hot column that is 1."""
    if name == "ranzcr":
        columns = EXPECTED[name][1][1:4]
        return [columns[row.index(1)] for row in table[columns].values.tolist()]
    return table[EXPECTED[name][1][-1] if name == "petfinder" else EXPECTED[name][1][1]].astype(str).tolist()


def test_every_layout_is_listed():
    assert sorted(LAYOUTS) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_files_headers_and_counts(layouts, name):
    labels_file, columns, train, test, extension, sample_columns = EXPECTED[name]
    root = layouts[name]
    sample_file = "sample_submission_v2.csv" if name == "planet" else "sample_submission.csv"
    files = [labels_file, sample_file, train, *test, DEMO_MARKER]  # the marker: never submitted
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    table = pd.read_csv(root / labels_file, dtype={columns[0]: str})
    sample = pd.read_csv(root / sample_file, dtype={columns[0]: str})
    assert list(table.columns) == columns and list(sample.columns) == sample_columns
    assert (len(table), len(sample)) == (60, 12)
    assert sorted(p.name for p in (root / train).iterdir()) == sorted(
        file_name(i, extension) for i in table[columns[0]]
    )
    assert sorted(p.name for folder in test for p in (root / folder).iterdir()) == sorted(
        file_name(i, extension) for i in sample[columns[0]]
    )
    assert all(len(list((root / folder).iterdir())) == 12 // len(test) for folder in test), "Planet: split in two"
    assert table[columns[0]].is_unique and not set(table[columns[0]]) & set(sample[columns[0]])
    with_extension = name in ("cassava", "plant-pathology-2021")
    assert all(i.endswith(extension) == with_extension for i in table[columns[0]]), "ids as the real CSVs write them"
    spec = layout_spec(name)
    assert (spec.labels_file, spec.id_column, spec.train_folder, spec.test_folder, spec.extension) == (
        labels_file, columns[0], train, test, extension,
    )  # fmt: skip
    assert set(spec.label_columns) <= set(columns)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_class_is_common_enough_for_five_folds(layouts, name):
    table = pd.read_csv(layouts[name] / EXPECTED[name][0])
    labels = labels_of(name, table)
    if name == "petfinder":
        values = table["Pawpularity"]
        assert values.between(1, 100).all() and values.dtype.kind == "i" and values.nunique() > 30
        return
    tagged = name in ("plant-pathology-2021", "planet")
    tags = [tag for text in labels for tag in text.split()] if tagged else labels
    counts = pd.Series(tags).value_counts()
    assert counts.min() >= 5, counts.to_dict()
    if tagged:
        every = (
            {"healthy", "scab", "rust", "frog_eye_leaf_spot"}
            if name != "planet"
            else {"clear", "haze", "primary", "water"}
        )
        assert set(counts.index) == every and any(len(text.split()) == 2 for text in labels), "some have two tags"
    if name == "ranzcr":
        assert (table.iloc[:, 1:4].sum(axis=1) == 1).all(), "one-hot: exactly one 1 a row"
        assert table["PatientID"].nunique() == 20 and table.groupby("PatientID").size().eq(3).all()
    expected_classes = {"cassava": 5, "dog-breed": 4, "histopathologic": 2, "aptos": 5, "ranzcr": 3}
    if name in expected_classes:
        assert len(counts) == expected_classes[name]


def mean_colours(root: Path, folder: str, ids: list[str], extension: str) -> np.ndarray:
    return np.array([np.asarray(Image.open(root / folder / file_name(i, extension))).mean(axis=(0, 1)) for i in ids])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_label_is_in_the_pixels(layouts, name):
    labels_file, columns, train, _, extension, _ = EXPECTED[name]
    table = pd.read_csv(layouts[name] / labels_file, dtype={columns[0]: str})
    colours = mean_colours(layouts[name], train, table[columns[0]].tolist(), extension)
    if name in ("aptos", "petfinder"):  # a number: the brighter, the higher
        value = table[columns[-1]].to_numpy(float)
        assert np.corrcoef(colours.mean(axis=1), value)[0, 1] > 0.95
        return
    labels = np.array(labels_of(name, table))
    means = {label: colours[labels == label].mean(axis=0) for label in set(labels)}
    spread = max(np.abs(colours[labels == label] - means[label]).max() for label in means)
    gaps = [np.abs(means[a] - means[b]).max() for a, b in combinations(means, 2)]
    assert min(gaps) > 40 and spread < 20, "every label its own colour, images of a label alike (0..255)"


def test_a_seed_makes_the_same_bytes_and_another_seed_others(tmp_path):
    first, again, other = (
        make_layout("aptos", tmp_path / d, n_train=15, size=16, seed=s) for d, s in [("a", 0), ("b", 0), ("c", 1)]
    )
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert (first / "train.csv").read_bytes() != (other / "train.csv").read_bytes()


def test_a_layout_is_written_whole_and_kept(tmp_path):
    root = make_layout("cassava", tmp_path / "cassava", n_train=10, n_test=2, size=8)
    assert [p.name for p in tmp_path.iterdir()] == ["cassava"], "no staging folder left beside it"
    before = (root / "train.csv").read_bytes()
    assert make_layout("cassava", root, n_train=20, seed=5) == root and (root / "train.csv").read_bytes() == before
    with pytest.raises(PaddyError, match="no demo competition 'mnist' \\(there are: cassava, dog-breed, "):
        make_layout("mnist", tmp_path / "mnist")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_five_folds_hold_out_every_class_of_every_layout(layouts, name):
    labels_file, columns, _, _, extension, _ = EXPECTED[name]
    table = pd.read_csv(layouts[name] / labels_file, dtype={columns[0]: str})
    ids = tuple(file_name(i, extension) for i in table[columns[0]])
    groups = tuple(table["PatientID"]) if name == "ranzcr" else None
    inputs = FoldInput(ids, tuple(labels_of(name, table)), layout_spec(name).kind, groups=groups)
    fold, warnings = draw_folds(inputs, 5, seed=0)
    assert warnings == [] and np.bincount(fold)[1:].min() >= 9, "about 12 images a fold (whole groups of 3)"
    if groups:
        assert table.assign(fold=fold).groupby("PatientID")["fold"].nunique().eq(1).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_command_paddy_demo_prints_trains_with_the_demo_preset(layouts, name):
    """`paddy demo` ends with `paddy train --data <it>`: on 60 images the default bs 64 would be refused, so
    paddy-made data trains with the demo preset (flags still win), and only paddy-made data does."""
    choice = choose_model({}, data=layouts[name])
    assert {field: getattr(choice.entry, field) for field in DEMO_PRESET} == DEMO_PRESET
    assert choice.note.startswith(f"Demo data made by paddy: {layouts[name]} with the demo preset: arch resnet18")
    check_against_data(choice.data, choice.entry)
    assert choose_model({"bs": 8, "arch": "test_resnet"}, data=layouts[name]).entry.bs == 8


def test_a_competitions_own_data_keeps_the_defaults(layouts, tmp_path):
    own = shutil.copytree(layouts["cassava"], tmp_path / "cassava-leaf-disease-classification")
    (own / DEMO_MARKER).unlink()
    choice = choose_model({}, data=own)
    assert choice.entry == ModelEntry() and choice.note is None
    with pytest.raises(PaddyError, match="bs 64 is larger than the 48 training images left"):
        check_against_data(choice.data, choice.entry)
