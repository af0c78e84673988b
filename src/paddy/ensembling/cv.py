"""Scoring out-of-fold (OOF) predictions with the competition's metric and fitting ensemble weights on
them (numpy; the metrics are paddy.scoring's).

Weights are fitted by greedy forward selection with replacement (Caruana et al. 2004,
"Ensemble selection from libraries of models"): robust with few members and with members that
are copies of each other. Fitted weights score optimistically on the rows they were fitted on,
so `fold_out_scores` refits without each fold and scores it: the number to trust.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from paddy.core.errors import PaddyError
from paddy.scoring.metrics import CLIP, PROBABILITY_KINDS, Scoring, checked, score, target_probs
from paddy.settings.competition import MetricName, TargetKind

# error_rate and accuracy change only where some row's most probable class (or grade) flips: a step
# function of the weights, flat almost everywhere, so greedy rounds would tie and keep picking the first
# member. They are fitted on a smooth loss whose minimum moves the same way: log loss of the probabilities,
# the rmse of ordinal values (not of their grades, a step function again).
STEP_METRICS = (MetricName.error_rate, MetricName.accuracy)
DEFAULT = Scoring()  # error rate of single-label classes: the paddy competition's metric


@dataclass(frozen=True)
class Scores:
    """The competition metric's value of one set of predictions, and their log loss where the outputs are
    probabilities (single, binary, multi; None otherwise)."""

    metric: MetricName
    value: float
    log_loss: float | None = None

    @property
    def error(self) -> float:
        """The error rate: the value of the default single-label metric, which older reports show."""
        if self.metric is not MetricName.error_rate:
            raise PaddyError(f"these scores are {self.metric}, not an error rate")
        return self.value


def _same_shape(members: list[np.ndarray]) -> list[np.ndarray]:
    """The members as float64 arrays, refused unless there is at least one and all have one shape."""
    if not members:
        raise PaddyError("no ensemble members given")
    arrays = [np.asarray(m, dtype=np.float64) for m in members]
    if len({a.shape for a in arrays}) > 1:
        raise PaddyError(f"ensemble members differ in shape: {sorted({a.shape for a in arrays})}")
    return arrays


def scores(probs: np.ndarray, targets: np.ndarray, scoring: Scoring = DEFAULT) -> Scores:
    """The metric of `probs` (rows) against `targets`, with their log loss where it applies. A metric of
    thresholded tags or cut grades scores them with decisions fitted on these very outputs (Scoring.fitted):
    the ones a submission of the same average gets, never one fold's."""
    value = scoring.fitted(probs, targets)(probs, targets)
    log_loss = score(MetricName.log_loss, scoring.kind, probs, targets) if scoring.kind in PROBABILITY_KINDS else None
    return Scores(scoring.metric, value, log_loss)


def weighted_mean(members: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The members' outputs averaged with `weights` (>= 0, positive sum)."""
    arrays = _same_shape(members)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(arrays),) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise PaddyError(f"ensemble weights {weights.tolist()} must be >= 0 with a positive sum, one per member")
    return np.tensordot(weights, np.stack(arrays), axes=1) / weights.sum()


def fit_objective(scoring: Scoring) -> Scoring:
    """What the weights are fitted on: the metric itself, except the step metrics (STEP_METRICS)."""
    if scoring.metric not in STEP_METRICS:
        return scoring
    if scoring.kind in PROBABILITY_KINDS:
        return replace(scoring, metric=MetricName.log_loss)
    return Scoring(MetricName.rmse, TargetKind.regression)  # of the values themselves: an ordinal's is of grades


def fit_weights(
    members: list[np.ndarray], targets: np.ndarray, rounds: int = 100, scoring: Scoring = DEFAULT
) -> np.ndarray:
    """Weights (summing to 1) that improve `scoring`'s metric of the weighted mean greedily (fit_objective):
    each round adds the member whose addition scores best (ties: the first), with replacement; a weight is
    its share of rounds. Thresholds or cut-points stay those fitted on the members' equal mean while the
    weights move (refitting them in every round would cost thousands of fits)."""
    if rounds < 1:
        raise PaddyError(f"fitting ensemble weights needs at least one round, not {rounds}")
    arrays = _same_shape(members)
    objective = fit_objective(scoring).fitted(weighted_mean(arrays, np.ones(len(arrays))), targets)
    if objective.metric is MetricName.log_loss:
        return _log_loss_weights(
            [target_probs(objective.kind, *checked(objective.kind, a, targets)) for a in arrays], rounds
        )
    sign = -1.0 if objective.greater_is_better else 1.0
    return _greedy(arrays, lambda mean: sign * objective(mean, targets), rounds)


def _greedy(arrays: list[np.ndarray], loss: Callable[[np.ndarray], float], rounds: int) -> np.ndarray:
    """Caruana's selection for any `loss` (lower is better) of the members' mean."""
    counts = np.zeros(len(arrays))
    running = np.zeros_like(arrays[0])  # sum of the outputs of the members added so far
    for step in range(1, rounds + 1):
        best = int(np.argmin([loss((running + a) / step) for a in arrays]))  # ties: the first
        counts[best] += 1
        running += arrays[best]
    return counts / rounds


def _log_loss_weights(picked_rows: list[np.ndarray], rounds: int) -> np.ndarray:
    """Caruana's selection on log loss, fast: the loss of a mean of members needs only the mean of the
    probabilities each gave the truth, so each round is a few vector operations."""
    picked = np.stack(picked_rows)  # members x rows
    counts = np.zeros(len(picked))
    running = np.zeros(picked.shape[1])  # sum of the target probabilities of the members added so far
    candidates = np.empty_like(picked)  # reused in place each round: about 3x faster than fresh arrays
    for step in range(1, rounds + 1):
        np.add(running, picked, out=candidates)
        candidates /= step  # the mean after adding each member once more
        np.log(np.clip(candidates, CLIP, 1.0, out=candidates), out=candidates)
        losses = -candidates.mean(axis=1)
        best = int(np.argmin(losses))  # the first of equal losses: copies of a member never split its weight
        counts[best] += 1
        running += picked[best]
    return counts / rounds


def fold_out_scores(
    members: list[np.ndarray], targets: np.ndarray, folds: np.ndarray, rounds: int = 100, scoring: Scoring = DEFAULT
) -> Scores:
    """Fitted weights scored honestly: each fold's rows predicted with weights fitted on the other folds."""
    arrays, targets, folds = _same_shape(members), np.asarray(targets), np.asarray(folds)
    if folds.shape != targets.shape[:1] or folds.ndim != 1:
        raise PaddyError(f"folds of shape {folds.shape} do not match targets of shape {targets.shape}")
    distinct = np.unique(folds)
    if len(distinct) < 2:
        raise PaddyError(f"a fold-out estimate needs at least two folds, got {len(distinct)}")
    predicted = np.zeros_like(arrays[0])
    for fold in distinct:
        rows, rest = folds == fold, folds != fold
        weights = fit_weights([a[rest] for a in arrays], targets[rest], rounds, scoring)
        predicted[rows] = weighted_mean([a[rows] for a in arrays], weights)
    return scores(predicted, targets, scoring)
