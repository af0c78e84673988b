"""Labels in the training images' file names, as dogs-vs-cats gives them (train/cat.0.jpg, train/dog.12.jpg
and no labels file): the one group of a regular expression, `label_pattern` in [competition]. Where the
description gives none and there is neither a labels file nor class folders, the name before a trailing
number is tried, and taken only where it reads as classes: every name fits, two labels or more, each on
two images or more (IMG_0001.jpg alone is no class).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

from paddy.core.errors import PaddyError
from paddy.data.layout import Labelled, class_order, classes_spec
from paddy.data.locations import image_files
from paddy.settings.competition import CompetitionSpec

NAME_PATTERN = r"^(.+?)[._-]\d+\.\w+$"  # the name before a trailing number: cat.0.jpg, great_pyrenees_12.jpg


def compiled(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled, refused in one line when it is no regular expression or has other than one group."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise PaddyError(f"label_pattern {pattern!r} is not a regular expression: {error}") from None
    if regex.groups != 1:
        raise PaddyError(f"label_pattern {pattern!r} must have one group, the label (it has {regex.groups})")
    return regex


def labels_in_names(images: list[Path], pattern: str) -> list[str | None]:
    """Each image's label by `pattern` (searched in its file name), None where the name does not fit."""
    regex = compiled(pattern)
    return [match.group(1) if (match := regex.search(image.name)) else None for image in images]


def reads_as_classes(labels: list[str | None]) -> bool:
    """Whether labels found without being asked for are classes: all found, two or more, none on one image."""
    counts = Counter(labels)
    return None not in counts and len(counts) >= 2 and min(counts.values()) >= 2


def name_labelled(root: Path, train_folder: str, spec: CompetitionSpec) -> Labelled | None:
    """The images of `train_folder` labelled by their names with the description's label_pattern (every name
    must fit it), else with NAME_PATTERN where that reads as classes; None where it does not."""
    images = image_files(root / train_folder)
    pattern = spec.label_pattern or NAME_PATTERN
    labels = labels_in_names(images, pattern)
    if spec.label_pattern is None and not reads_as_classes(labels):
        return None
    if not images:
        raise PaddyError(f"{root / train_folder} has no images to read labels from their names")
    if None in labels:
        unfit = [image.name for image, label in zip(images, labels) if label is None]
        raise PaddyError(
            f"{len(unfit)} of {len(images)} file names in {train_folder}/ do not fit label_pattern {pattern!r} "
            f"(e.g. {unfit[0]})"
        )
    found = [label for label in labels if label is not None]
    if len(set(found)) < 2:
        raise PaddyError(f"label_pattern {pattern!r} finds one label in {train_folder}/ ({found[0]!r}): too few")
    where = f"the file names in {train_folder}/"
    filled = replace(classes_spec(spec, where), label_pattern=pattern, train_folder=train_folder)
    return Labelled(tuple(images), tuple(found), class_order(found), filled)
