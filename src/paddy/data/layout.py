"""Reading a competition whose labels are in a CSV: which files and columns hold what, inferred where the
description leaves it out, and every training image's target, checked up front; and the class-folder
layout, with what a description of labels in the file system (folders, names) may say.

Kaggle ships labels as train.csv, labels.csv or train_labels.csv (or a file named like them) next to a flat
image folder (train/, train_images/, one images/ for both, or one named like them; paddy.data.locations),
ids with or without the extension, and a label column, a space-separated label list, or one 0/1 column per
class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from paddy.core.errors import PaddyError
from paddy.core.files import read_csv
from paddy.data.locations import (
    LABELS,
    TRAIN,
    found_path,
    holds_images,
    image_files,
    image_names_below,
    images_by_name,
    usual_name,
    visible,
)
from paddy.settings.competition import CompetitionSpec, MetricName, TargetKind

REGRESSION_MIN_VALUES = 21  # more distinct integers than this are a number to predict, not classes
MIN_TRAINING_IMAGES = 2

Target = str | tuple[str, ...] | float


@dataclass(frozen=True)
class Labelled:
    """The training images of a labels file with their targets, and what the description settled."""

    images: tuple[Path, ...]
    targets: tuple[Target, ...]
    vocab: tuple[str, ...]
    spec: CompetitionSpec  # every key that applies filled in
    groups: tuple[str, ...] | None = None
    user_folds: tuple[int, ...] | None = None


def files_of_ids(ids: list[str], files: dict[str, Path], extension: str | None, where: str) -> list[Path]:
    """The image file of each id, matched on the file name or, for ids without one, the name without its
    extension (or with `extension` added). An id matching no image is one line naming `where`."""
    stems = {path.stem: path for path in files.values()}
    suffix = extension if extension is None or extension.startswith(".") else f".{extension}"
    found = [files.get(i) or files.get(f"{i}{suffix or ''}") or stems.get(i) for i in ids]
    missing = [i for i, path in zip(ids, found) if path is None]
    if missing:
        raise PaddyError(f"{where}: {len(missing)} of {len(ids)} ids match no image (e.g. {missing[0]!r})")
    return [path for path in found if path is not None]


def column_values(table: pd.DataFrame, column: str, csv: Path) -> pd.Series:
    """A column of the labels file, refused when it is missing or has an empty value (line number given)."""
    if column not in table.columns:
        raise PaddyError(f"{csv} has no column {column!r}; columns: {', '.join(table.columns)}")
    values = table[column]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        line = int(empty.to_numpy().argmax()) + 2
        raise PaddyError(f"{csv} column {column!r} has {int(empty.sum())} empty values (first on line {line})")
    return values


def label_columns(table: pd.DataFrame, spec: CompetitionSpec, sample: pd.DataFrame, csv: Path) -> tuple[str, ...]:
    """The label column(s): the description's, else the sample's class columns when the labels file has them
    as 0/1 columns (one-hot), else the sample's value column when the labels file has it, else the labels
    file's one column besides the id."""
    if spec.label_columns:
        for column in spec.label_columns:  # each there and filled, before the kind is inferred from them
            column_values(table, column, csv)
        return spec.label_columns
    value_columns = [c for c in sample.columns[1:]]
    if len(value_columns) > 1 and all(c in table.columns for c in value_columns):
        return tuple(value_columns)
    if len(value_columns) == 1 and value_columns[0] in table.columns:
        return (value_columns[0],)
    others = [c for c in table.columns if c not in (spec.id_column, spec.group_column, spec.fold_column)]
    if len(others) == 1:
        return (others[0],)
    if len(table.columns) == 1:  # the id alone, or a CSV separated by semicolons or tabs, read as one column
        raise PaddyError(f"{csv} has one column ({table.columns[0]!r}): no label beside the image id")
    raise PaddyError(
        f"cannot tell which column of {csv} is the label (columns: {', '.join(others)}); "
        "name it with label_columns in [competition]"
    )


def non_numbers(values: pd.Series, integers: bool) -> pd.Series:
    """The values that do not read as numbers (with `integers`: as integers written as text, 0, 3, 12)."""
    text = values.astype(str)
    bad = pd.to_numeric(text, errors="coerce").isna()
    return text[bad | ~text.str.fullmatch(r"-?\d+")] if integers else text[bad]


def is_integer_text(values: pd.Series) -> bool:
    """Every value is an integer written as text, as ordinal grades and class indices are."""
    return non_numbers(values, integers=True).empty


def is_number_text(values: pd.Series) -> bool:
    """Every value reads as a number."""
    return non_numbers(values, integers=False).empty


def one_hot_rows(table: pd.DataFrame, columns: tuple[str, ...], csv: Path) -> np.ndarray:
    """Several label columns as rows of 0/1 integers, refused in one line unless every value is 0 or 1
    (several numbers to predict at once, as planttraits' six traits, are not a target paddy trains)."""
    values = table[list(columns)]
    if not values.isin([0, 1, "0", "1"]).all().all():
        numbers = all(is_number_text(values[column].astype(str)) for column in columns)
        several = f"; paddy predicts one number, not {len(columns)}: give one as label_columns" if numbers else ""
        raise PaddyError(f"{csv}: the one-hot columns {', '.join(columns)} must hold only 0 and 1{several}")
    return values.astype(int).to_numpy()


def inferred_kind(table: pd.DataFrame, columns: tuple[str, ...], spec: CompetitionSpec, csv: Path) -> TargetKind:
    """The target kind the labels show: one-hot rows with other than one 1 or label lists are multi-label,
    two values binary, many numbers (or a regression/ordinal metric) a number, else single-label."""
    if spec.kind is not None:
        return spec.kind
    if len(columns) > 1:
        return TargetKind.single if (one_hot_rows(table, columns, csv).sum(axis=1) == 1).all() else TargetKind.multi
    values = table[columns[0]].astype(str)
    if spec.label_sep is not None or values.str.contains(" ").any():
        return TargetKind.multi
    if spec.metric in (MetricName.qwk,) and is_integer_text(values):
        return TargetKind.ordinal
    if spec.metric is MetricName.rmse or (is_number_text(values) and not is_integer_text(values)):
        return TargetKind.regression
    if is_integer_text(values) and values.nunique() >= REGRESSION_MIN_VALUES:
        return TargetKind.regression
    return TargetKind.binary if values.nunique() == 2 else TargetKind.single


def class_order(values: list[str]) -> tuple[str, ...]:
    """Class names sorted, numerically when they are all integers (so '10' follows '9')."""
    distinct = set(values)
    if all(v.lstrip("-").isdigit() for v in distinct):
        return tuple(sorted(distinct, key=int))
    return tuple(sorted(distinct))


def targets_of(table: pd.DataFrame, columns: tuple[str, ...], kind: TargetKind, sep: str | None, csv: Path):
    """Each row's target and the vocabulary: class names, tags, or the one column predicted as a number."""
    if len(columns) > 1:
        rows = one_hot_rows(table, columns, csv)
        if kind is TargetKind.multi:
            return tuple(tuple(c for c, on in zip(columns, row) if on) for row in rows), columns
        return tuple(columns[int(row.argmax())] for row in rows), columns
    values = column_values(table, columns[0], csv).astype(str).str.strip()
    if kind is TargetKind.multi:
        tags = tuple(tuple(sorted(set(v.split(sep)))) for v in values)
        return tags, tuple(sorted({t for row in tags for t in row}))
    if kind in (TargetKind.regression, TargetKind.ordinal):
        if not (bad := non_numbers(values, integers=kind is TargetKind.ordinal)).empty:
            what = "integer grades" if kind is TargetKind.ordinal else "numbers"
            bad = bad.iloc[0]
            raise PaddyError(f"{csv} column {columns[0]!r} must hold {what} for a {kind} target (e.g. {bad!r})")
        return tuple(float(v) for v in values), (columns[0],)
    return tuple(values), class_order(list(values))


def user_folds(table: pd.DataFrame, column: str | None, csv: Path) -> tuple[int, ...] | None:
    """The labels file's own fold column as integers (None without one)."""
    if column is None:
        return None
    values = column_values(table, column, csv)
    if not is_integer_text(values):
        raise PaddyError(f"{csv} fold column {column!r} must hold integers (e.g. {values.iloc[0]!r})")
    return tuple(int(v) for v in values)


def enough_to_train(n_images: int, distinct: int, where: Path | str) -> None:
    """Refuse labels of fewer than MIN_TRAINING_IMAGES images, or of fewer than two distinct values."""
    if n_images < MIN_TRAINING_IMAGES or distinct < 2:
        raise PaddyError(f"{where} has {n_images} images and {distinct} distinct labels: too few to train on")


def read_labels(root: Path, csv: Path, spec: CompetitionSpec, sample: pd.DataFrame) -> Labelled:
    """The training images of the labels file `csv` and their targets, with the description filled in."""
    table = read_csv(csv, dtype=str, keep_default_na=True)
    id_column = spec.id_column or str(table.columns[0])
    ids = column_values(table, id_column, csv).astype(str)
    if not (twice := ids[ids.duplicated()]).empty:
        hint = "" if spec.id_column else " (its first column, taken as the image id: name another with id_column)"
        raise PaddyError(f"{csv} column {id_column!r} lists {twice.iloc[0]!r} more than once{hint}")
    spec = replace(spec, id_column=id_column)
    columns = label_columns(table, spec, sample, csv)
    kind = inferred_kind(table, columns, spec, csv)
    sep = spec.label_sep or (" " if kind is TargetKind.multi and len(columns) == 1 else None)
    targets, vocab = targets_of(table, columns, kind, sep, csv)
    folder = found_path(root, spec.train_folder, TRAIN)
    if not holds_images(folder):
        raise PaddyError(
            f"{folder} has no images (expected {folder.name}/<label>/ class folders or the images {csv.name} lists)"
        )
    files = images_by_name([folder])
    images = files_of_ids(list(ids), files, spec.extension, f"{csv.name} column {id_column!r} against {folder.name}/")
    numbers = kind in (TargetKind.regression, TargetKind.ordinal)
    enough_to_train(len(images), len(set(targets)) if numbers else len(vocab), csv)
    groups = tuple(column_values(table, spec.group_column, csv).astype(str)) if spec.group_column else None
    nested = folder.relative_to(root).as_posix()  # a nested one as given: train/train
    filled = replace(spec, labels_file=csv.name, label_columns=columns, label_sep=sep, kind=kind, train_folder=nested)
    return Labelled(tuple(images), targets, vocab, filled, groups, user_folds(table, spec.fold_column, csv))


def grouping_labels_file(root: Path, train_dir: Path, sample: pd.DataFrame) -> Path | None:
    """The labels file to read when the training folder's subfolders are not its classes but only hold its
    images: the column the sample asks for names no image's folder (hotel-id's hotel_id beside
    train_images/<chain>/, aerial-cactus' has_cactus beside train/train/). None where the subfolders are the
    classes: no such file or column, or it agrees with them (the paddy competition's train.csv). One that
    agrees with some and contradicts others is refused: the folders are what trains, so a relabelled CSV must
    not be silently ignored."""
    name, column = usual_name(root, LABELS), str(sample.columns[-1])  # only usual: no new question for folders
    table = read_csv(root / name, dtype=str) if name else pd.DataFrame()
    if column not in table.columns or len(table.columns) < 2 or len(sample.columns) != 2:
        return None
    folder_of: dict[str, str] = {}  # by name and by name without extension (text: 20k Paths take 0.3 s)
    for parent, file in image_names_below(train_dir):
        folder_of[file] = folder_of[os.path.splitext(file)[0]] = parent
    ids, labels = table.iloc[:, 0].astype(str), table[column].astype(str).str.strip()
    listed = [(i, folder_of[i], label) for i, label in zip(ids, labels) if i in folder_of]
    differ = [(image_id, folder, label) for image_id, folder, label in listed if os.path.basename(folder) != label]
    if not differ or len(differ) == len(listed):
        return root / name if differ else None
    image_id, folder, label = differ[0]
    raise PaddyError(
        f"{root / name} disagrees with the class folders for {len(differ)} images: {image_id} is in "
        f"{Path(folder).parent.name}/{Path(folder).name}/ but labelled {label!r}; move the images or correct {name}"
    )


LABELS_FILE_KEYS = ("id_column", "label_columns", "label_sep", "group_column", "fold_column")  # a CSV's columns


def classes_spec(spec: CompetitionSpec, where: str, keys: tuple[str, ...] = ()) -> CompetitionSpec:
    """The description of labels that are class names in the file system or metadata (`where`: the class
    folders under train/, the file names in train/, train_metadata.json): one class per image, and no labels
    file's columns (but `keys`, which name something else there)."""
    if given := [key for key in LABELS_FILE_KEYS if key not in keys and getattr(spec, key) is not None]:
        raise PaddyError(
            f"{given[0]} names a column of a labels file, but the labels here are {where} "
            "(a labels file is read only when labels_file is given)"
        )
    kind = spec.kind or (TargetKind.binary if spec.positive_class else TargetKind.single)
    if kind not in (TargetKind.single, TargetKind.binary):
        raise PaddyError(f"{where} hold single-label classes, not a {kind} target")
    return replace(spec, kind=kind)


def class_folder_labelled(root: Path, train_folder: str, spec: CompetitionSpec, sample: pd.DataFrame) -> Labelled:
    """The paddy competition's layout: one folder per class under train_images/ (or train/, ...); or, where the
    subfolders only hold the images of a labels file (grouping_labels_file), that file's labels."""
    train_dir = root / train_folder
    if grouped := grouping_labels_file(root, train_dir, sample):
        return read_labels(root, grouped, replace(spec, train_folder=train_folder), sample)
    class_dirs = sorted(p for p in train_dir.iterdir() if visible(p) and p.is_dir())
    images: list[Path] = []
    for class_dir in class_dirs:
        if not (files := image_files(class_dir)):
            raise PaddyError(f"class folder {class_dir} has no images")
        images += files
    if len(class_dirs) < 2:
        inside = f"{train_folder}/{class_dirs[0].name}" if class_dirs else ""  # aerial-cactus: train/train/*.jpg
        hint = f" (if a CSV labels the images in {inside}/, give train_folder = {inside!r})" if inside else ""
        raise PaddyError(f"{train_dir} has only one class folder; a classifier needs at least two{hint}")
    filled = replace(classes_spec(spec, f"the class folders under {train_folder}/"), train_folder=train_folder)
    classes = tuple(p.name for p in class_dirs)
    return Labelled(tuple(images), tuple(p.parent.name for p in images), classes, filled)


def positive_last(vocab: tuple[str, ...], spec: CompetitionSpec) -> tuple[str, ...]:
    """The classes in the order the model's outputs take, the positive class last: a binary target is scored
    and submitted on the last class's probability. The description's positive_class (a FAKE of REAL/FAKE),
    else the second in order (1 of 0/1, dog of cat/dog). A binary target of other than two classes is refused
    (it scored its second class against the rest)."""
    if spec.kind is TargetKind.binary and len(vocab) != 2:
        shown = ", ".join(vocab[:4]) + (", ..." if len(vocab) > 4 else "")
        raise PaddyError(f'a binary target has two classes, not {len(vocab)} ({shown}): give kind = "single"')
    if spec.positive_class is None:
        return vocab
    if spec.kind is not TargetKind.binary:
        raise PaddyError(f"positive_class {spec.positive_class!r} is for a binary target, not a {spec.kind} one")
    if spec.positive_class not in vocab:
        raise PaddyError(f"positive_class {spec.positive_class!r} is not one of the classes ({', '.join(vocab)})")
    return (*(name for name in vocab if name != spec.positive_class), spec.positive_class)
