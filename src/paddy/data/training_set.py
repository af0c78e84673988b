"""What a run's training set holds beyond its images: a second target's labels, and how the training set
changed since a run recorded it (a resume on other data must not train on a mix)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from paddy.core.errors import PaddyError
from paddy.core.files import read_csv
from paddy.settings.legacy import TRAINING_SET_SINCE_0_3

if TYPE_CHECKING:
    from paddy.data.competition import CompetitionData


def training_set_change(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """How the training set `now` differs from the one a run `recorded` (training_identity): other images, or
    the same images with other labels; None when they are the same, or for a run that recorded none."""
    count, ids, labels = (recorded.get(key) for key in TRAINING_SET_SINCE_0_3)
    if labels is None:
        return None
    count_now, ids_now, labels_now = (now.get(key) for key in TRAINING_SET_SINCE_0_3)
    if ids != ids_now:
        return f"its training images changed ({count} images then, {count_now} now)"
    if labels != labels_now:
        return f"its {count} training images were relabelled"
    return None


def extra_labels(data: CompetitionData, column: str) -> dict[str, str]:
    """image_id -> value of `column` in train.csv, for every training image (a second target)."""
    csv = data.root / "train.csv"
    if not csv.is_file():
        raise PaddyError(f"--multi-target needs {csv}")
    table = read_csv(csv, dtype=str)
    if column not in table.columns or column in ("image_id", "label"):
        usable = [c for c in table.columns if c not in ("image_id", "label")]
        raise PaddyError(f"train.csv has no extra column {column!r}; columns: {', '.join(usable)}")
    missing = table[column].isna()
    if missing.any():
        row = int(missing.idxmax()) + 2
        raise PaddyError(f"train.csv column {column!r} has {int(missing.sum())} missing values (first on line {row})")
    labels = dict(zip(table["image_id"], table[column]))
    unknown = [p.name for p in data.train_images if p.name not in labels]
    if unknown:
        raise PaddyError(f"train.csv has no row for {unknown[0]} ({len(unknown)} training images in all)")
    return labels
