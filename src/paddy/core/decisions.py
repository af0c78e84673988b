"""The two decision rules every layer applies alike (the submission writer and the CV scores): which tags a
multi-label image gets from its probabilities, and which grade an ordinal value falls in."""

from __future__ import annotations

import numpy as np

from paddy.core.errors import PaddyError


def labels_on(probs: np.ndarray, thresholds: tuple[float, ...] | list[float]) -> np.ndarray:
    """The 0/1 tag matrix: tag j is on where its probability is >= thresholds[j]; an image with no tag on gets
    its most probable one, since an empty prediction scores 0 on F1 whatever the truth."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(thresholds):
        raise PaddyError(f"{len(thresholds)} thresholds cannot cut probabilities of shape {probs.shape}")
    on = probs >= np.asarray(thresholds, dtype=np.float64)
    on[np.arange(len(on)), probs.argmax(axis=1)] |= ~on.any(axis=1)
    return on.astype(np.int64)


def grades(values: np.ndarray, cutpoints: tuple[float, ...] | list[float], lowest: int = 0) -> np.ndarray:
    """Each value's grade: `lowest` plus the number of cut-points <= the value."""
    return lowest + np.searchsorted(np.asarray(cutpoints, dtype=np.float64), np.ravel(values), side="right")
