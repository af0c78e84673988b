"""k-fold cross-validation folds: drawn once per dataset, K and fold seed, and kept in the output folder
so every entry and every later run holds out the same images.

How they are drawn follows the target (`draw_folds`): stratified by class (single, binary, ordinal), by
quantile bins of the value (regression), tag by tag (multi); never splitting a group when the data names
one; or the user's own fold column, taken as it is. A class too rare to be in every fold is kept, with a
warning that says in how many folds it is held out (library code never prints: the caller does).

`<out>/folds/k<K>-seed<S>-<digest>.csv` lists image_id, label and fold (1..K). Runs record the file's
digest (`folds_sha256`), which is how `paddy ensemble` knows, rather than assumes, that members'
out-of-fold predictions can be scored together.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from paddy.core.errors import PaddyError
from paddy.core.files import atomic_write_bytes, read_csv
from paddy.data.competition import CompetitionData, ids_fingerprint
from paddy.settings.competition import TargetKind
from paddy.settings.entry import ModelEntry

FOLDS_FOLDER = "folds"
COLUMNS = ["image_id", "label", "fold"]
MAX_BINS = 10  # regression: at most this many quantile bins of the target to stratify on


@dataclass(frozen=True)
class Folds:
    """Which fold (1..k) holds out each training image, and the digest runs record of it."""

    path: Path
    k: int
    fold_of: dict[str, int]  # image_id -> fold
    sha256: str
    warnings: tuple[str, ...] = ()  # e.g. a class too rare to be held out in every fold, for the caller to print

    def identity(self) -> dict[str, str]:
        """What a fold's run records of its folds (config.json and predictions), so its out-of-fold
        predictions are scored only with those of runs on the same folds."""
        return {"folds_sha256": self.sha256}

    def held_out(self, fold: int) -> set[str]:
        """The image_ids fold `fold` holds out (its validation set, and its out-of-fold predictions)."""
        return {image_id for image_id, f in self.fold_of.items() if f == fold}


@dataclass(frozen=True)
class FoldInput:
    """What folds are drawn from, one entry per labelled training image: its id (file name), its label
    as text (the class name; space-joined tags for multi; the number for regression and ordinal), and
    optionally its group (never split across folds) or the user's own fold (0..K-1 or 1..K)."""

    ids: tuple[str, ...]
    label_texts: tuple[str, ...]
    kind: TargetKind
    groups: tuple[str, ...] | None = None
    user_folds: tuple[int, ...] | None = None


def labelled_ids(data: CompetitionData) -> tuple[list[str], list[str]]:
    """Every training image's id and label as text; ids must be unique to be assigned a fold (class folders
    could hold one name twice)."""
    ids, labels = [p.name for p in data.train_images], data.label_texts()
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise PaddyError(f"training image name {repeated} appears in more than one class folder; folds need unique ids")
    return ids, labels


def folds_digest(inputs: FoldInput) -> str:
    """The digest in the folds file's name: the labelled images and, when there are any, the kind (other
    than single), groups and user folds, so data that would be drawn differently gets its own file."""
    keys = [f"{label}/{i}" for i, label in zip(inputs.ids, inputs.label_texts)]
    if inputs.kind is not TargetKind.single:
        keys = [f"{inputs.kind}:{key}" for key in keys]
    if inputs.groups is not None:
        keys = [f"{key}|group={group}" for key, group in zip(keys, inputs.groups)]
    if inputs.user_folds is not None:
        keys = [f"{key}|fold={fold}" for key, fold in zip(keys, inputs.user_folds)]
    return ids_fingerprint(keys)


def check_inputs(inputs: FoldInput, k: int) -> None:
    """Refuse what no k-fold assignment can be made of: repeated ids, fewer images (or groups) than folds."""
    n = len(inputs.ids)
    if len({len(c) for c in (inputs.ids, inputs.label_texts, inputs.groups, inputs.user_folds) if c is not None}) > 1:
        raise ValueError("FoldInput columns differ in length")
    if repeated := next((i for i, count in Counter(inputs.ids).items() if count > 1), None):
        raise PaddyError(f"training image {repeated} is listed more than once; folds need unique ids")
    if n < k:
        raise PaddyError(f"folds {k}: only {n} training images; every fold needs at least one (use fewer folds)")
    if inputs.groups is not None and inputs.user_folds is None and (groups := len(set(inputs.groups))) < k:
        raise PaddyError(f"folds {k}: only {groups} groups; every fold needs a group of its own (use fewer folds)")


def user_fold_numbers(values: tuple[int, ...], k: int) -> np.ndarray:
    """The user's fold column as folds 1..k: 0..k-1 is shifted up, 1..k taken as it is, anything else refused."""
    present = sorted(set(values))
    if present in (list(range(k)), list(range(1, k + 1))):
        return np.asarray(values, dtype=int) + (1 - present[0])
    if present[0] in (0, 1) and present == list(range(present[0], present[-1] + 1)):
        raise PaddyError(
            f"the fold column numbers {len(present)} folds ({present[0]}..{present[-1]}) but folds = {k}; "
            f"set folds = {len(present)}"
        )
    shown = ", ".join(map(str, present[:6]))
    raise PaddyError(f"the fold column's values ({shown}) are not folds 1..{k} or 0..{k - 1}")


def tag_matrix(label_texts: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Multi-label texts ("scab rust") as their sorted tags and a 0/1 matrix, one column per tag."""
    tags = sorted({tag for text in label_texts for tag in text.split()})
    column = {tag: j for j, tag in enumerate(tags)}
    matrix = np.zeros((len(label_texts), len(tags)), dtype=int)
    for i, text in enumerate(label_texts):
        matrix[i, [column[tag] for tag in text.split()]] = 1
    return tags, matrix


def value_bins(label_texts: tuple[str, ...], k: int) -> np.ndarray:
    """Regression targets as equal-count bins of their rank. Stratifying on these gives every fold the
    same spread of targets (a plain shuffled KFold can, by chance, hold out most of the high ones), and
    bins by count rather than width hold at least about k images each, so each reaches every fold."""
    values = np.array([_number(text) for text in label_texts])
    n_bins = max(1, min(MAX_BINS, len(values) // k))
    bins = np.empty(len(values), dtype=int)
    bins[np.argsort(values, kind="stable")] = np.arange(len(values)) * n_bins // len(values)
    return bins


def _number(text: str) -> float:
    """A regression target's text as its value (one line naming it when it is not a number)."""
    try:
        return float(text)
    except ValueError:
        raise PaddyError(f"regression target {text!r} is not a number") from None


def _folds_of_splits(splits, n: int) -> np.ndarray:
    """A scikit-learn splitter's held-out sets as each image's fold 1..k."""
    fold = np.zeros(n, dtype=int)
    for index, (_, held_out) in enumerate(splits, start=1):
        fold[held_out] = index
    return fold


def _shuffled_groups(groups: tuple[str, ...], seed: int) -> np.ndarray:
    """Groups as integer codes in a seeded random order: GroupKFold breaks ties between equal-sized groups
    by code, so the fold seed decides them (GroupKFold's own shuffle needs scikit-learn 1.6)."""
    uniques, codes = np.unique(np.asarray(groups), return_inverse=True)
    return np.random.default_rng(seed).permutation(len(uniques))[codes]


def _group_folds(groups: tuple[str, ...], k: int, seed: int) -> np.ndarray:
    """Folds of whole groups, not stratified (GroupKFold: each group to the fold with fewest images so far)."""
    x = np.zeros(len(groups))
    return _folds_of_splits(GroupKFold(n_splits=k).split(x, groups=_shuffled_groups(groups, seed)), len(groups))


def _dealt(strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Folds when every class is rarer than k (where StratifiedKFold refuses): the images shuffled, sorted
    by class and dealt round the folds, so each class is spread over as many folds as it has images."""
    order = np.random.default_rng(seed).permutation(len(strata))
    order = order[np.argsort(strata[order], kind="stable")]
    fold = np.empty(len(strata), dtype=int)
    fold[order] = np.arange(len(strata)) % k + 1
    return fold


def _drawn(inputs: FoldInput, k: int, seed: int) -> np.ndarray:
    """Each image's fold 1..k, drawn by the strategy of its kind (see the module docstring)."""
    n, x = len(inputs.ids), np.zeros(len(inputs.ids))
    if inputs.kind is TargetKind.multi and inputs.groups is not None:
        return _group_folds(inputs.groups, k, seed)
    if inputs.kind is TargetKind.multi:
        tags, matrix = tag_matrix(inputs.label_texts)
        if not tags:
            raise PaddyError("multi-label folds: no training image has a tag (every label list is empty)")
        splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return _folds_of_splits(splitter.split(x, matrix), n)
    strata = (
        value_bins(inputs.label_texts, k) if inputs.kind is TargetKind.regression else np.asarray(inputs.label_texts)
    )
    rare = pd.Series(strata).value_counts().max() < k  # scikit-learn refuses when every class is rarer than k
    if inputs.groups is not None and rare:
        return _group_folds(inputs.groups, k, seed)
    if inputs.groups is not None:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return _folds_of_splits(splitter.split(x, strata, groups=np.asarray(inputs.groups)), n)
    if rare:
        return _dealt(strata, k, seed)
    return _folds_of_splits(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, strata), n)


NAMED_UP_TO = 5  # classes warned about a line each; more (hotel-id's thousands of rare hotels) are one line


def coverage_warnings(inputs: FoldInput, fold: np.ndarray, k: int) -> list[str]:
    """A line for each class (or tag, or grade) that is not held out in every fold: the folds whose
    validation set lacks it cannot score it, so their scores are not comparable with the others'. More than
    NAMED_UP_TO are one line, with the first as an example."""
    if inputs.kind is TargetKind.regression:
        return []
    noun, nouns = {TargetKind.multi: ("tag", "tags"), TargetKind.ordinal: ("grade", "grades")}.get(
        inputs.kind, ("class", "classes")
    )
    members: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(inputs.label_texts):
        for name in text.split() if inputs.kind is TargetKind.multi else [text]:
            members[name].append(i)
    lines = []
    for name, index in sorted(members.items()):
        if (held := len(set(fold[index].tolist()))) < k:
            count = f"has only {len(index)} images" if len(index) < k else f"has {len(index)} images"
            lines.append(f"{noun} {name} {count}: it is held out in {held} of {k} folds")
    if len(lines) > NAMED_UP_TO:
        return [f"{len(lines)} {nouns} are not held out in all {k} folds (e.g. {lines[0]})"]
    return lines


def draw_folds(inputs: FoldInput, k: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Fold 1..k of each image (in the inputs' order) and the warnings about the draw; the same inputs, k
    and seed always draw the same folds."""
    check_inputs(inputs, k)
    if inputs.user_folds is not None:
        fold = user_fold_numbers(inputs.user_folds, k)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scikit-learn's small-class note: ours names the class
            fold = _drawn(inputs, k, seed)
    if empty := sorted(set(range(1, k + 1)) - set(fold.tolist())):
        raise PaddyError(
            f"folds {k}: fold {empty[0]} holds out no image (its groups went to other folds); use fewer folds"
        )
    return fold, coverage_warnings(inputs, fold, k)


def folds_table(inputs: FoldInput, k: int, seed: int) -> bytes:
    """The folds file's bytes, in the training images' order."""
    fold, _ = draw_folds(inputs, k, seed)
    table = pd.DataFrame({"image_id": inputs.ids, "label": inputs.label_texts, "fold": fold})
    return table.to_csv(index=False, lineterminator="\n").encode()


def read_folds(path: Path, expected: dict[str, str], k: int) -> Folds:
    """A folds file, refused unless it assigns exactly the `expected` images (id -> label) to folds 1..k."""
    table = read_csv(path, dtype={"image_id": str, "label": str}, na_filter=False)  # an empty tag list stays ""
    if list(table.columns) != COLUMNS or len(table) != len(expected):
        raise PaddyError(f"{path} is not a folds file of this data ({COLUMNS}); delete it to draw the folds again")
    if dict(zip(table["image_id"], table["label"])) != expected:
        raise PaddyError(f"{path} lists other training images or labels; delete it to draw the folds again")
    folds = set(table["fold"].tolist())
    if folds != set(range(1, k + 1)):
        raise PaddyError(f"{path} is not a {k}-fold assignment (folds {sorted(map(str, folds))}); delete it")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Folds(path, k, dict(zip(table["image_id"], (int(f) for f in table["fold"]))), digest)


def folds_of(out: Path, inputs: FoldInput, k: int, seed: int) -> Folds:
    """The folds of these inputs, K and seed: the file under `out` if there is one (so later runs hold out
    what earlier ones did), else drawn and written atomically (the draw is seeded: two processes drawing
    at once write the same bytes). Its warnings are worked out from the file, so a reused one has them too."""
    path = out / FOLDS_FOLDER / f"k{k}-seed{seed}-{folds_digest(inputs)}.csv"
    if not path.is_file():
        atomic_write_bytes(path, folds_table(inputs, k, seed))
    folds = read_folds(path, dict(zip(inputs.ids, inputs.label_texts)), k)
    fold = np.array([folds.fold_of[i] for i in inputs.ids])
    return replace(folds, warnings=tuple(coverage_warnings(inputs, fold, k)))


def folds_for(out: Path, data: CompetitionData, k: int, seed: int) -> Folds:
    """The folds of the data, K and seed: stratified for its target kind, whole groups of its group column,
    or its own fold column."""
    ids, labels = labelled_ids(data)
    groups = tuple(data.groups[i] for i in ids) if data.groups else None
    user_folds = tuple(data.user_folds[i] for i in ids) if data.user_folds else None
    return folds_of(out, FoldInput(tuple(ids), tuple(labels), data.kind, groups, user_folds), k, seed)


def entry_folds(out: Path, data: CompetitionData, entry: ModelEntry) -> Folds | None:
    """The folds a fold's run holds its fold out of; None for an entry without folds."""
    return folds_for(out, data, entry.folds, entry.fold_seed) if entry.folds is not None else None
