"""What predictions files record, as paddy.scoring takes it: the scoring of the runs (metric, kind, decisions)
and their out-of-fold labels as targets."""

from __future__ import annotations

from typing import Any

import numpy as np

from paddy.core.errors import PaddyError
from paddy.scoring.decisions import Decisions
from paddy.scoring.metrics import Scoring
from paddy.settings.competition import METRICS_OF_KIND, MetricName, TargetKind


def recorded_scoring(meta: dict[str, Any]) -> Scoring:
    """The competition's metric, target kind and decisions predictions recorded; files of releases before 0.3
    are single-label and scored on the error rate."""
    kind = TargetKind(meta.get("kind", "single"))
    metric = MetricName(meta.get("metric") or METRICS_OF_KIND[kind][0])
    return Scoring(metric, kind, Decisions.from_json(meta.get("decisions")) if meta.get("decisions") else None)


def target_array(kind: TargetKind, labels: list[str], vocab: tuple[str, ...], name: str) -> np.ndarray:
    """Out-of-fold labels as written (a class, space-separated tags, a number) as paddy.scoring takes them."""
    if kind in (TargetKind.regression, TargetKind.ordinal):
        return np.array([float(label) for label in labels])
    rows = [label.split() if kind is TargetKind.multi else [label] for label in labels]
    if unknown := {t for row in rows for t in row} - set(vocab):
        raise PaddyError(f"{name}: out-of-fold labels {sorted(unknown)} are not among its classes")
    index = {c: j for j, c in enumerate(vocab)}
    if kind is not TargetKind.multi:
        return np.array([index[row[0]] for row in rows])
    matrix = np.zeros((len(rows), len(vocab)), dtype=int)
    for i, row in enumerate(rows):
        matrix[i, [index[t] for t in row]] = 1
    return matrix
