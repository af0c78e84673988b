"""k-fold cross-validation folds: drawn once per dataset, K and fold seed, stratified by label,
and kept in the output folder so every entry and every later run holds out the same images.

`<out>/folds/k<K>-seed<S>-<images digest>.csv` lists image_id, label and fold (1..K). Runs
record the file's digest (`folds_sha256`), which is how `paddy ensemble` knows, rather than
assumes, that members' out-of-fold predictions can be scored together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes, read_csv
from paddy.data.competition import CompetitionData, ids_fingerprint
from paddy.settings.entry import ModelEntry

FOLDS_FOLDER = "folds"
COLUMNS = ["image_id", "label", "fold"]


@dataclass(frozen=True)
class Folds:
    """Which fold (1..k) holds out each training image, and the digest runs record of it."""

    path: Path
    k: int
    fold_of: dict[str, int]  # image_id -> fold
    sha256: str

    def identity(self) -> dict[str, str]:
        """What a fold's run records of its folds (config.json and predictions), so its out-of-fold
        predictions are scored only with those of runs on the same folds."""
        return {"folds_sha256": self.sha256}

    def held_out(self, fold: int) -> set[str]:
        """The image_ids fold `fold` holds out (its validation set, and its out-of-fold predictions)."""
        return {image_id for image_id, f in self.fold_of.items() if f == fold}


def labelled_ids(data: CompetitionData) -> tuple[list[str], list[str]]:
    """Every training image's id and label (its class folder); ids must be unique to be assigned a fold."""
    ids, labels = [p.name for p in data.train_images], [p.parent.name for p in data.train_images]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise PaddyError(f"training image name {repeated} appears in more than one class folder; folds need unique ids")
    return ids, labels


def folds_path(out: Path, ids: list[str], labels: list[str], k: int, seed: int) -> Path:
    """One file per dataset (its labelled training images), K and fold seed."""
    digest = ids_fingerprint([f"{label}/{i}" for i, label in zip(ids, labels)])
    return out / FOLDS_FOLDER / f"k{k}-seed{seed}-{digest}.csv"


def draw_folds(labels: list[str], k: int, seed: int) -> np.ndarray:
    """Fold 1..k of each image, stratified by label (scikit-learn's StratifiedKFold, shuffled)."""
    counts = pd.Series(labels).value_counts()
    if counts.min() < k:
        raise PaddyError(
            f"folds {k}: class {counts.idxmin()} has only {counts.min()} training images; "
            f"every fold needs one of each class (use fewer folds)"
        )
    fold = np.zeros(len(labels), dtype=int)
    splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
    for index, (_, held_out) in enumerate(splits, start=1):
        fold[held_out] = index
    return fold


def folds_table(ids: list[str], labels: list[str], k: int, seed: int) -> bytes:
    """The folds file's bytes, in the training images' order."""
    table = pd.DataFrame({"image_id": ids, "label": labels, "fold": draw_folds(labels, k, seed)})
    return table.to_csv(index=False, lineterminator="\n").encode()


def read_folds(path: Path, expected: dict[str, str], k: int) -> Folds:
    """A folds file, refused unless it assigns exactly the `expected` images (id -> label) to folds 1..k."""
    table = read_csv(path, dtype={"image_id": str, "label": str})
    if list(table.columns) != COLUMNS or len(table) != len(expected):
        raise PaddyError(f"{path} is not a folds file of this data ({COLUMNS}); delete it to draw the folds again")
    if dict(zip(table["image_id"], table["label"])) != expected:
        raise PaddyError(f"{path} lists other training images or labels; delete it to draw the folds again")
    folds = set(table["fold"].tolist())
    if folds != set(range(1, k + 1)):
        raise PaddyError(f"{path} is not a {k}-fold assignment (folds {sorted(map(str, folds))}); delete it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Folds(path, k, dict(zip(table["image_id"], (int(f) for f in table["fold"]))), digest)


def folds_for(out: Path, data: CompetitionData, k: int, seed: int) -> Folds:
    """The folds of this data, K and seed: the file under `out` if there is one (so later runs hold out
    what earlier ones did), else drawn and written atomically (the draw is seeded: two processes
    drawing at once write the same bytes)."""
    ids, labels = labelled_ids(data)
    path = folds_path(out, ids, labels, k, seed)
    if not path.is_file():
        atomic_write_bytes(path, folds_table(ids, labels, k, seed))
    return read_folds(path, dict(zip(ids, labels)), k)


def entry_folds(out: Path, data: CompetitionData, entry: ModelEntry) -> Folds | None:
    """The folds a fold's run holds its fold out of; None for an entry without folds."""
    return folds_for(out, data, entry.folds, entry.fold_seed) if entry.folds is not None else None
