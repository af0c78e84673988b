"""Finding and checking competition data, and the built-in demo dataset.

The labels are in one of three places: the paddy competition's class folders (`train_images/<label>/*.jpg`,
beside `test_images/*.jpg` and `sample_submission.csv`), a CSV next to flat image folders (paddy.data.layout),
or the training file names (paddy.data.name_labels). Everything is checked up front so a long run never
dies an hour in on a missing folder or a corrupt JPEG.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.data.coco_metadata import metadata_labelled, test_id_files, train_metadata
from paddy.data.demo import ensure_demo_dataset, is_demo_data
from paddy.data.layout import Labelled, Target, class_folder_labelled, positive_last, read_labels
from paddy.data.locations import (
    LABELS,
    SAMPLE,
    TRAIN,
    copied_description,
    found_name,
    sample_name,
    test_folders,
    visible,
)
from paddy.data.name_labels import name_labelled
from paddy.data.pixel_images import pixel_tables
from paddy.data.submission_format import SampleFormat, SampleShape, infer_sample_format, named_sample, read_sample
from paddy.data.test_set import id_files_of, sample_ids, test_images_of
from paddy.settings.competition import (
    METRICS_OF_KIND,
    PADDY_COMPETITION,
    CompetitionSpec,
    MetricName,
    TargetKind,
    given_over,
    known_competition,
    metric_problem,
)
from paddy.settings.legacy import TRAINING_SET_SINCE_0_3

COMPETITION = PADDY_COMPETITION


KAGGLE_INPUT = Path("/kaggle/input")


@dataclass(frozen=True)
class CompetitionData:
    """A checked competition folder: its training images with their targets, the sorted test images, and
    the filled-in description (kind, metric, where everything is) that runs record."""

    root: Path
    classes: tuple[str, ...]  # the vocabulary: class names, tags, or the one column a number is predicted for
    train_images: tuple[Path, ...]
    test_images: tuple[Path, ...]
    is_demo: bool = False
    label_column: str = "label"  # the sample submission's value column
    images_checked: bool = False  # every image was decoded once (see without_bad_images)
    # by training image file name (a subset of train_images keeps them right)
    targets: Mapping[str, Target] = field(default_factory=dict)
    spec: CompetitionSpec = CompetitionSpec(kind=TargetKind.single, metric=MetricName.error_rate)
    groups: Mapping[str, str] | None = None
    user_folds: Mapping[str, int] | None = None
    sample_format: SampleFormat | None = None  # None: the paddy layout's (an id column and a label column)
    sample_id_files: Mapping[str, str] | None = None  # each sample id's test file, where test metadata gives it

    @property
    def kind(self) -> TargetKind:
        return self.spec.kind or TargetKind.single

    @property
    def metric(self) -> MetricName:
        return self.spec.metric or METRICS_OF_KIND[self.kind][0]

    @property
    def train_dir(self) -> Path:
        return self.root / (self.spec.train_folder or "train_images")

    @property
    def sample_submission(self) -> Path:
        return self.root / sample_name(self.spec.sample_file)

    @property
    def test_ids(self) -> list[str]:
        """Each test image's file name (paddy's image id), in the stable (sorted) test order."""
        return [p.name for p in self.test_images]

    @property
    def made_by_paddy(self) -> bool:
        """Demo data: the built-in demo or a `paddy demo` competition (trained with the demo preset, never
        submitted)."""
        return self.is_demo or is_demo_data(self.root)

    @property
    def named_root(self) -> Path | None:
        """The folder a suggested command names (None for the demo, which needs no --data)."""
        return None if self.is_demo else self.root

    def target_of(self) -> Mapping[str, Target]:
        """Each training image's target by file name (the class folder in the paddy layout)."""
        return self.targets

    def label_texts(self, images: Sequence[Path] | None = None) -> list[str]:
        """Each training image's target as text (tags space-joined), in the order of `images` (all training
        images by default): what folds stratify on and record, and what out-of-fold predictions keep."""
        targets = self.target_of()
        texts = [targets[p.name] for p in (self.train_images if images is None else images)]
        return [" ".join(t) if isinstance(t, tuple) else f"{t:g}" if isinstance(t, float) else t for t in texts]

    def description(self) -> dict[str, str]:
        """What the data was read as (given or inferred), for the short table commands show before training."""
        spec = self.spec
        numbers = self.kind in (TargetKind.regression, TargetKind.ordinal)
        return {
            "competition": spec.slug or "-",
            "target": f"{self.kind}, scored on {self.metric}",
            "labels": self.labels_text(),
            "training images": f"{len(self.train_images)} in {spec.train_folder}/",
            "test images": f"{len(self.test_images)} in {', '.join(f'{f}/' for f in spec.test_folder or ())}"
            + (f", ids from {spec.test_metadata}" if spec.test_metadata else ""),
            "classes": f"a number ({self.classes[0]})" if numbers else f"{len(self.classes)}",
            "submission": self.submission_text(),
        }

    def submission_text(self) -> str:
        """What the submission holds, as the description table says it (a binary one: which class's probability)."""
        fmt = self.sample_format
        if fmt is None:
            return "label"
        positive = f" of {self.classes[-1]}" if fmt.shape is SampleShape.positive_probability else ""
        if self.sample_id_files:  # the sample's ids named files through test metadata
            return f"{fmt.shape}{positive}, the ids of {self.spec.test_metadata}"
        return f"{fmt.shape}{positive}, ids {'with' if fmt.ids_with_extension else 'without'} the extension"

    def labels_text(self) -> str:
        """Where the labels were read from, as the description table says it."""
        spec = self.spec
        if spec.labels_file and spec.id_column is None:  # metadata: its images' annotations
            return f"{spec.labels_file}: each image's {', '.join(spec.label_columns or ())}"
        if spec.labels_file:
            return f"{spec.labels_file}: {spec.id_column} -> {', '.join(spec.label_columns or ())}"
        if spec.label_pattern:
            first = self.train_images[0].name
            return f"file names in {spec.train_folder}/ by {spec.label_pattern} ({first}: {self.targets[first]})"
        return f"class folders under {spec.train_folder}/"

    def identity(self) -> dict[str, Any]:
        """What predictions record about their data, so submit can refuse another dataset's sample and
        ensembles, CV and submissions read the target kind and metric (and the whole description)."""
        return {
            "data": str(self.root),
            "test_ids_sha256": ids_fingerprint(self.test_ids),
            "kind": str(self.kind),
            "metric": str(self.metric),
            "competition": self.spec.to_json(),
            **({"demo": True} if self.made_by_paddy else {}),
        }

    def training_identity(self) -> dict[str, Any]:
        """What a run records of the images it trains on: their number, and digests of their ids and of
        the ids with their labels, so a resume on images changed or relabelled since is refused."""
        names = [p.name for p in self.train_images]
        labelled = [f"{name}\t{label}" for name, label in zip(names, self.label_texts())]
        return dict(zip(TRAINING_SET_SINCE_0_3, (len(names), ids_fingerprint(names), ids_fingerprint(labelled))))

    def smallest_class(self) -> str:
        """The class with the fewest training images (what the memory probe trains on)."""
        counts = pd.Series(self.label_texts()).value_counts()
        return min(counts.index, key=lambda c: (counts[c], c))


def ids_fingerprint(ids: list[str] | tuple[str, ...]) -> str:
    """A short digest of a set of image ids (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def labelled_layout(root: Path, labelled: Labelled, spec: CompetitionSpec, sample: pd.DataFrame) -> CompetitionData:
    """Training images with their targets (from a labels file, class folders or their names) and the test
    images: those of the sample, in a test folder."""
    filled, sample_csv = labelled.spec, root / spec.sample_file
    folders = test_folders(root, filled.test_folder, filled.train_folder)
    shared = filled.train_folder in folders
    listed = test_id_files(root, filled, folders)
    ids = sample_ids(sample_csv, sample)
    id_files = id_files_of(sample_csv, ids, listed, given=filled.test_metadata is not None)
    test_names = [id_files[i] for i in ids] if id_files else ids
    test_images = test_images_of(sample_csv, test_names, [root / folder for folder in folders], shared)
    names = [p.name for p in labelled.images]
    return CompetitionData(
        root=root,
        classes=positive_last(labelled.vocab, filled),
        train_images=labelled.images,
        test_images=tuple(test_images),
        label_column=str(sample.columns[1]),
        targets=dict(zip(names, labelled.targets)),
        spec=replace(filled, test_folder=folders, test_metadata=listed[0] if listed and id_files else None),
        sample_id_files=id_files,
        groups=dict(zip(names, labelled.groups)) if labelled.groups else None,
        user_folds=dict(zip(names, labelled.user_folds)) if labelled.user_folds else None,
    )


def has_class_folders(train_dir: Path) -> bool:
    """Whether the training image folder holds a folder per class (the paddy layout) rather than the images."""
    return any(visible(p) and p.is_dir() for p in train_dir.iterdir())


def training_layout(root: Path, spec: CompetitionSpec, sample: pd.DataFrame) -> CompetitionData:
    """The training images and their labels where they are: the class folders (or a labels file whose images
    they only hold), a labels file (given, or found), or the images' names (label_pattern given, or names that
    read as classes)."""
    if spec.labels_file and spec.label_pattern:
        raise PaddyError("labels_file and label_pattern both say where the labels are: give one of them")
    if metadata := train_metadata(root, spec):  # before folders: its subfolders only hold the images
        return labelled_layout(root, metadata_labelled(root, metadata, spec), spec, sample)
    train = None if spec.labels_file else found_name(root, spec.train_folder, TRAIN)  # a given file: its images
    if train is None and (pixels := pixel_tables(root)):  # digit-recognizer: images as pixel columns
        raise PaddyError(pixels.problem())
    if train is not None and not spec.label_pattern and has_class_folders(root / train):
        return labelled_layout(root, class_folder_labelled(root, train, spec, sample), spec, sample)
    labels = None if spec.label_pattern else found_name(root, spec.labels_file, LABELS)
    if labels is not None:
        return labelled_layout(root, read_labels(root, root / labels, spec, sample), spec, sample)
    if train is None:
        raise PaddyError(
            f"{root} has no labels file (looked for {LABELS.looked_for()}) and no class folders under a "
            f"training image folder (looked for {TRAIN.looked_for()})"
        )
    if named := name_labelled(root, train, spec):
        return labelled_layout(root, named, spec, sample)
    raise PaddyError(
        f"{root} has no labels file (looked for {LABELS.looked_for()}), no class folders under {train}/ and no "
        f"labels in its file names like cat.0.jpg (give label_pattern in [competition] for others)"
    )


def check_layout(root: Path, spec: CompetitionSpec = CompetitionSpec()) -> CompetitionData:
    """Validate the competition folder against the description, inferring what it leaves out; raise one
    clear line naming the file, the column and an example of what is wrong."""
    if not root.is_dir():
        raise PaddyError(f"data folder not found: {root}")
    root = root.absolute()
    spec = known_competition(given_over(copied_description(root), spec), root.name)  # a presized copy: as its source
    # a missing sample: read_sample's error, which looks one folder down for a --data given one folder too high
    spec = replace(spec, sample_file=sample_name(found_name(root, spec.sample_file, SAMPLE)))
    sample = read_sample(root / spec.sample_file)
    found = training_layout(root, spec, sample)
    if problem := metric_problem(found.kind, found.metric):
        raise PaddyError(f"{root}: {problem}")
    found = replace(found, spec=replace(found.spec, metric=found.metric))
    named = named_sample(sample, found.sample_id_files)
    return replace(
        found, sample_format=infer_sample_format(named, found.kind, found.classes, found.test_ids, found.metric)
    )


def training_split_size(n_images: int, valid_pct: float) -> int:
    """How many of `n_images` fastai's RandomSplitter leaves for training."""
    return n_images - int(valid_pct * n_images)


def competition_slug(given: str | None, recorded: dict[str, Any] | None) -> str:
    """The Kaggle competition a command talks to: the one given, else the one a run or config recorded
    in its description, else the paddy competition."""
    return given or (recorded or {}).get("slug") or COMPETITION


def recorded_root(data: Path | None) -> Path:
    """The data folder as runs record it, without checking it: predicting and ensembling only need
    to know which runs were trained on it, not the training images themselves."""
    return data.expanduser().absolute() if data is not None else resolve_data(None).root


def resolve_data(
    data: Path | None,
    spec: CompetitionSpec = CompetitionSpec(),
    kaggle_input: Path = KAGGLE_INPUT,
) -> CompetitionData:
    """The checked competition data: --data, else Kaggle's input folder of the description's competition
    (the paddy competition's when it names none), else the demo."""
    if (folder := data_folder(data, spec, kaggle_input)) is not None:
        return check_layout(folder, spec)
    return replace(check_layout(ensure_demo_dataset(), spec), is_demo=True)


def data_folder(data: Path | None, spec: CompetitionSpec, kaggle_input: Path = KAGGLE_INPUT) -> Path | None:
    """The competition folder a command reads, unchecked: --data, else Kaggle's input folder of the
    description's competition; None: the demo."""
    if data is not None:
        return data.expanduser()
    on_kaggle = kaggle_input / (spec.slug or COMPETITION)
    return on_kaggle if on_kaggle.is_dir() else None
