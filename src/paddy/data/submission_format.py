"""A submission in the sample submission's own format, whatever the target: the sample's header and ids, and
values of the shape its columns ask for (a class, one probability per class, the positive class's probability,
a number, a list of labels). Ids join on file names (with or without the extension), never on position.

The decisions (thresholds, cut-points) are applied with paddy.core.decisions' rules, as the CV scores apply them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from paddy.core.decisions import grades, labels_on
from paddy.core.errors import PaddyError
from paddy.core.files import read_csv
from paddy.settings.competition import MetricName, TargetKind

DEFAULT_THRESHOLD = 0.5
TOP_K = 5  # map5: five guesses per image


class SampleShape(StrEnum):
    """What the sample's value columns hold."""

    label = "label"  # one column: a class name (or number)
    class_probabilities = "class_probabilities"  # one column per class
    positive_probability = "positive_probability"  # one column: the positive class's probability
    number = "number"  # one numeric column: a regression value or an ordinal grade
    label_list = "label_list"  # one column: space-separated labels (tags, or map5's five guesses)


@dataclass(frozen=True)
class SampleFormat:
    """The sample submission's format: header, what its values are, and how its ids name the test images."""

    id_column: str
    columns: tuple[str, ...]  # the sample's header, in order
    shape: SampleShape
    value_columns: tuple[str, ...]
    ids_with_extension: bool  # ids are the image file names ("1.jpg"), not their stems ("1")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, the shape as its name)."""
        d = asdict(self)
        return {**d, "columns": list(self.columns), "value_columns": list(self.value_columns), "shape": str(self.shape)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SampleFormat:
        """The format a run recorded with `to_json`."""
        return cls(
            id_column=d["id_column"],
            columns=tuple(d["columns"]),
            shape=SampleShape(d["shape"]),
            value_columns=tuple(d["value_columns"]),
            ids_with_extension=bool(d["ids_with_extension"]),
        )


def read_sample(sample_csv: Path) -> pd.DataFrame:
    """sample_submission.csv as strings (ids such as "007" kept as written): an id column, then what is predicted."""
    if not sample_csv.is_file():
        inside = sorted(p for p in sample_csv.parent.glob(f"*/{sample_csv.name}") if p.is_file())
        hint = f"; did you mean {inside[0].parent}?" if inside else ""  # a --data one folder too high
        raise PaddyError(f"{sample_csv.parent} has no {sample_csv.name}{hint}")
    sample = read_csv(sample_csv, dtype=str, keep_default_na=False)
    if len(sample.columns) < 2:
        raise PaddyError(
            f"{sample_csv} should have at least two columns (image id, then what is predicted), "
            f"not {list(sample.columns)}"
        )
    return sample


def named_sample(sample: pd.DataFrame, id_files: Mapping[str, str] | None) -> pd.DataFrame:
    """The sample with each id replaced by its test file's name, where test metadata gives the files other names
    than the ids (herbarium 2022's Id 0 is test-000000.jpg): what the predictions' image ids join on."""
    if not id_files:
        return sample
    return sample.assign(**{str(sample.columns[0]): [id_files[str(i)] for i in sample.iloc[:, 0]]})


def ids_way(sample_ids: list[str], test_files: list[str]) -> bool | None:
    """True when the ids are the test file names, False when they are the names without the extension, None when
    they are neither; a sample that lists only some test images (or an image twice) is neither."""
    ids = set(sample_ids)
    if len(ids) != len(sample_ids):
        return None
    if ids == set(test_files):
        return True
    return False if ids == {Path(name).stem for name in test_files} else None


def id_matching(sample_ids: list[str], test_files: list[str]) -> bool:
    """Whether the ids carry the extension: the way more of them name a test image (ties: with it). The rows
    either way leaves without an image are refused later, row by row; an id naming no image either way is here."""
    ids = set(sample_ids)
    with_ext, stems = ids & set(test_files), ids & {Path(name).stem for name in test_files}
    if with_ext or stems:
        return len(with_ext) >= len(stems)
    example = min(test_files, default="none")
    raise PaddyError(
        f"sample submission ids match the test images neither way: none of its {len(ids)} ids is a test image "
        f"name with or without the extension (e.g. id {sample_ids[0]!r}, test image {example!r})"
    )


def class_columns(value_columns: tuple[str, ...], vocab: tuple[str, ...]) -> None:
    """Refuse probability columns that are not exactly the classes (any order): name what is missing or extra."""
    missing, extra = sorted(set(vocab) - set(value_columns)), sorted(set(value_columns) - set(vocab))
    if missing or extra:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"extra {', '.join(extra)}"] if extra else []
        raise PaddyError(f"sample submission's class columns are not the classes: {'; '.join(parts)}")


LABEL_METRICS = (MetricName.accuracy, MetricName.error_rate, MetricName.f1_macro)


def value_shape(value_columns: tuple[str, ...], kind: TargetKind, metric: MetricName | None) -> SampleShape:
    """What one value column holds, for this kind of target and metric."""
    if len(value_columns) > 1 and kind in (TargetKind.regression, TargetKind.ordinal):
        raise PaddyError(
            f"the sample submission asks for {len(value_columns)} numbers an image ({', '.join(value_columns)}); "
            "paddy predicts one"
        )
    if len(value_columns) > 1:
        return SampleShape.class_probabilities
    if kind == TargetKind.binary:
        # a metric on decided classes scores the class; the others (roc_auc, log_loss) the probability
        return SampleShape.label if metric in LABEL_METRICS else SampleShape.positive_probability
    if kind in (TargetKind.regression, TargetKind.ordinal):
        return SampleShape.number
    if kind == TargetKind.multi or metric == MetricName.map5:
        return SampleShape.label_list
    return SampleShape.label


def infer_sample_format(
    sample: pd.DataFrame,
    kind: TargetKind,
    vocab: tuple[str, ...],
    test_files: list[str],
    metric: MetricName | None = None,
) -> SampleFormat:
    """The sample's format, from its header, the kind of target and the test image file names."""
    columns = tuple(str(c) for c in sample.columns)
    if len(columns) < 2 or sample.empty:
        raise PaddyError(f"sample submission is empty (columns {list(columns)}, {len(sample)} rows)")
    value_columns = columns[1:]
    shape = value_shape(value_columns, kind, metric)
    if shape == SampleShape.class_probabilities:
        class_columns(value_columns, vocab)
    with_extension = id_matching(list(sample[columns[0]].astype(str)), test_files)
    return SampleFormat(columns[0], columns, shape, value_columns, with_extension)


def ordinal_grades(values: np.ndarray, decisions: dict[str, Any]) -> np.ndarray:
    """Integer grades from the recorded cut-points; without them, halfway between consecutive grades (the
    grades' range when recorded, else every integer: the value rounded, halves up)."""
    if "cutpoints" in decisions:
        lowest = int(decisions.get("grades", [0])[0])
        return grades(values, decisions["cutpoints"], lowest)
    if "grades" in decisions:
        low, high = (int(g) for g in decisions["grades"])
        return grades(values, [g + 0.5 for g in range(low, high)], low)
    return np.floor(values + 0.5).astype(int)


def tag_lists(probs: np.ndarray, vocab: tuple[str, ...], thresholds: list[float] | None) -> list[str]:
    """Each image's tags that are on, in vocab order; an image with none on gets its most probable tag, since
    an empty prediction scores 0 on F1 whatever the truth, and one guessed tag can only do better."""
    if thresholds is not None and len(thresholds) != len(vocab):
        raise PaddyError(f"predictions record {len(thresholds)} thresholds for {len(vocab)} tags")
    on = labels_on(probs, thresholds if thresholds is not None else [DEFAULT_THRESHOLD] * len(vocab))
    return [" ".join(tag for tag, is_on in zip(vocab, row) if is_on) for row in on]


def top_classes(probs: np.ndarray, vocab: tuple[str, ...], k: int = TOP_K) -> list[str]:
    """Each image's k most probable classes, best first (ties in vocab order): map5's guesses."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [" ".join(vocab[j] for j in row) for row in order]


def shaped_values(
    fmt: SampleFormat, outputs: np.ndarray, vocab: tuple[str, ...], kind: TargetKind, decisions: dict[str, Any]
) -> dict[str, Any]:
    """The value columns, rows in `outputs`' order."""
    if fmt.shape == SampleShape.class_probabilities:
        return {c: outputs[:, vocab.index(c)] for c in fmt.value_columns}
    (column,) = fmt.value_columns
    if fmt.shape == SampleShape.positive_probability:
        return {column: outputs[:, 1]}
    if fmt.shape == SampleShape.number:
        values = outputs[:, 0]
        return {column: ordinal_grades(values, decisions) if kind == TargetKind.ordinal else values}
    if fmt.shape == SampleShape.label_list and kind == TargetKind.multi:
        return {column: tag_lists(outputs, vocab, decisions.get("thresholds"))}
    if fmt.shape == SampleShape.label_list:
        return {column: top_classes(outputs, vocab)}
    return {column: [vocab[j] for j in outputs.argmax(axis=1)]}


def sample_rows(sample_ids: list[str], image_ids: list[str], with_extension: bool) -> list[int]:
    """The predictions' row of each sample id, joined on file names (or their stems)."""
    keys = image_ids if with_extension else [Path(name).stem for name in image_ids]
    rows = {key: i for i, key in enumerate(keys)}
    if len(rows) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise PaddyError(f"two test images have the id {twice!r} once the extension is removed")
    missing = [(row, image_id) for row, image_id in enumerate(sample_ids) if image_id not in rows]
    if missing:
        row, image_id = missing[0]
        raise PaddyError(
            f"no prediction for {image_id} (sample_submission row {row + 2}; {len(missing)} missing in all)"
        )
    return [rows[image_id] for image_id in sample_ids]


def format_submission(
    sample: pd.DataFrame,
    fmt: SampleFormat,
    image_ids: list[str] | tuple[str, ...],
    outputs: np.ndarray,
    vocab: tuple[str, ...],
    kind: TargetKind,
    decisions: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The sample's ids in its order under exactly its header, each with its image's values in the sample's shape."""
    if outputs.shape[0] != len(image_ids):
        raise PaddyError(f"{outputs.shape[0]} rows of outputs for {len(image_ids)} images")
    sample_ids = list(sample[fmt.id_column])
    rows = sample_rows([str(i) for i in sample_ids], list(image_ids), fmt.ids_with_extension)
    values = shaped_values(fmt, outputs[rows], vocab, kind, decisions or {})
    return pd.DataFrame({fmt.id_column: sample_ids, **values}, columns=list(fmt.columns))


def value_problem(values: pd.Series, shape: SampleShape, vocab: tuple[str, ...]) -> tuple[int, str] | None:
    """The first row whose value does not fit the shape, and why; None when every value fits."""
    if shape in (SampleShape.label, SampleShape.label_list):
        known = set(vocab)
        for row, value in enumerate(values):
            labels = str(value).split(" ") if shape == SampleShape.label_list else [str(value)]
            if not all(labels) or not set(labels) <= known:
                return row, f"{value!r} is not {'a list of classes' if len(labels) > 1 else 'a class'}"
        return None
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers)
    if shape != SampleShape.number:
        bad |= (numbers < 0) | (numbers > 1)
    if not bad.any():
        return None
    what = "a finite number" if shape == SampleShape.number else "a probability in [0, 1]"
    row = int(bad.argmax())
    return row, f"{values.tolist()[row]!r} is not {what}"


def check_submission(submission: pd.DataFrame, sample: pd.DataFrame, fmt: SampleFormat, vocab: tuple[str, ...]) -> None:
    """Refuse, in one line, a submission Kaggle would reject or misread: another header, other ids or another
    order than the sample, a value that does not fit (a NaN, a probability outside [0, 1], an unknown class)."""
    if list(submission.columns) != list(sample.columns):
        raise PaddyError(f"submission header {list(submission.columns)} is not the sample's {list(sample.columns)}")
    ids, expected = submission[fmt.id_column].astype(str), sample[fmt.id_column].astype(str)
    if len(ids) != len(expected) or (ids.to_numpy() != expected.to_numpy()).any():
        row = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
        raise PaddyError(f"submission ids are not the sample's ids in its order (first difference at row {row + 2})")
    for column in fmt.value_columns:
        if problem := value_problem(submission[column], fmt.shape, vocab):
            row, why = problem
            raise PaddyError(f"submission column {column!r} row {row + 2}: {why} (id {ids.iloc[row]})")
