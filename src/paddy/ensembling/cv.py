"""Scoring out-of-fold (OOF) predictions and fitting ensemble weights on them (pure numpy).

Weights are fitted by greedy forward selection with replacement (Caruana et al. 2004,
"Ensemble selection from libraries of models"): robust with few members and with members that
are copies of each other. Fitted weights score optimistically on the rows they were fitted on,
so `fold_out_scores` refits without each fold and scores it: the number to trust.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paddy.core.errors import PaddyError

CLIP = 1e-15  # as sklearn's log_loss: a confident wrong answer costs -log(1e-15), not infinity


@dataclass(frozen=True)
class Scores:
    """Error rate (argmax is not the target) and mean log loss of one set of predictions."""

    error: float
    log_loss: float


def _checked(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`probs` and `targets` as arrays, refused unless they are (n, c) and (n,) class indices with n > 0:
    a negative or too large target would otherwise index some other class without a word."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    if probs.ndim != 2 or targets.ndim != 1 or len(probs) != len(targets) or len(probs) == 0:
        raise PaddyError(f"cannot score probabilities of shape {probs.shape} against targets of shape {targets.shape}")
    if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0 or targets.max() >= probs.shape[1]:
        raise PaddyError(f"targets must be class indices in [0, {probs.shape[1]}), not {targets.dtype} values")
    return probs, targets


def _target_probs(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Each row's probability of its target, unclipped: all the log loss of a mean of members needs."""
    probs, targets = _checked(probs, targets)
    return probs[np.arange(len(targets)), targets]


def _same_shape(members: list[np.ndarray]) -> list[np.ndarray]:
    """The members as float64 arrays, refused unless there is at least one and all have one shape."""
    if not members:
        raise PaddyError("no ensemble members given")
    arrays = [np.asarray(m, dtype=np.float64) for m in members]
    if len({a.shape for a in arrays}) > 1:
        raise PaddyError(f"ensemble members differ in shape: {sorted({a.shape for a in arrays})}")
    return arrays


def scores(probs: np.ndarray, targets: np.ndarray) -> Scores:
    """Error rate and log loss of `probs` (rows) against `targets` (class indices)."""
    probs, targets = _checked(probs, targets)
    picked = np.clip(probs[np.arange(len(targets)), targets], CLIP, 1.0)
    return Scores(float(np.mean(probs.argmax(axis=1) != targets)), float(-np.mean(np.log(picked))))


def weighted_mean(members: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The members' probabilities averaged with `weights` (>= 0, positive sum)."""
    arrays = _same_shape(members)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(arrays),) or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise PaddyError(f"ensemble weights {weights.tolist()} must be >= 0 with a positive sum, one per member")
    return np.tensordot(weights, np.stack(arrays), axes=1) / weights.sum()


def fit_weights(members: list[np.ndarray], targets: np.ndarray, rounds: int = 100) -> np.ndarray:
    """Weights (summing to 1) that lower the log loss of the weighted mean greedily: each round adds the member
    whose addition gives the lowest loss (ties: the first), with replacement; a weight is its share of rounds."""
    if rounds < 1:
        raise PaddyError(f"fitting ensemble weights needs at least one round, not {rounds}")
    picked = np.stack([_target_probs(m, targets) for m in _same_shape(members)])  # members x rows
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


def fold_out_scores(members: list[np.ndarray], targets: np.ndarray, folds: np.ndarray, rounds: int = 100) -> Scores:
    """Fitted weights scored honestly: each fold's rows predicted with weights fitted on the other folds."""
    arrays, targets, folds = _same_shape(members), np.asarray(targets), np.asarray(folds)
    if folds.shape != targets.shape:
        raise PaddyError(f"folds of shape {folds.shape} do not match targets of shape {targets.shape}")
    distinct = np.unique(folds)
    if len(distinct) < 2:
        raise PaddyError(f"a fold-out estimate needs at least two folds, got {len(distinct)}")
    predicted = np.zeros_like(arrays[0])
    for fold in distinct:
        rows, rest = folds == fold, folds != fold
        weights = fit_weights([a[rest] for a in arrays], targets[rest], rounds)
        predicted[rows] = weighted_mean([a[rows] for a in arrays], weights)
    return scores(predicted, targets)
