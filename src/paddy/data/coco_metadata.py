"""Labels and test ids in COCO-style metadata, as the FGVC competitions ship them (herbarium 2020-2022,
iWildCam): a JSON file whose "images" give each image an id and a file_name and whose "annotations" give an
image_id its category_id (train_metadata.json, train/metadata.json, iwildcam2020_train_annotations.json); and
the test images with the ids the sample submission lists (test_metadata.json, a list of images, or
test/metadata.json). The class is the category_id, what the sample asks for; an image is found by its file
name below its folder, wherever file_name puts it (herbarium's train_images/155/04/15504__037.jpg).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from paddy.core.errors import PaddyError
from paddy.core.progress import report_progress
from paddy.data.layout import Labelled, class_order, classes_spec, enough_to_train, files_of_ids
from paddy.data.locations import LABELS, TRAIN, found_name, found_path, images_by_name, usual_name, visible
from paddy.settings.competition import CompetitionSpec

CATEGORY = "category_id"  # the annotation key a class is read from, unless label_columns names another
JSON = ".json"
IMAGE_KEYS = ("id", "image_id")  # COCO's, herbarium 2022's
MIB, CHUNK_MIB = 2**20, 8


@dataclass(frozen=True)
class Metadata:
    """A metadata file (its name in the data folder) and its image records (with the annotations of training
    metadata)."""

    name: str
    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]] | None


def image_records(content: Any) -> list[dict[str, Any]] | None:
    """The image records of a metadata file (a list of them, or its "images"), each with a file_name; None
    where the JSON holds something else."""
    images = content.get("images") if isinstance(content, dict) else content
    if not isinstance(images, list) or not all(isinstance(i, dict) and "file_name" in i for i in images):
        return None
    return images


def read_large_json(path: Path) -> Any:
    """A JSON file of the competition, read CHUNK_MIB at a time with its progress reported (herbarium 2022's
    train_metadata.json is 667 MB); one that is no JSON is one line naming it."""
    what, total = f"reading {path.name} (MiB)", -(-path.stat().st_size // MIB)
    data = bytearray()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_MIB * MIB):
            data += chunk
            report_progress(what, -(-len(data) // MIB), total)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PaddyError(f"{path} is no JSON: {error}") from None


def looks_like_metadata(content: Any, training: bool) -> bool:
    """Whether a JSON means to be metadata: it holds "images" (or, for training, "annotations"), or it is a
    list of records (test metadata, as herbarium 2022's)."""
    if isinstance(content, dict):
        return "images" in content or (training and "annotations" in content)
    return not training and isinstance(content, list) and all(isinstance(record, dict) for record in content)


def read_metadata(root: Path, name: str, training: bool, given: bool) -> Metadata | None:
    """The metadata file `name` of the data folder (training metadata: with its annotations). A JSON that holds
    neither "images" nor "annotations" is none (None), unless `given`; one that holds them unlike metadata (no
    list, an image without its file_name) is refused in one line: it is not to be passed over."""
    content = read_large_json(root / name)
    images = image_records(content)
    annotations = content.get("annotations") if isinstance(content, dict) else None
    if images is not None and (not training or isinstance(annotations, list)):
        return Metadata(name, images, annotations if training else None)
    if given or looks_like_metadata(content, training):
        held = 'an "images" list (each with a file_name) and "annotations"' if training else "image records"
        raise PaddyError(f"{root / name} is no COCO-style metadata: it needs {held}")
    return None


def metadata_names(root: Path, word: str, folders: tuple[str, ...]) -> list[str]:
    """JSON files of the data folder named with `word` (train_metadata.json), and the metadata.json inside each
    of the image `folders` (herbarium 2021's train/metadata.json, 2020's nybg2020/train/metadata.json)."""
    names = [p.name for p in sorted(root.iterdir()) if p.is_file() and visible(p) and p.suffix.lower() == JSON]
    inside = [f"{folder}/metadata.json" for folder in folders]
    return [name for name in names if word in name.lower()] + [name for name in inside if (root / name).is_file()]


def found_metadata(root: Path, given: str | None, word: str, folders: tuple[str, ...], key: str) -> Metadata | None:
    """The metadata file given (refused when it is none), else the one named with `word` or in the image
    `folders` that is one; several are a question for the user, asked with `key`."""
    training = word == "train"
    if given is not None:
        if not (root / given).is_file():
            raise PaddyError(f"{root} has no {given}")
        return read_metadata(root, given, training, given=True)
    found = [m for name in metadata_names(root, word, folders) if (m := read_metadata(root, name, training, False))]
    if len(found) > 1:
        names = ", ".join(m.name for m in found)
        raise PaddyError(f"{root} has {len(found)} metadata files ({names}): name one with {key} in [competition]")
    return found[0] if found else None


def train_metadata(root: Path, spec: CompetitionSpec) -> Metadata | None:
    """The training metadata: a JSON labels_file, else one found where no labels CSV is (a CSV wins)."""
    if spec.label_pattern or (spec.labels_file and not spec.labels_file.lower().endswith(JSON)):
        return None
    if spec.labels_file is None and usual_name(root, LABELS):
        return None
    folder = found_name(root, spec.train_folder, TRAIN)
    return found_metadata(root, spec.labels_file, "train", (folder,) if folder else (), "labels_file")


def image_id(record: dict[str, Any], where: str) -> str:
    """An image record's id (COCO's "id", herbarium 2022's "image_id") as text."""
    key = next((k for k in IMAGE_KEYS if k in record), None)
    if key is None:
        raise PaddyError(f"{where}: an image has no id ({' or '.join(IMAGE_KEYS)}): {record}")
    return str(record[key])


def file_names(metadata: Metadata, where: str) -> dict[str, str]:
    """Each image id's file name (without the folders file_name puts it in); an id listed twice is refused."""
    ids = [image_id(r, where) for r in metadata.images]
    if twice := next((i for i, n in Counter(ids).items() if n > 1), None):
        raise PaddyError(f"{where} lists image {twice} more than once")
    return dict(zip(ids, (PurePosixPath(str(r["file_name"])).name for r in metadata.images)))


def annotated(metadata: Metadata, label: str, where: str) -> dict[str, str]:
    """Each annotated image's label (the annotation's `label` key as text); an image annotated with two labels
    is refused: paddy trains one class per image."""
    labels: dict[str, set[str]] = defaultdict(set)
    for note in metadata.annotations or []:
        if not isinstance(note, dict) or "image_id" not in note or note.get(label) is None:
            raise PaddyError(f"{where}: an annotation has no image_id or {label}: {note}")
        labels[str(note["image_id"])].add(str(note[label]))
    if twice := next((i for i, found in labels.items() if len(found) > 1), None):
        several = len(labels[twice])
        raise PaddyError(f"{where}: image {twice} is annotated with {several} {label}s; paddy trains one each")
    return {image: found.pop() for image, found in labels.items()}


def metadata_spec(spec: CompetitionSpec, where: str) -> CompetitionSpec:
    """The description of labels in metadata: one class per image, no CSV columns (label_columns may name the
    annotation key, group_column an image key, e.g. iWildCam's location)."""
    if spec.label_columns and len(spec.label_columns) > 1:
        raise PaddyError(f"label_columns names one annotation key of {where}, not {len(spec.label_columns)}")
    return classes_spec(spec, f"the annotations of {where}", keys=("label_columns", "group_column"))


def image_groups(metadata: Metadata, ids: list[str], key: str, where: str) -> tuple[str, ...]:
    """Each image's value of the image key `key` (the group folds never split)."""
    by_id = {image_id(r, where): r for r in metadata.images}
    if missing := next((i for i in ids if key not in by_id[i]), None):
        raise PaddyError(f"{where}: image {missing} has no {key!r} (group_column)")
    return tuple(str(by_id[i][key]) for i in ids)


def metadata_labelled(root: Path, metadata: Metadata, spec: CompetitionSpec) -> Labelled:
    """The annotated images of the training metadata with their classes, found below the training folder."""
    where = metadata.name
    spec = metadata_spec(spec, where)
    label = spec.label_columns[0] if spec.label_columns else CATEGORY
    labels, names = annotated(metadata, label, where), file_names(metadata, where)
    if unlabelled := [i for i in names if i not in labels]:
        raise PaddyError(f"{where}: {len(unlabelled)} of {len(names)} images have no annotation (e.g. {unlabelled[0]})")
    ids = list(names)
    folder = found_path(root, spec.train_folder, TRAIN)
    images = files_of_ids(list(names.values()), images_by_name([folder]), None, f"{where} against {folder.name}/")
    targets = tuple(labels[i] for i in ids)
    enough_to_train(len(images), len(set(targets)), where)
    groups = image_groups(metadata, ids, spec.group_column, where) if spec.group_column else None
    filled = replace(spec, labels_file=where, label_columns=(label,), train_folder=folder.relative_to(root).as_posix())
    return Labelled(tuple(images), targets, class_order(list(targets)), filled, groups)


def test_id_files(root: Path, spec: CompetitionSpec, folders: tuple[str, ...]) -> tuple[str, dict[str, str]] | None:
    """The test metadata's name and each test image's file name by its id (the sample's ids), where the test
    images (in `folders`) are listed in metadata (given as test_metadata, else found); None where they are not."""
    if (metadata := found_metadata(root, spec.test_metadata, "test", folders, "test_metadata")) is None:
        return None
    return metadata.name, file_names(metadata, metadata.name)
