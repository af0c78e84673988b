"""Decisions: what turns a model's outputs into what a submission holds (and what accuracy-like metrics
score): per-tag thresholds for multi-label probabilities, cut-points for ordinal grades.

Thresholds and cut-points are fitted on the outputs they will be judged on, so they score optimistically
there: the caller fits them on held-out rows only (validation or out-of-fold predictions, never the rows
a model trained on) and reports scores on rows the fit did not see where it can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from paddy.core.decisions import grades, labels_on  # noqa: F401  (the rules, re-exported for scoring)
from paddy.core.errors import PaddyError
from paddy.settings.competition import TargetKind

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95
CUT_STEPS = np.linspace(-0.5, 0.5, 41)  # each coordinate-search move: within half a grade, in 0.025 steps
MAX_PASSES = 20  # coordinate passes over every cut-point; each moves a cut-point at most half a grade


@dataclass(frozen=True)
class Decisions:
    """Per-column thresholds (multi) or ascending cut-points with the lowest grade (ordinal); None: defaults."""

    thresholds: tuple[float, ...] | None = None
    cutpoints: tuple[float, ...] | None = None
    lowest_grade: int = 0

    def to_json(self) -> dict[str, Any]:
        """The predictions meta key "decisions": {"thresholds": [...]} and/or {"cutpoints": [...], "grades":
        [lowest, highest]}."""
        out: dict[str, Any] = {}
        if self.thresholds is not None:
            out["thresholds"] = [float(t) for t in self.thresholds]
        if self.cutpoints is not None:
            out["cutpoints"] = [float(c) for c in self.cutpoints]
            out["grades"] = [self.lowest_grade, self.lowest_grade + len(self.cutpoints)]
        return out

    @staticmethod
    def from_json(raw: dict[str, Any] | None) -> Decisions:
        """Decisions read back from a predictions file's meta (None or {}: the defaults), refused unless
        thresholds are in [0, 1] and cut-points ascend with one fewer than the grades they separate."""
        raw = raw or {}
        thresholds, cutpoints = raw.get("thresholds"), raw.get("cutpoints")
        if thresholds is not None and not _floats_within(thresholds, 0.0, 1.0):
            raise PaddyError(f"decisions: thresholds must be numbers in [0, 1], not {thresholds!r}")
        if cutpoints is None:
            return Decisions(_tuple(thresholds))
        grades = raw.get("grades")
        if not _floats_within(cutpoints, -np.inf, np.inf) or np.any(np.diff(cutpoints) <= 0):
            raise PaddyError(f"decisions: cutpoints must be ascending numbers, not {cutpoints!r}")
        if (
            not isinstance(grades, list)
            or len(grades) != 2
            or not all(isinstance(g, int) for g in grades)
            or grades[1] - grades[0] != len(cutpoints)
        ):
            raise PaddyError(f"decisions: grades must be [lowest, lowest + {len(cutpoints)}] ints, not {grades!r}")
        return Decisions(_tuple(thresholds), _tuple(cutpoints), grades[0])


def _floats_within(values: Any, low: float, high: float) -> bool:
    """Whether `values` is a non-empty list of finite numbers in [low, high]."""
    return (
        isinstance(values, list)
        and bool(values)
        and all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in values)
        and all(low <= v <= high for v in values)
    )


def _tuple(values: list[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


def default_decisions(kind: TargetKind, vocab_size: int, grade_range: tuple[int, int] | None = None) -> Decisions:
    """The decisions before any fit: 0.5 for every tag, cut-points halfway between consecutive grades."""
    if kind is TargetKind.multi:
        return Decisions(thresholds=(0.5,) * vocab_size)
    if kind is TargetKind.ordinal:
        if grade_range is None or grade_range[1] <= grade_range[0]:
            raise PaddyError(f"ordinal decisions need a grade range (lowest, highest), not {grade_range!r}")
        lowest, highest = grade_range
        return Decisions(cutpoints=tuple(g + 0.5 for g in range(lowest, highest)), lowest_grade=lowest)
    return Decisions()


def column_fbeta(on: np.ndarray, truth: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """F-beta of each column of a 0/1 matrix against the truth: (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp), F1
    at beta 1 (0 where a column has no positives at all, as sklearn's fbeta_score with zero_division=0)."""
    tp = (on & truth).sum(axis=0)
    fn, fp = (~on & truth).sum(axis=0), (on & ~truth).sum(axis=0)
    weighted = (1 + beta**2) * tp
    below = weighted + beta**2 * fn + fp
    return np.divide(weighted, below, out=np.zeros(on.shape[1]), where=below > 0)


def fit_thresholds(probs: np.ndarray, targets: np.ndarray, beta: float = 1.0) -> tuple[float, ...]:
    """Per tag, the threshold of THRESHOLD_GRID that maximises that column's F-beta (F1; F2 weighs recall more,
    so its thresholds are lower), ties going to the one closest to 0.5, the untuned default. Fit on held-out
    rows only (validation or out-of-fold): they score optimistically on the rows they were fitted on."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if probs.ndim != 2 or probs.shape != targets.shape or len(probs) == 0 or not np.isin(targets, (0, 1)).all():
        raise PaddyError(f"cannot fit thresholds of probabilities {probs.shape} on 0/1 targets {targets.shape}")
    truth = targets.astype(bool)
    scores = np.stack([column_fbeta(probs >= t, truth, beta) for t in THRESHOLD_GRID])  # thresholds x columns
    by_closeness = np.argsort([abs(t - 0.5) for t in THRESHOLD_GRID], kind="stable")
    best = by_closeness[np.argmax(scores[by_closeness], axis=0)]  # the first maximum in closeness order
    return tuple(THRESHOLD_GRID[i] for i in best)


def quadratic_kappa(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Quadratic weighted kappa of two int grade vectors, weighted by squared grade distance over every grade
    from the lowest to the highest seen (sklearn's cohen_kappa_score(weights="quadratic") with those labels;
    a grade nobody gave still counts as a step). NaN where it is undefined: one grade on both sides.
    By hand: fit_cutpoints and ensemble fitting call it thousands of times, and sklearn's input checks
    cost milliseconds a call."""
    lowest = min(truth.min(), predicted.min())
    t, p = truth - lowest, predicted - lowest
    k = int(max(t.max(), p.max())) + 1
    observed = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    expected = np.outer(np.bincount(t, minlength=k), np.bincount(p, minlength=k)) / len(t)
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    disagreement = float((weights * expected).sum())
    return float("nan") if disagreement == 0 else 1.0 - float((weights * observed).sum()) / disagreement


def fit_cutpoints(
    values: np.ndarray, targets: np.ndarray, grade_range: tuple[int, int] | None = None
) -> tuple[float, ...]:
    """Ascending cut-points that raise the quadratic kappa of the grades they give: start halfway between
    grades, then move one cut-point at a time within half a grade (never past its neighbours) to its best
    place, until a pass changes nothing. `grade_range`: (lowest, highest), default the targets'. Fit on
    held-out rows only (validation or out-of-fold): they score optimistically on the rows they were fitted on."""
    values, truth = np.ravel(np.asarray(values, dtype=np.float64)), np.asarray(targets, dtype=np.float64)
    if values.shape != truth.shape or len(values) == 0 or not np.array_equal(truth, np.round(truth)):
        raise PaddyError(f"cannot fit cut-points of values {values.shape} on grades {truth.shape} (whole numbers)")
    truth = truth.astype(np.int64)
    lowest, highest = grade_range or (int(truth.min()), int(truth.max()))
    cuts = list(default_decisions(TargetKind.ordinal, 1, (lowest, highest)).cutpoints)

    def kappa(candidate: list[float]) -> float:
        got = quadratic_kappa(truth, grades(values, tuple(candidate), lowest))
        return -np.inf if np.isnan(got) else got

    for _ in range(MAX_PASSES):
        moved = False
        for i in range(len(cuts)):
            below = cuts[i - 1] if i else -np.inf
            above = cuts[i + 1] if i + 1 < len(cuts) else np.inf
            best, best_kappa = cuts[i], kappa(cuts)
            for c in cuts[i] + CUT_STEPS:
                if below < c < above and (k := kappa([*cuts[:i], c, *cuts[i + 1 :]])) > best_kappa:
                    best, best_kappa = float(c), k
            moved |= best != cuts[i]
            cuts[i] = best
        if not moved:
            break
    return tuple(cuts)


def fit_decisions(kind: TargetKind, outputs: np.ndarray, targets: np.ndarray, beta: float = 1.0) -> Decisions | None:
    """The decisions a `kind` needs, fitted on held-out `outputs` and their `targets` (as paddy.scoring takes
    them): per-tag thresholds for F-`beta` (multi), cut-points over the targets' grades (ordinal); None for
    other kinds."""
    if kind is TargetKind.multi:
        return Decisions(thresholds=fit_thresholds(outputs, np.asarray(targets).astype(int), beta))
    if kind is TargetKind.ordinal:
        truth = np.ravel(np.asarray(targets))
        grade_range = (int(truth.min()), int(truth.max()))
        cutpoints = fit_cutpoints(np.ravel(outputs), truth, grade_range)
        return Decisions(cutpoints=cutpoints, lowest_grade=grade_range[0])
    return None
