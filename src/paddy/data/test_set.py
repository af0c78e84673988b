"""The test images: the sample submission's ids matched to the files of the test folders, by name (with or
without the extension) or through the file names test metadata gives the ids (paddy.data.coco_metadata)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paddy.core.errors import PaddyError
from paddy.data.layout import files_of_ids
from paddy.data.locations import images_by_name


def sample_ids(sample_csv: Path, sample: pd.DataFrame) -> list[str]:
    """The sample's ids (text: read_sample reads every column as it is written), each once."""
    ids = sample.iloc[:, 0]
    if ids.duplicated().any():
        raise PaddyError(f"{sample_csv} lists {ids[ids.duplicated()].iloc[0]!r} more than once")
    return list(ids)


def id_files_of(
    sample_csv: Path, ids: list[str], listed: tuple[str, dict[str, str]] | None, given: bool
) -> dict[str, str] | None:
    """Each sample id's test file name where test metadata lists the test images by id (herbarium 2022's Id 0
    is 000/test-000000.jpg); None where the ids name the files themselves: no metadata, or metadata found (not
    `given`) that lists none of the sample's ids, so is about something else. One that lists some is refused."""
    if listed is None:
        return None
    name, files = listed
    missing = [i for i in ids if i not in files]
    if len(missing) == len(ids) and not given:
        return None
    if missing:
        raise PaddyError(f"{sample_csv}: {len(missing)} of {len(ids)} ids are not in {name} (e.g. {missing[0]!r})")
    return {i: files[i] for i in ids}


def test_images_of(sample_csv: Path, names: list[str], folders: list[Path], shared: bool) -> list[Path]:
    """The test images, sorted: the sample's ids (or the file names test metadata gives them) matched to the files
    of `folders` (with or without their extension). Folders of their own must hold exactly the images the sample
    lists, each name once."""
    where = ", ".join(f"{folder.name}/" for folder in folders)
    files = images_by_name(folders)  # aerial-cactus: test/test/*.jpg, below test/
    images = files_of_ids(names, files, None, f"{sample_csv} does not match {where}")
    not_listed = sorted(set(files.values()) - set(images)) if not shared else []
    if not_listed:
        raise PaddyError(
            f"{sample_csv} does not match {where}: {len(not_listed)} test images it does not list "
            f"(e.g. {not_listed[0].name})"
        )
    return sorted(images)
