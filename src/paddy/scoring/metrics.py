"""The competitions' metrics for every target kind, on outputs and targets as paddy keeps them:

- single / binary: outputs (n, C) probabilities (binary: C = 2, the positive class is column 1), targets
  class indices (n,);
- multi: outputs (n, C) independent probabilities, targets a 0/1 matrix (n, C);
- regression / ordinal: outputs (n, 1), targets numbers (n,) (ordinal: whole grades).

Label metrics score what a submission would hold: the most probable class, the tags at or over their
thresholds, the grades the cut-points give (Decisions; defaults where none are given).

scikit-learn computes accuracy, F1 and rmse; it is imported inside them, since importing sklearn.metrics
takes longer than the rest of `paddy --help`, which imports this module. ROC AUC and quadratic kappa are
by hand (tests check them against sklearn): ensemble fitting calls them thousands of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from paddy.core.errors import PaddyError
from paddy.scoring.decisions import Decisions, default_decisions, fit_decisions, grades, labels_on, quadratic_kappa
from paddy.settings.competition import MetricName, TargetKind, greater_is_better, metric_problem

CLIP = 1e-15  # a confident wrong answer costs -log(1e-15), not infinity (Kaggle's and sklearn's old eps)
PROBABILITY_KINDS = (TargetKind.single, TargetKind.binary, TargetKind.multi)
TOP = 5  # MAP@5


def checked(kind: TargetKind, outputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (float64) and targets of `kind`, refused unless their shapes and values are as the module
    docstring says: a bad class index would otherwise score some other class without a word."""
    outputs, targets = np.asarray(outputs, dtype=np.float64), np.asarray(targets)
    n = len(outputs) if outputs.ndim else 0
    if outputs.ndim != 2 or n == 0 or len(targets) != n or not np.isfinite(outputs).all():
        raise PaddyError(f"cannot score {kind} outputs of shape {outputs.shape} against targets {targets.shape}")
    if kind in PROBABILITY_KINDS and (outputs.min() < -1e-6 or outputs.max() > 1 + 1e-6):
        raise PaddyError(f"{kind} outputs must be probabilities in [0, 1], not e.g. {outputs.max():g}")
    columns = outputs.shape[1]
    if kind in (TargetKind.single, TargetKind.binary):
        if targets.ndim != 1 or columns < 2 or (kind is TargetKind.binary and columns != 2):
            raise PaddyError(f"{kind} outputs {outputs.shape} need (n, classes) and targets (n,), not {targets.shape}")
        if not np.issubdtype(targets.dtype, np.integer) or targets.min() < 0 or targets.max() >= columns:
            raise PaddyError(f"targets must be class indices in [0, {columns}), not e.g. {targets.dtype} {targets[0]}")
    elif kind is TargetKind.multi:
        if targets.shape != outputs.shape or not np.isin(targets, (0, 1)).all() or targets.dtype.kind not in "biu":
            raise PaddyError(
                f"multi-label targets must be a 0/1 int matrix of shape {outputs.shape}, not {targets.shape}"
            )
    else:
        if columns != 1 or targets.ndim != 1 or targets.dtype.kind not in "biuf" or not np.isfinite(targets).all():
            raise PaddyError(f"{kind} outputs {outputs.shape} need shape (n, 1) and numeric targets (n,)")
        if kind is TargetKind.ordinal and not np.array_equal(targets, np.round(targets)):
            raise PaddyError(
                f"ordinal targets must be whole grades, not e.g. {targets[targets != np.round(targets)][0]}"
            )
    return outputs, targets


def target_probs(kind: TargetKind, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The probability each output gave the truth, unclipped and flat (single/binary: the target class's;
    multi: p where the tag is on, 1 - p where it is off): all the log loss of a mean of members needs."""
    if kind in (TargetKind.single, TargetKind.binary):
        return probs[np.arange(len(targets)), targets]
    return np.where(targets == 1, probs, 1 - probs).ravel()


def _log_loss(kind, outputs, targets, decisions) -> float:
    """Mean log loss (multi: mean binary cross-entropy over every image and tag). By hand rather than
    sklearn's log_loss: sklearn >= 1.5 clips at machine epsilon and warns on float32 softmax rows that miss 1
    by 1e-7, and fit_weights' fast path must give exactly this number."""
    return float(-np.mean(np.log(np.clip(target_probs(kind, outputs, targets), CLIP, 1.0))))


def _labels(kind, outputs, targets, decisions) -> tuple[np.ndarray, np.ndarray]:
    """(truth, predicted) labels as a submission holds them: classes, 0/1 tags or grades."""
    if kind in (TargetKind.single, TargetKind.binary):
        return targets, outputs.argmax(axis=1)
    if kind is TargetKind.multi:
        thresholds = decisions.thresholds or default_decisions(kind, outputs.shape[1]).thresholds
        return targets, labels_on(outputs, thresholds)
    truth = targets.astype(np.int64)
    if decisions.cutpoints is None:
        if truth.min() == truth.max():
            raise PaddyError(f"default cut-points need two grades among the targets, not only {truth[0]}")
        decisions = default_decisions(kind, 1, (int(truth.min()), int(truth.max())))
    return truth, grades(outputs, decisions.cutpoints, decisions.lowest_grade)


def _accuracy(kind, outputs, targets, decisions) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(*_labels(kind, outputs, targets, decisions)))


def _error_rate(kind, outputs, targets, decisions) -> float:
    return 1.0 - _accuracy(kind, outputs, targets, decisions)


def _fbeta(average: str, beta: float = 1.0) -> Callable[..., float]:
    """F-beta (F1, F2) of the submitted labels with sklearn's `average`; 0 where a class has neither truth nor
    guesses."""

    def fbeta(kind, outputs, targets, decisions) -> float:
        from sklearn.metrics import fbeta_score

        labels = _labels(kind, outputs, targets, decisions)
        return float(fbeta_score(*labels, beta=beta, average=average, zero_division=0.0))

    return fbeta


F_BETA = {MetricName.f2_samples: 2.0}  # the metrics whose thresholds are fitted for another beta than 1


def f_beta(metric: MetricName) -> float:
    """The beta of an F-beta metric (2 for F2, else F1's 1): what its score weighs and its tag thresholds are
    fitted for."""
    return F_BETA.get(metric, 1.0)


def binary_auc(truth: np.ndarray, column: np.ndarray) -> float:
    """ROC AUC of one column as Mann-Whitney's U: the share of (positive, negative) pairs the column orders
    rightly, ties counting half (exactly sklearn's roc_auc_score)."""
    _, inverse, counts = np.unique(column, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2)[inverse]  # tied values share their average rank
    positives = int(truth.sum())
    negatives = len(truth) - positives
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _roc_auc(kind, outputs, targets, decisions) -> float:
    """ROC AUC: binary on the positive column; single one-vs-rest and multi per tag, averaged over the
    columns (average='macro'). A column whose targets are all one class has no AUC: it is left out of the
    mean (sklearn raises), and it is an error when no column is left."""
    if kind is TargetKind.binary:
        columns = [(targets == 1, outputs[:, 1])]
    elif kind is TargetKind.single:
        columns = [(targets == j, outputs[:, j]) for j in range(outputs.shape[1])]
    else:
        columns = [(targets[:, j] == 1, outputs[:, j]) for j in range(outputs.shape[1])]
    aucs = [binary_auc(truth, column) for truth, column in columns if 0 < truth.sum() < len(truth)]
    if not aucs:
        raise PaddyError(f"roc_auc needs positive and negative targets in some column; all {len(targets)} are one")
    return float(np.mean(aucs))


def _qwk(kind, outputs, targets, decisions) -> float:
    kappa = quadratic_kappa(*_labels(kind, outputs, targets, decisions))
    if np.isnan(kappa):
        raise PaddyError("qwk is undefined when every target and every predicted grade is one grade")
    return kappa


def _rmse(kind, outputs, targets, decisions) -> float:
    """Root mean squared error; ordinal: of the grades, as submitted (kind regression submits the number)."""
    from sklearn.metrics import root_mean_squared_error

    if kind is TargetKind.ordinal:
        return float(root_mean_squared_error(*_labels(kind, outputs, targets, decisions)))
    return float(root_mean_squared_error(targets, outputs[:, 0]))


def _map5(kind, outputs, targets, decisions) -> float:
    """Mean over rows of 1 / rank of the true class among the 5 most probable (ties: the lower class index
    first), 0 where it is not among them."""
    top = np.argsort(-outputs, axis=1, kind="stable")[:, :TOP]
    hit = top == targets[:, None]
    return float(np.mean(hit.any(axis=1) / (hit.argmax(axis=1) + 1)))


SCORERS: dict[MetricName, Callable[..., float]] = {
    MetricName.error_rate: _error_rate,
    MetricName.accuracy: _accuracy,
    MetricName.log_loss: _log_loss,
    MetricName.roc_auc: _roc_auc,
    MetricName.f1_macro: _fbeta("macro"),
    MetricName.f1_samples: _fbeta("samples"),
    MetricName.f2_samples: _fbeta("samples", f_beta(MetricName.f2_samples)),
    MetricName.qwk: _qwk,
    MetricName.rmse: _rmse,
    MetricName.map5: _map5,
}


def score(
    metric: MetricName,
    kind: TargetKind,
    outputs: np.ndarray,
    targets: np.ndarray,
    decisions: Decisions | None = None,
) -> float:
    """`metric` of `outputs` against `targets` of `kind` (shapes: the module docstring), refused where the
    metric does not fit the kind or the arrays are malformed."""
    if problem := metric_problem(kind, metric):
        raise PaddyError(problem)
    outputs, targets = checked(kind, outputs, targets)
    return SCORERS[metric](kind, outputs, targets, decisions or Decisions())


@dataclass(frozen=True)
class Scoring:
    """A competition's metric on its target kind with the decisions it needs: what CV scores and fits."""

    metric: MetricName = MetricName.error_rate  # the default single-label metric
    kind: TargetKind = TargetKind.single
    decisions: Decisions | None = None

    def __post_init__(self) -> None:
        if problem := metric_problem(self.kind, self.metric):
            raise PaddyError(problem)

    def __call__(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return score(self.metric, self.kind, outputs, targets, self.decisions)

    @property
    def greater_is_better(self) -> bool:
        return greater_is_better(self.metric)

    def fitted(self, outputs: np.ndarray, targets: np.ndarray) -> Scoring:
        """This scoring with its decisions (thresholds, cut-points) fitted on `outputs`, where its kind needs
        any: held-out rows only (out-of-fold), as paddy.scoring.decisions says."""
        decisions = fit_decisions(self.kind, *checked(self.kind, outputs, targets), f_beta(self.metric))
        return self if decisions is None else replace(self, decisions=decisions)
