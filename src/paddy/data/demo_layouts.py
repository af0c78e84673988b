"""Generated demo competitions, one per target kind, in the layouts of real Kaggle competitions (their
file, folder and column names), so that reading layouts, drawing folds and training every kind can be
tried and tested with no download. Each image's colour or brightness carries its label, so a tiny model
learns it in an epoch or two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from paddy.core.errors import PaddyError
from paddy.data.demo import mark_as_demo
from paddy.data.locations import sample_name
from paddy.settings.competition import CompetitionSpec, MetricName, TargetKind

# distinct colours (RGB in 0..1), one per class of a single-label or one-hot layout (five at most)
PALETTE = np.array([(0.8, 0.2, 0.2), (0.2, 0.7, 0.2), (0.2, 0.3, 0.8), (0.8, 0.8, 0.2), (0.7, 0.2, 0.8)])
# what each plant-pathology tag adds to a leaf's colour: a two-tag leaf has both
TAG_TINTS = {
    "healthy": (0.0, 0.6, 0.0),
    "scab": (0.6, 0.0, 0.0),
    "rust": (0.0, 0.0, 0.6),
    "frog_eye_leaf_spot": (0.3, 0.3, 0.3),
}
TAG_SETS = ("healthy", "scab", "rust", "frog_eye_leaf_spot", "scab frog_eye_leaf_spot", "rust frog_eye_leaf_spot")
# Planet's weather and land tags, likewise
PLANET_TINTS = {"clear": (0.0, 0.0, 0.6), "haze": (0.6, 0.0, 0.0), "primary": (0.0, 0.6, 0.0), "water": (0.3, 0.3, 0.3)}
PLANET_SETS = ("clear primary", "haze primary", "clear water", "primary", "clear", "haze water")
BREEDS = ("affenpinscher", "afghan_hound", "african_hunting_dog", "airedale")
PET_METADATA = ("Subject Focus", "Eyes", "Face", "Near")
CATHETERS = ("ETT - Abnormal", "ETT - Borderline", "ETT - Normal")

Labels = tuple[dict[str, list], np.ndarray]  # label columns of the labels file, and each image's colour


@dataclass(frozen=True)
class Layout:
    """One competition's files: where the labels and images are, how its ids look, its labels."""

    spec: CompetitionSpec  # what reading the layout should find (paddy.data.layout infers it)
    ids: Callable[[np.random.Generator, int], list[str]]  # n distinct ids as the CSVs write them
    labels: Callable[[np.random.Generator, int], Labels]
    sample: dict[str, object]  # the sample submission's columns after the id, and the value each holds


def _hex_ids(rng: np.random.Generator, n: int, digits: int, suffix: str = "") -> list[str]:
    """n distinct random hex ids (Kaggle's hashed image names)."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids[rng.bytes((digits + 1) // 2).hex()[:digits] + suffix] = None
    return list(ids)


def _number_ids(rng: np.random.Generator, n: int, prefix: str = "", suffix: str = "") -> list[str]:
    """n distinct random 10-digit ids (cassava's 1000015157.jpg; RANZCR's study UIDs)."""
    numbers = 1_000_000_000 + rng.choice(9_000_000_000, n, replace=False)
    return [f"{prefix}{number}{suffix}" for number in numbers]


def _balanced(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """n class indices, every class as often as the others (give or take one), in random order."""
    return rng.permutation(np.arange(n) % classes)


def _classes(column: str, names: tuple, rng: np.random.Generator, n: int) -> Labels:
    """One label column of class names (or integer labels), each class its own colour."""
    index = _balanced(rng, n, len(names))
    return {column: [names[i] for i in index]}, PALETTE[index]


def _grades(column: str, rng: np.random.Generator, n: int) -> Labels:
    """Diabetic-retinopathy-like grades 0..4: the higher the grade, the brighter the image."""
    grades = _balanced(rng, n, 5)
    return {column: grades.tolist()}, np.repeat(0.15 + 0.175 * grades[:, None], 3, axis=1)


def _tags(
    column: str, tints: dict[str, tuple[float, ...]], tag_sets: tuple[str, ...], rng: np.random.Generator, n: int
) -> Labels:
    """Space-separated tags (some images have two), each tag tinting the image."""
    sets = [tag_sets[i] for i in _balanced(rng, n, len(tag_sets))]
    colours = [0.15 + sum(np.array(tints[tag]) for tag in tags.split()) for tags in sets]
    return {column: sets}, np.clip(colours, 0, 1)


def _pawpularity(rng: np.random.Generator, n: int) -> Labels:
    """0/1 photo metadata and a 1..100 score: the higher the score, the brighter the photo."""
    scores = np.linspace(1, 100, n).round().astype(int)[rng.permutation(n)]
    columns = {name: rng.integers(0, 2, n).tolist() for name in PET_METADATA}
    return {**columns, "Pawpularity": scores.tolist()}, np.repeat(0.1 + 0.8 * (scores[:, None] - 1) / 99, 3, axis=1)


def _one_hot(rng: np.random.Generator, n: int) -> Labels:
    """One 0/1 column per class with exactly one 1 a row, and the patient each study belongs to (three
    studies a patient, so folds must keep a patient's studies together)."""
    index = _balanced(rng, n, len(CATHETERS))
    columns = {name: (index == j).astype(int).tolist() for j, name in enumerate(CATHETERS)}
    patients = _hex_ids(rng, (n + 2) // 3, 9)
    return {**columns, "PatientID": [patients[i // 3] for i in rng.permutation(n)]}, PALETTE[index]


TRAIN, TEST = "train_images", ("test_images",)  # the folders of most layouts; the others' are train/ and test/
# fmt: off
LAYOUT_OF: dict[str, Layout] = {
    "cassava": Layout(
        CompetitionSpec(slug="cassava-leaf-disease-classification", labels_file="train.csv", id_column="image_id",
                        label_columns=("label",), train_folder=TRAIN, test_folder=TEST, extension=".jpg",
                        kind=TargetKind.single, metric=MetricName.accuracy),
        partial(_number_ids, suffix=".jpg"), partial(_classes, "label", (0, 1, 2, 3, 4)), {"label": 0},
    ),
    "dog-breed": Layout(
        CompetitionSpec(slug="dog-breed-identification", labels_file="labels.csv", id_column="id",
                        label_columns=("breed",), train_folder="train", test_folder=("test",), extension=".jpg",
                        kind=TargetKind.single, metric=MetricName.log_loss),
        partial(_hex_ids, digits=32), partial(_classes, "breed", BREEDS), dict.fromkeys(BREEDS, 1 / len(BREEDS)),
    ),
    "plant-pathology-2021": Layout(
        CompetitionSpec(slug="plant-pathology-2021-fgvc8", labels_file="train.csv", id_column="image",
                        label_columns=("labels",), label_sep=" ", train_folder=TRAIN, test_folder=TEST,
                        extension=".jpg", kind=TargetKind.multi, metric=MetricName.f1_samples),
        partial(_hex_ids, digits=16, suffix=".jpg"), partial(_tags, "labels", TAG_TINTS, TAG_SETS),
        {"labels": "healthy"},
    ),
    "planet": Layout(  # files named otherwise (train_v2.csv, train-jpg/, sample_submission_v2.csv), two test folders
        CompetitionSpec(slug="planet-understanding-the-amazon-from-space", labels_file="train_v2.csv",
                        id_column="image_name", label_columns=("tags",), label_sep=" ", train_folder="train-jpg",
                        test_folder=("test-jpg", "test-jpg-additional"), sample_file="sample_submission_v2.csv",
                        extension=".jpg", kind=TargetKind.multi, metric=MetricName.f2_samples),
        partial(_number_ids, prefix="image_"), partial(_tags, "tags", PLANET_TINTS, PLANET_SETS),
        {"tags": "clear primary"},
    ),
    "histopathologic": Layout(
        CompetitionSpec(slug="histopathologic-cancer-detection", labels_file="train_labels.csv", id_column="id",
                        label_columns=("label",), train_folder="train", test_folder=("test",), extension=".tif",
                        kind=TargetKind.binary, metric=MetricName.roc_auc),
        partial(_hex_ids, digits=40), partial(_classes, "label", (0, 1)), {"label": 0},
    ),
    "aptos": Layout(
        CompetitionSpec(slug="aptos2019-blindness-detection", labels_file="train.csv", id_column="id_code",
                        label_columns=("diagnosis",), train_folder=TRAIN, test_folder=TEST, extension=".png",
                        kind=TargetKind.ordinal, metric=MetricName.qwk),
        partial(_hex_ids, digits=12), partial(_grades, "diagnosis"), {"diagnosis": 0},
    ),
    "petfinder": Layout(
        CompetitionSpec(slug="petfinder-pawpularity-score", labels_file="train.csv", id_column="Id",
                        label_columns=("Pawpularity",), train_folder="train", test_folder=("test",), extension=".jpg",
                        kind=TargetKind.regression, metric=MetricName.rmse),
        partial(_hex_ids, digits=32), _pawpularity, {"Pawpularity": 50},
    ),
    "ranzcr": Layout(  # one-hot classes, and patients whose studies folds keep together
        CompetitionSpec(slug="ranzcr-clip-catheter-line-classification", labels_file="train.csv",
                        id_column="StudyInstanceUID", label_columns=CATHETERS, train_folder="train",
                        test_folder=("test",), extension=".jpg", kind=TargetKind.single, metric=MetricName.roc_auc,
                        group_column="PatientID"),
        partial(_number_ids, prefix="1.2.826.0.1.3680043.8.498."), _one_hot, dict.fromkeys(CATHETERS, 0),
    ),
}
# fmt: on
LAYOUTS = tuple(LAYOUT_OF)


def _image(rng: np.random.Generator, colour: np.ndarray, size: int) -> Image.Image:
    """A square of `colour` with noise and a soft random blob, so no two images are alike."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.2, 0.8, 2)
    blob = 0.1 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)[..., None]
    pixels = np.clip(colour + blob + rng.normal(0, 0.05, (size, size, 3)), 0, 1)
    return Image.fromarray((pixels * 255).astype(np.uint8))


def _save_images(rng: np.random.Generator, folder: Path, names: list[str], colours: np.ndarray, size: int) -> None:
    folder.mkdir(parents=True)
    for name, colour in zip(names, colours):
        _image(rng, colour, size).save(folder / name, **({"quality": 90} if name.endswith(".jpg") else {}))


def write_layout(layout: Layout, root: Path, n_train: int, n_test: int, size: int, seed: int) -> Path:
    """Write one layout's labels file, sample submission and images into `root` (a new folder)."""
    rng = np.random.default_rng(seed)
    spec = layout.spec
    every_id = layout.ids(rng, n_train + n_test)  # drawn together: no test id is also a training id
    ids, test_ids = every_id[:n_train], every_id[n_train:]
    columns, colours = layout.labels(rng, n_train)
    root.mkdir(parents=True)
    pd.DataFrame({spec.id_column: ids, **columns}).to_csv(root / spec.labels_file, index=False)
    sample = {spec.id_column: test_ids, **{c: [v] * n_test for c, v in layout.sample.items()}}
    pd.DataFrame(sample).to_csv(root / sample_name(spec.sample_file), index=False)
    file_name = partial(_file_name, spec.extension)
    _save_images(rng, root / spec.train_folder, [file_name(i) for i in ids], colours, size)
    test_colours = layout.labels(rng, n_test)[1]
    for folder, part in zip(spec.test_folder, np.array_split(np.arange(n_test), len(spec.test_folder))):  # Planet: 2
        _save_images(rng, root / folder, [file_name(test_ids[i]) for i in part], test_colours[part], size)
    return root


def _file_name(extension: str, image_id: str) -> str:
    """An image's file name: its id, with the layout's extension when the CSVs leave it out."""
    return image_id if image_id.endswith(extension) else image_id + extension


def make_layout(name: str, root: Path, n_train: int = 60, n_test: int = 12, size: int = 64, seed: int = 0) -> Path:
    """The demo competition `name` (one of LAYOUTS) at `root`: built in a temp folder beside it and renamed
    into place, so a folder at `root` is always complete; one already there is kept as it is."""
    if name not in LAYOUT_OF:
        raise PaddyError(f"no demo competition {name!r} (there are: {', '.join(LAYOUTS)})")
    layout = LAYOUT_OF[name]
    if (root / sample_name(layout.spec.sample_file)).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root.parent))
    try:
        mark_as_demo(write_layout(layout, staging / "data", n_train, n_test, size, seed))
        os.replace(staging / "data", root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def layout_spec(name: str) -> CompetitionSpec:
    """What reading the demo competition `name` should find: its files, columns, kind (and groups)."""
    return LAYOUT_OF[name].spec
