"""What the model predicts: the class folder label, optionally with a second target from
train.csv (lesson 7's disease + variety), and the matching loss and error metrics."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from fastai.vision.all import CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat, error_rate


class TwoTargetLoss:
    """Cross-entropy of the label on the first `n_first` outputs plus that of the extra target
    on the rest. Its activation keeps only the label's softmax, so predictions, TTA and the
    ensemble see the same probabilities as a single-target model."""

    def __init__(self, n_first: int, label_smoothing: float = 0.0):
        self.n_first, self.label_smoothing = n_first, label_smoothing

    def __call__(self, out: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        first_loss = F.cross_entropy(out[:, : self.n_first], first, label_smoothing=self.label_smoothing)
        second_loss = F.cross_entropy(out[:, self.n_first :], second, label_smoothing=self.label_smoothing)
        return first_loss + second_loss

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        return F.softmax(out[:, : self.n_first], dim=1)

    def decodes(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.argmax(dim=1)


def target_error(name: str, columns: slice, target_index: int) -> Callable[..., torch.Tensor]:
    """Error rate of one target of a two-target model, named for the history table."""

    def metric(out: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        return error_rate(out[:, columns], targets[target_index])

    metric.__name__ = f"{name}_error"
    return metric


def single_target(label_smoothing: float) -> tuple[object, list]:
    """Loss and metrics of the plain classifier (label smoothing from fastai when asked)."""
    loss = LabelSmoothingCrossEntropyFlat(eps=label_smoothing) if label_smoothing else CrossEntropyLossFlat()
    return loss, [error_rate]


def two_targets(
    n_first: int, label_column: str, extra_column: str, label_smoothing: float
) -> tuple[TwoTargetLoss, list]:
    """Loss and the two error metrics of a label + `extra_column` model, each named after its column."""
    metrics = [
        target_error(label_column, slice(0, n_first), 0),
        target_error(extra_column, slice(n_first, None), 1),
    ]
    return TwoTargetLoss(n_first, label_smoothing), metrics
