"""Where a competition's files are: its labels CSV, training and test image folders and sample submission,
as the description names them or, where it leaves them out, as Kaggle names them: the usual names first
(train.csv, train_images/, sample_submission.csv), else the one file or folder named like them (Planet's
train_v2.csv, train-jpg/ and sample_submission_v2.csv, the older competitions' trainLabels.csv and
sampleSubmission.csv). Two alike and none usual is a question only the user can answer, so it is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.core.files import read_json
from paddy.settings.competition import CompetitionSpec, recorded_spec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def hidden(name: str) -> bool:
    """Hidden files and folders (`.ipynb_checkpoints`, macOS `._*` files, dotfiles) are not data."""
    return name.startswith(".")


def visible(path: Path) -> bool:
    """`path` is not hidden."""
    return not hidden(path.name)


def is_image_name(name: str) -> bool:
    """A visible file name with an image's extension."""
    return not hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name for a stable order. (os.scandir: a directory entry
    knows whether it is a file without a stat per image, a third of the time on 20k images.)"""
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries if is_image_name(entry.name) and entry.is_file())
    return [folder / name for name in names]


def image_names_below(folder: Path) -> Iterator[tuple[str, str]]:
    """(the folder it is in, its name) of each image file in `folder` and its subfolders (hotel-id's
    train_images/<chain>/) as they are found; nothing hidden, nor inside a hidden folder. Text, not Paths:
    making a Path is most of the time of a listing."""
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not hidden(name)]  # not walked into
        yield from ((parent, name) for name in names if is_image_name(name))


def images_below(folder: Path) -> Iterator[Path]:
    """`image_names_below` as Paths."""
    return (Path(parent, name) for parent, name in image_names_below(folder))


def image_files_below(folder: Path) -> list[Path]:
    """`images_below`, sorted by path (as Path orders them: by their parts)."""
    return sorted(images_below(folder), key=lambda path: path.parts)


def holds_images(folder: Path) -> bool:
    """Whether `folder` is a folder with an image in it or below (stops at the first)."""
    return folder.is_dir() and next(images_below(folder), None) is not None


def images_by_name(folders: list[Path]) -> dict[str, Path]:
    """The images in `folders` and below by file name, which is an image's id: one name in two places is
    refused. A folder without images is refused too, naming it."""
    files: dict[str, Path] = {}
    for folder in folders:
        if not holds_images(folder):
            raise PaddyError(f"{folder} has no images")
        for path in image_files_below(folder):
            if (first := files.setdefault(path.name, path)) != path:
                raise PaddyError(f"{path.name} is in {first.parent}/ and {path.parent}/: an image's name is its id")
    return files


@dataclass(frozen=True)
class Place:
    """One of a competition's files or folders: what it is, the [competition] key that names it, its usual
    names (the first present wins) and whether another name is like them (given lower-cased)."""

    what: str
    key: str
    usual: tuple[str, ...]
    alike: Callable[[str], bool]
    folder: bool  # an image folder, else a file
    several: bool = False  # the key may list several (a test set split over folders)

    def is_there(self, path: Path) -> bool:
        """Whether `path` can be this place: a file, or a folder with images in it or below (siim-isic's train/
        holds only DICOM files; its JPEGs are in jpeg/train/)."""
        return holds_images(path) if self.folder else path.is_file()

    def looked_for(self) -> str:
        """The names looked for, as an error says them."""
        if self.folder:
            return f"{', '.join(name + '/' for name in self.usual)}, one named like them, or one folder down"
        return f"{', '.join(self.usual)}, or one named like them"


def labels_like(name: str) -> bool:
    """train_v2.csv, trainLabels.csv, image_labels.csv; never a sample or a test set's file (test_labels.csv)."""
    named = name.startswith("train") or "label" in name
    return name.endswith(".csv") and named and "sample" not in name and not name.startswith("test")


SAMPLE_GLOB = "*sample*submission*.csv"  # lower-cased, like sample_submission.csv, kaggle_sample_submission.csv


def sample_like(name: str) -> bool:
    return fnmatch(name, SAMPLE_GLOB)


LABELS = Place("labels file", "labels_file", ("train.csv", "labels.csv", "train_labels.csv"), labels_like, False)


def image_folder(what: str, key: str, usual: tuple[str, ...], prefix: str, several: bool = False) -> Place:
    """An image folder: its usual names, else one whose name starts with `prefix` (train-jpg/)."""
    return Place(what, key, usual, lambda name: name.startswith(prefix), True, several)


TRAIN = image_folder("training image folder", "train_folder", ("train_images", "train", "images"), "train")
TEST = image_folder("test image folder", "test_folder", ("test_images", "test", "images"), "test", several=True)
SAMPLE = Place("sample submission", "sample_file", ("sample_submission.csv",), sample_like, False)


def sample_name(sample_file: str | None) -> str:
    """The sample submission's file name: the description's, else the usual sample_submission.csv."""
    return sample_file or SAMPLE.usual[0]


def found_name(root: Path, given: str | None, place: Place) -> str | None:
    """The name `given` (refused when it is not there), else the first usual name present, else the one name
    like them; None when there is none."""
    if given is not None:
        if not ((root / given).is_dir() if place.folder else (root / given).is_file()):
            raise PaddyError(f"{root} has no {place.what} {given}")
        return given
    if usual := usual_name(root, place):
        return usual
    alike = alike_names(root, place)
    if len(alike) > 1:
        several = " (or a list of them, where the test set is split over several)" if place.several else ""
        raise PaddyError(
            f"{root} has {len(alike)} files or folders that could be its {place.what} ({', '.join(alike)}): "
            f"name one with {place.key} in [competition]{several}"
        )
    return alike[0] if alike else one_folder_down(root, place) or usual_folder_without_images(root, place)


def one_folder_down(root: Path, place: Place) -> str | None:
    """An image folder under a usual name one folder down (state-farm's imgs/train/ and imgs/test/), where
    exactly one subfolder holds one; never a file (the sample and labels are beside the folders)."""
    if not place.folder:
        return None
    below = [sub for sub in sorted(root.iterdir()) if visible(sub) and sub.is_dir()]
    found = [f"{sub.name}/{name}" for sub in below if (name := usual_name(sub, place))]
    return found[0] if len(found) == 1 else None


def usual_folder_without_images(root: Path, place: Place) -> str | None:
    """A usual image folder with no images, taken last, so that the error says so (test_images has no images)."""
    return next((name for name in place.usual if place.folder and (root / name).is_dir()), None)


def usual_name(root: Path, place: Place) -> str | None:
    """The first of the usual names of `place` that is in `root`."""
    return next((name for name in place.usual if place.is_there(root / name)), None)


def alike_names(root: Path, place: Place) -> list[str]:
    """The names in `root` like the usual names of `place`, sorted."""
    return sorted(p.name for p in root.iterdir() if visible(p) and place.alike(p.name.lower()) and place.is_there(p))


def found_path(root: Path, given: str | None, place: Place) -> Path:
    """The file or folder `found_name` finds; none is one error line naming what was looked for."""
    if (name := found_name(root, given, place)) is None:
        raise PaddyError(f"{root} has no {place.what} (looked for {place.looked_for()})")
    return root / name


def test_folders(root: Path, given: tuple[str, ...] | None, train_folder: str | None) -> tuple[str, ...]:
    """The test image folders: those given, else the one found_name finds, else, where several are alike, those
    named after the training folder (Planet's train-jpg/: test-jpg/ and test-jpg-additional/, not test-tif-v2/)."""
    if given:
        return tuple(found_name(root, name, TEST) or name for name in given)  # each refused when not there
    try:
        return (found_path(root, None, TEST).relative_to(root).as_posix(),)
    except PaddyError:  # none, or several alike
        suffix = train_folder.removeprefix("train") if train_folder and train_folder.startswith("train") else ""
        if named_after := [name for name in alike_names(root, TEST) if suffix and name.startswith(f"test{suffix}")]:
            return tuple(named_after)
        raise


PRESIZE_MARKER = ".paddy-presize.json"  # in a `paddy presize` copy: its settings and how its source was read


def copied_description(root: Path) -> CompetitionSpec:
    """How a presized copy's source was read, so the copy (named as its user likes, holding only what that
    reading needs) is read alike: the description recorded, the competition alone where an older release
    recorded only that; nothing for a folder that is no copy."""
    marker = root / PRESIZE_MARKER
    recorded = read_json(marker) if marker.is_file() else {}
    if description := recorded.get("description"):
        return recorded_spec(description)
    return CompetitionSpec(slug=recorded.get("competition"))
