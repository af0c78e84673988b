"""CV scores, Caruana weight fitting and the fold-out estimate, on hand-made and synthetic OOF."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import replace

import numpy as np
import pytest

from paddy.core.errors import PaddyError
from paddy.ensembling.cv import Scores, fit_objective, fit_weights, fold_out_scores, scores, weighted_mean
from paddy.ensembling.out_of_fold import CvLine, CvReport
from paddy.scoring.decisions import Decisions
from paddy.scoring.metrics import Scoring
from paddy.settings.competition import MetricName, TargetKind


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n: int = 300, c: int = 5, seed: int = 0):
    """Targets, a near-perfect member (0.96 on the target) and a random one."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c, n)
    perfect = np.full((n, c), 0.04 / (c - 1))
    perfect[np.arange(n), targets] = 0.96
    return targets, perfect, softmax(rng.normal(0, 2, (n, c)))


def test_scores_equal_a_hand_computation():
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.0, 1.0, 0.0]])
    targets = np.array([0, 2, 2])  # right (0.7), wrong (0.2), wrong with probability 0 (clipped to 1e-15)
    got = scores(probs, targets)
    assert got.error == pytest.approx(2 / 3)
    assert got.log_loss == pytest.approx(-(math.log(0.7) + math.log(0.2) + math.log(1e-15)) / 3)


@pytest.mark.parametrize(
    "probs, targets",
    [
        (np.ones((2, 3)) / 3, np.array([0])),  # rows differ
        (np.ones((0, 3)), np.array([], dtype=int)),  # nothing to score
        (np.ones(3) / 3, np.array([0])),  # not (n, c)
        (np.ones((2, 3)) / 3, np.array([0, -1])),  # would silently score the last class
        (np.ones((2, 3)) / 3, np.array([0, 3])),  # no such class
        (np.ones((2, 3)) / 3, np.array([0.0, 1.0])),  # not class indices
    ],
)
def test_scores_refuse_bad_input(probs, targets):
    with pytest.raises(PaddyError):
        scores(probs, targets)


def test_weighted_mean_by_hand_and_bad_weights_refused():
    a, b = np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[0.0, 1.0], [0.1, 0.9]])
    expected = [[(1 * 1.0 + 3 * 0.0) / 4, (1 * 0.0 + 3 * 1.0) / 4], [(1 * 0.5 + 3 * 0.1) / 4, (1 * 0.5 + 3 * 0.9) / 4]]
    np.testing.assert_allclose(weighted_mean([a, b], np.array([1.0, 3.0])), expected)
    for bad in ([0.0, 0.0], [-1.0, 2.0], [1.0], [np.nan, 1.0]):
        with pytest.raises(PaddyError, match="positive sum"):
            weighted_mean([a, b], np.array(bad))
    with pytest.raises(PaddyError, match="differ in shape"):
        weighted_mean([a, b[:1]], np.array([1.0, 1.0]))


def test_a_perfect_member_gets_nearly_all_the_weight():
    targets, perfect, noise = synthetic()
    weights = fit_weights([noise, perfect], targets)
    assert weights.dtype == np.float64 and weights.shape == (2,)
    assert weights.sum() == pytest.approx(1) and weights[1] >= 0.95
    np.testing.assert_allclose(weights * 100, np.round(weights * 100))  # counts / rounds
    assert scores(weighted_mean([noise, perfect], weights), targets).log_loss <= scores(perfect, targets).log_loss
    assert scores(weighted_mean([noise, perfect], weights), targets).error <= scores(perfect, targets).error


def test_the_greedy_choice_beats_the_best_single_member_when_members_complement():
    """Two members each confident on a different half: the mix scores better than either alone."""
    targets, perfect, _ = synthetic(n=200)
    half = np.arange(200) < 100
    uniform = np.full_like(perfect, 0.2)
    first, second = np.where(half[:, None], perfect, uniform), np.where(half[:, None], uniform, perfect)
    weights = fit_weights([first, second], targets, rounds=10)
    assert weights.tolist() == [0.5, 0.5]
    mixed = scores(weighted_mean([first, second], weights), targets).log_loss
    assert mixed < min(scores(first, targets).log_loss, scores(second, targets).log_loss)


def test_copies_of_one_member_do_not_blow_up():
    targets, perfect, noise = synthetic()
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        weights = fit_weights([perfect, perfect.copy(), perfect.copy(), noise], targets)
    assert np.isfinite(weights).all() and weights.sum() == pytest.approx(1)
    assert weights[3] <= 0.05 and weights[:3].sum() >= 0.95
    assert weights[1] == weights[2] == 0  # ties go to the lowest index


def test_fit_weights_refuses_nothing_to_fit():
    targets, perfect, _ = synthetic()
    with pytest.raises(PaddyError):
        fit_weights([], targets)
    with pytest.raises(PaddyError):
        fit_weights([perfect], targets, rounds=0)
    with pytest.raises(PaddyError):
        fit_weights([perfect], targets[:-1])


def test_the_fold_out_estimate_is_not_the_optimistic_in_sample_score():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 5, 60)  # few rows, several weak members: fitting on them overfits
    members = [softmax(np.eye(5)[targets] + rng.normal(0, 1.5, (60, 5))) for _ in range(6)]
    folds = np.arange(len(targets)) % 4 + 1
    in_sample = scores(weighted_mean(members, fit_weights(members, targets)), targets)
    assert fold_out_scores(members, targets, folds).log_loss > in_sample.log_loss + 0.01
    with pytest.raises(PaddyError, match="at least two folds"):
        fold_out_scores(members, targets, np.ones(len(targets), dtype=int))


def test_each_fold_is_predicted_with_weights_fitted_without_it():
    """A good member plus noise, where which is which swaps between the two folds: in sample the fit
    finds the good one on every row, but weights fitted on the other fold always pick the noise."""
    targets, perfect, noise = synthetic(n=200)
    folds = np.repeat([0, 1], 100)
    on_fold = folds[:, None] == 0
    first, second = np.where(on_fold, perfect, noise), np.where(on_fold, noise, perfect)
    for fold in (0, 1):  # the fit on one fold alone is clear-cut: all the weight on its good member
        rows = folds == fold
        assert fit_weights([first[rows], second[rows]], targets[rows]).tolist() == [1.0 - fold, float(fold)]
    in_sample = scores(weighted_mean([first, second], fit_weights([first, second], targets)), targets)
    honest = fold_out_scores([first, second], targets, folds)
    alone = scores(noise, targets)  # every row is predicted by the member that is noise there
    assert (honest.error, honest.log_loss) == pytest.approx((alone.error, alone.log_loss))
    assert honest.log_loss > in_sample.log_loss + 0.5
    with pytest.raises(PaddyError, match="do not match"):
        fold_out_scores([first, second], targets, folds[:-1])


def test_fitting_twenty_members_of_ten_thousand_rows_is_quick():
    rng = np.random.default_rng(2)
    targets = rng.integers(0, 10, 10_000)
    members = [softmax(rng.normal(0, 1, (10_000, 10))) for _ in range(20)]
    started = time.perf_counter()
    weights = fit_weights(members, targets)
    assert time.perf_counter() - started < 2.0
    assert weights.sum() == pytest.approx(1)


def ranked_and_calibrated(n: int = 200, seed: int = 3):
    """Binary targets; a member that ranks every positive above every negative but is barely confident
    (0.52 against 0.48: log loss about 0.65), and one that is confident and calibrated (0.95 on the
    target) but wrong with 0.95 on 15% of rows (log loss about 0.49, AUC about 0.85)."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 2, n)
    positive = np.where(targets == 1, 0.52, 0.48) + rng.uniform(0, 0.001, n)
    flipped = rng.random(n) < 0.15
    confident = np.where((targets == 1) != flipped, 0.95, 0.05)
    return targets, np.column_stack([1 - positive, positive]), np.column_stack([1 - confident, confident])


def test_weights_fitted_on_roc_auc_differ_from_weights_fitted_on_log_loss():
    targets, ranked, calibrated = ranked_and_calibrated()
    on_auc = fit_weights([calibrated, ranked], targets, scoring=Scoring(MetricName.roc_auc, TargetKind.binary))
    on_loss = fit_weights([calibrated, ranked], targets, scoring=Scoring(MetricName.log_loss, TargetKind.binary))
    # the calibrated member's confident mistakes break the ranking until ranked has about 24 rounds to
    # its one (its 0.04 gap then outweighs 0.9 / 25): only then may a tie go to the first member
    assert on_auc[1] >= 0.95, "the perfectly ranked member keeps the AUC at 1"
    assert on_loss[0] > 0.5, "the calibrated member lowers the log loss most"
    auc = scores(weighted_mean([calibrated, ranked], on_auc), targets, Scoring(MetricName.roc_auc, TargetKind.binary))
    assert (auc.metric, auc.value) == (MetricName.roc_auc, 1.0)
    only_ranked = scores(ranked, targets, Scoring(MetricName.roc_auc, TargetKind.binary))
    assert only_ranked.log_loss == pytest.approx(-np.mean(np.log(ranked[np.arange(len(targets)), targets])))


def test_cv_scores_cut_with_decisions_fitted_on_the_outputs_they_score_not_one_folds():
    """An entry's OOF is every fold's held-out rows; each fold's run recorded thresholds (cut-points) fitted on
    its own rows only. The CV score, and the submission of the same average, use those fitted on all of them."""
    probs = np.array([[0.3, 0.9], [0.35, 0.8], [0.2, 0.1], [0.1, 0.2]])
    tags = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    fold_one = Scoring(MetricName.f1_macro, TargetKind.multi, Decisions(thresholds=(0.9, 0.9)))
    # at 0.9 tag 0 is on only as row 3's fallback (F1 0), tag 1 on rows 1, 2, 4: F1 2*2 / (2*2 + 1) = 0.8
    assert fold_one(probs, tags) == pytest.approx(0.4)
    # refitted on the four rows: (0.3, 0.5), tag 0 on rows 1-3 and tag 1 on rows 1, 2, 4: F1 0.8 each
    assert fold_one.fitted(probs, tags).decisions == Decisions(thresholds=(0.3, 0.5))
    assert scores(probs, tags, fold_one).value == pytest.approx(0.8)
    truth = np.array([0, 0, 1, 1, 2, 2])
    values = truth[:, None] + np.array([[0.6], [0.7], [0.6], [0.7], [0.6], [0.7]])  # 0.6 to 0.7 too high
    halfway = Scoring(MetricName.qwk, TargetKind.ordinal, Decisions(cutpoints=(0.5, 1.5)))
    assert halfway(values, truth) < 0.9 and scores(values, truth, halfway).value == pytest.approx(1.0)
    assert scores(probs, tags, Scoring(MetricName.log_loss, TargetKind.multi)).value == pytest.approx(
        -np.mean(np.log(np.where(tags == 1, probs, 1 - probs)))
    ), "a metric of probabilities is not touched"


def test_step_metrics_are_fitted_on_log_loss_and_others_on_themselves():
    targets, perfect, noise = synthetic()
    error = Scoring(MetricName.error_rate, TargetKind.single)
    assert fit_objective(error) == Scoring(MetricName.log_loss, TargetKind.single)
    assert fit_objective(Scoring(MetricName.accuracy, TargetKind.ordinal)) == Scoring(
        MetricName.rmse, TargetKind.regression
    ), "the rmse of the values: that of the grades is a step function too"
    assert fit_objective(Scoring(MetricName.map5, TargetKind.single)).metric is MetricName.map5
    members = [noise, perfect]
    np.testing.assert_array_equal(
        fit_weights(members, targets, scoring=error),
        fit_weights(members, targets, scoring=Scoring(MetricName.log_loss)),
    )


def test_fitting_lower_is_better_numbers_cancels_opposite_biases():
    """Regression members guessing 1 too high and 1 too low: equal weights give rmse 0."""
    truth = np.linspace(0, 10, 50)
    high, low = truth[:, None] + 1, truth[:, None] - 1
    regression = Scoring(MetricName.rmse, TargetKind.regression)
    assert fit_weights([high, low], truth, rounds=10, scoring=regression).tolist() == [0.5, 0.5]
    honest = fold_out_scores([high, low], truth, np.arange(50) % 2, rounds=10, scoring=regression)
    assert honest == Scores(MetricName.rmse, pytest.approx(0.0), None)
    with pytest.raises(PaddyError, match="not an error rate"):
        _ = honest.error
    grades = (np.arange(50) % 5).astype(float)  # ordinal accuracy: fitted on the rmse of the values
    ordinal = Scoring(MetricName.accuracy, TargetKind.ordinal)
    weights = fit_weights([grades[:, None] + 1, grades[:, None] - 1], grades, rounds=10, scoring=ordinal)
    assert weights.tolist() == [0.5, 0.5]


def test_the_saved_cv_names_its_metric_and_the_overfitting_warning_compares_it():
    auc = Scoring(MetricName.roc_auc, TargetKind.binary)
    given, honest = Scores(MetricName.roc_auc, 0.80, 0.40), Scores(MetricName.roc_auc, 0.85, 0.45)
    report = CvReport([], [CvLine("given", given), CvLine("fold-out", honest)], (0.5, 0.5), auc)
    assert report.saved_ensemble() == {"metric": "roc_auc", "value": 0.85, "greater_is_better": True, "log_loss": 0.45}
    assert report.fitting_does_not_help() is None, "a higher AUC is better, whatever the log loss does"
    worse = CvReport([], [CvLine("given", given), CvLine("fold-out", replace(honest, value=0.78))], (0.5, 0.5), auc)
    assert "roc_auc 0.7800 fold-out against 0.8000" in worse.fitting_does_not_help()
    error = CvReport([], [CvLine("given", Scores(MetricName.error_rate, 0.1, 0.3))])
    assert error.saved_ensemble() == {
        "metric": "error_rate",
        "value": 0.1,
        "greater_is_better": False,
        "log_loss": 0.3,
        "error": 0.1,
    }
