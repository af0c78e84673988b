"""What the model predicts and how it is scored while training: the loss, activation and epoch metric of each
target kind (the competition's metric first), the number head's range, and the paddy competition's second
target from train.csv (lesson 7's disease + variety)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from fastai.metrics import ActivationType
from fastai.vision.all import (
    AccumMetric,
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    F1Score,
    F1ScoreMulti,
    FBetaMulti,
    LabelSmoothingCrossEntropyFlat,
    MSELossFlat,
    RocAuc,
    RocAucBinary,
    RocAucMulti,
    accuracy,
    error_rate,
    rmse,
)

from paddy.scoring.metrics import f_beta
from paddy.settings.competition import MetricName, TargetKind


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


def y_range_of(kind: TargetKind, targets: Iterable[object]) -> tuple[float, float] | None:
    """The sigmoid range a number head predicts in: the training targets' range, 5% wider each side for a
    regression (a sigmoid never reaches its ends), half a grade wider for ordinal grades; None for classes."""
    numbers = [float(t) for t in targets] if kind in (TargetKind.regression, TargetKind.ordinal) else []
    if not numbers:
        return None
    low, high = min(numbers), max(numbers)
    margin = 0.5 if kind is TargetKind.ordinal else 0.05 * (high - low or 1.0)
    return low - margin, high + margin


def scored_metric(metric: MetricName, kind: TargetKind) -> AccumMetric:
    """An epoch metric computed by paddy.scoring (the maths the CV report and ensembles use), for the
    metrics fastai has no exact equivalent of: log loss on probabilities, kappa and accuracy of grades,
    MAP@5."""
    from paddy.scoring.metrics import score

    activation = {TargetKind.multi: ActivationType.Sigmoid}.get(kind, ActivationType.Softmax)
    if kind in (TargetKind.regression, TargetKind.ordinal):
        activation = ActivationType.No
    # the class axis for the softmax (fastai's default None is torch's deprecated implicit dim, a warning
    # every epoch); only there: with no activation a dim_argmax would argmax the outputs
    dim_argmax = -1 if activation is ActivationType.Softmax else None

    def compute(outputs, targets) -> float:
        outputs = outputs.reshape(len(outputs), -1)
        targets = targets.astype(int) if kind is TargetKind.multi else targets.reshape(-1)
        return score(metric, kind, outputs, targets)

    return AccumMetric(
        compute, dim_argmax=dim_argmax, activation=activation, to_np=True, flatten=False, name=str(metric)
    )


def fastai_metric(metric: MetricName, kind: TargetKind):
    """fastai's own metric where it computes exactly the competition's (scikit-learn underneath), named as
    paddy names it (the history column), else `scored_metric`."""
    multi = kind is TargetKind.multi
    numbers = kind in (TargetKind.regression, TargetKind.ordinal)
    ours = {
        MetricName.error_rate: None if numbers or multi else error_rate,
        MetricName.accuracy: None if numbers or multi else accuracy,
        MetricName.rmse: AccumMetric(rmse.func) if numbers else None,  # a fresh one: fastai's is shared
        MetricName.roc_auc: RocAucMulti() if multi else RocAucBinary() if kind is TargetKind.binary else RocAuc(),
        MetricName.f1_macro: F1ScoreMulti(average="macro") if multi else None if numbers else F1Score(average="macro"),
        MetricName.f1_samples: F1ScoreMulti(average="samples") if multi else None,
        MetricName.f2_samples: FBetaMulti(beta=f_beta(metric), average="samples") if multi else None,
    }.get(metric)
    if ours is None:
        return scored_metric(metric, kind)
    if isinstance(ours, AccumMetric):
        ours.name = str(metric)
    return ours


def kind_loss(kind: TargetKind, label_smoothing: float):
    """The loss of a target kind: cross-entropy for classes (label smoothing from fastai when asked), binary
    cross-entropy per tag, mean squared error for numbers. Each activation is what predictions store."""
    if kind is TargetKind.multi:
        return BCEWithLogitsLossFlat()
    if kind in (TargetKind.regression, TargetKind.ordinal):
        return MSELossFlat()
    return single_target(label_smoothing)[0]
