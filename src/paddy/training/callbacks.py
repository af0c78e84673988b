"""Finding one of paddy's callbacks on a learner: the run's parts (best epoch, EMA, trackers, the kept
validation pass) ask each other for their state through the learner they share."""

from __future__ import annotations

from typing import TypeVar

from fastai.callback.core import Callback
from fastai.learner import Learner

C = TypeVar("C", bound=Callback)


def callback_of(learn: Learner, kind: type[C]) -> C | None:
    """The learner's callback of class `kind`, or None when this run has none (fastai files callbacks under a
    name made from the class, which a subclass or a rename would silently miss: the type is asked instead)."""
    return next((cb for cb in learn.cbs if isinstance(cb, kind)), None)
