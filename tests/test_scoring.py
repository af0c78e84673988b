"""The competitions' metrics, thresholds and cut-points (paddy.scoring), each against a hand computation."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from paddy.core.errors import PaddyError
from paddy.scoring.decisions import (
    Decisions,
    default_decisions,
    fit_cutpoints,
    fit_thresholds,
    grades,
    labels_on,
    quadratic_kappa,
)
from paddy.scoring.metrics import Scoring, binary_auc, score
from paddy.settings.competition import MetricName as M
from paddy.settings.competition import TargetKind as K
from paddy.settings.competition import greater_is_better

# single: argmax [0, 1, 2, 0] against [0, 2, 2, 1]: rows 0 and 2 right
SINGLE = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
SINGLE_T = np.array([0, 2, 2, 1])


def test_accuracy_and_error_rate_by_hand():
    assert score(M.accuracy, K.single, SINGLE, SINGLE_T) == pytest.approx(2 / 4)
    assert score(M.error_rate, K.single, SINGLE, SINGLE_T) == pytest.approx(2 / 4)
    binary = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])  # argmax [1, 0, 0] against [1, 1, 0]
    assert score(M.accuracy, K.binary, binary, np.array([1, 1, 0])) == pytest.approx(2 / 3)


def test_log_loss_of_every_probability_kind_by_hand():
    # the target class's probabilities: 0.7, 0.2, 0.8, 0.3
    expected = -(math.log(0.7) + math.log(0.2) + math.log(0.8) + math.log(0.3)) / 4
    assert score(M.log_loss, K.single, SINGLE, SINGLE_T) == pytest.approx(expected)
    binary = np.array([[0.2, 0.8], [0.6, 0.4], [0.9, 0.1]])  # targets 1, 1, 0: 0.8, 0.4, 0.9
    expected = -(math.log(0.8) + math.log(0.4) + math.log(0.9)) / 3
    assert score(M.log_loss, K.binary, binary, np.array([1, 1, 0])) == pytest.approx(expected)
    # multi: each tag its own binary loss; on tags cost -log p, off tags -log(1 - p): 0.9, 0.8, 0.6, 0.7
    multi, tags = np.array([[0.9, 0.2], [0.4, 0.7]]), np.array([[1, 0], [0, 1]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.7)) / 4
    assert score(M.log_loss, K.multi, multi, tags) == pytest.approx(expected)
    zero = np.array([[1.0, 0.0]])  # the target has probability 0: clipped to 1e-15, not infinite
    assert score(M.log_loss, K.binary, zero, np.array([1])) == pytest.approx(-math.log(1e-15))


def test_roc_auc_binary_is_the_share_of_rightly_ordered_pairs():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [0.9, 0.1]])
    # positives score 0.8 and 0.4, negatives 0.6 and 0.1: pairs (0.8>0.6, 0.8>0.1, 0.4<0.6, 0.4>0.1) = 3/4
    assert score(M.roc_auc, K.binary, probs, np.array([1, 1, 0, 0])) == pytest.approx(0.75)


def test_roc_auc_multi_averages_the_columns_and_skips_one_class_columns():
    probs = np.array([[0.9, 0.5, 0.1], [0.3, 0.5, 0.6], [0.2, 0.5, 0.2], [0.1, 0.5, 0.8]])
    tags = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0], [0, 1, 1]])
    # column 0: positives 0.9, 0.2 against 0.3, 0.1: 3 of 4 pairs; column 1: every row on, no AUC (skipped);
    # column 2: positives 0.6, 0.8 against 0.1, 0.2: 4 of 4
    assert score(M.roc_auc, K.multi, probs, tags) == pytest.approx((0.75 + 1.0) / 2)
    with pytest.raises(PaddyError, match="positive and negative"):
        score(M.roc_auc, K.multi, probs, np.ones((4, 3), dtype=int))
    with pytest.raises(PaddyError, match="positive and negative"):
        score(M.roc_auc, K.binary, probs[:, :2] / probs[:, :2].sum(1, keepdims=True), np.array([1, 1, 1, 1]))


def test_roc_auc_single_is_one_vs_rest_macro():
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    targets = np.array([0, 1, 2, 1])
    # class 0: 0.6 above 0.5, 0.2, 0.1: 1; class 1: positives 0.2, 0.8 against 0.3, 0.3: 2 of 4 pairs;
    # class 2: 0.5 above 0.1, 0.3, 0.1: 1
    got = score(M.roc_auc, K.single, probs, targets)
    assert got == pytest.approx((1 + 0.5 + 1) / 3)
    assert got == pytest.approx(roc_auc_score(targets, probs, multi_class="ovr", average="macro"))


def test_f1_macro_single_by_hand():
    probs = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]])  # argmax 0, 1, 1, 1
    # targets 0, 0, 1, 2: class 0 tp 1 fn 1: 2/3; class 1 tp 1 fp 2: 2/4; class 2 tp 0: 0
    assert score(M.f1_macro, K.single, probs, np.array([0, 0, 1, 2])) == pytest.approx((2 / 3 + 0.5 + 0) / 3)


MULTI = np.array([[0.9, 0.4, 0.1], [0.6, 0.7, 0.3]])
MULTI_T = np.array([[1, 1, 0], [0, 1, 1]])


def test_f1_of_tags_with_default_and_given_thresholds_by_hand():
    # at 0.5: row 0 {0} against {0, 1}: 2*1/(1+2); row 1 {0, 1} against {1, 2}: 2*1/(2+2)
    assert score(M.f1_samples, K.multi, MULTI, MULTI_T) == pytest.approx((2 / 3 + 1 / 2) / 2)
    # columns at 0.5: tag 0 on [1, 1] truth [1, 0]: 2/3; tag 1 [0, 1] truth [1, 1]: 2/3; tag 2 never on: 0
    assert score(M.f1_macro, K.multi, MULTI, MULTI_T) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    # thresholds 0.5, 0.35, 0.25: row 0 {0, 1} exactly right: 1; row 1 {0, 1, 2} against {1, 2}: 2*2/(3+2)
    lower = Decisions(thresholds=(0.5, 0.35, 0.25))
    assert score(M.f1_samples, K.multi, MULTI, MULTI_T, lower) == pytest.approx((1 + 0.8) / 2)
    np.testing.assert_array_equal(labels_on(MULTI, lower.thresholds), [[1, 1, 0], [1, 1, 1]])


def test_f2_of_tags_by_hand():
    """F2 = 5 tp / (5 tp + 4 fn + fp) per image (Planet, iMet): recall weighed four times precision."""
    # at 0.5: row 0 {0} against {0, 1}: 5/(5+4); row 1 {0, 1} against {1, 2}: 5/(5+4+1)
    assert score(M.f2_samples, K.multi, MULTI, MULTI_T) == pytest.approx((5 / 9 + 1 / 2) / 2)
    # thresholds 0.5, 0.35, 0.25: row 0 exactly right: 1; row 1 {0, 1, 2} against {1, 2}: 10/(10+1)
    lower = Decisions(thresholds=(0.5, 0.35, 0.25))
    assert score(M.f2_samples, K.multi, MULTI, MULTI_T, lower) == pytest.approx((1 + 10 / 11) / 2)


def test_f2_thresholds_are_fitted_for_recall():
    probs = np.array([[0.9], [0.8], [0.5], [0.4], [0.3], [0.2]])
    tags = np.array([[1], [1], [0], [0], [1], [0]])
    # on above (0.5, 0.8]: tp 2, fn 1: F1 4/5 (the best F1), F2 10/14; above (0.2, 0.3]: tp 3, fp 2: F1 6/8,
    # F2 15/17 (the best F2). The grid point of each range closest to 0.5: 0.55 and 0.3
    assert fit_thresholds(probs, tags) == (0.55,) and fit_thresholds(probs, tags, beta=2.0) == (0.3,)
    assert Scoring(M.f2_samples, K.multi).fitted(probs, tags).decisions.thresholds == (0.3,)
    assert Scoring(M.f1_samples, K.multi).fitted(probs, tags).decisions.thresholds == (0.55,)


def test_fitted_thresholds_raise_f1_on_the_rows_they_were_fitted_on():
    probs = np.array([[0.3, 0.9], [0.35, 0.8], [0.2, 0.1], [0.1, 0.2]])
    tags = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    # tag 0: positives at 0.3 and 0.35, so 0.5 turns nothing on (F1 0); 0.25 and 0.30 are perfect, 0.30 the
    # closer to 0.5. Tag 1: every threshold in (0.2, 0.8] is perfect: 0.5 itself
    fitted = fit_thresholds(probs, tags)
    assert fitted == (0.3, 0.5)
    # Scored as submitted, a row with no tag on gets its most probable one. At 0.5: tag 0 is on only for row 3
    # (its fallback), F1 0; tag 1 on rows 1, 2 and 4 (fallback), F1 2*2 / (2*2 + 1) = 0.8; macro 0.4.
    default = score(M.f1_macro, K.multi, probs, tags)
    assert default == pytest.approx((0 + 0.8) / 2)
    # Fitted: tag 0 on rows 1, 2 and 3 (fallback), tag 1 on rows 1, 2 and 4 (fallback): F1 0.8 each
    assert score(M.f1_macro, K.multi, probs, tags, Decisions(thresholds=fitted)) == pytest.approx(0.8)
    assert score(M.f1_samples, K.multi, probs, tags, Decisions(thresholds=fitted)) > score(
        M.f1_samples, K.multi, probs, tags
    )
    with pytest.raises(PaddyError, match="0/1 targets"):
        fit_thresholds(probs, tags * 2)


def test_grades_count_the_cutpoints_at_or_below_a_value():
    np.testing.assert_array_equal(grades(np.array([0.2, 0.5, 1.6, 2.4]), (0.5, 1.5)), [0, 1, 2, 2])
    np.testing.assert_array_equal(grades(np.array([[0.2], [0.9]]), (0.5, 1.5), lowest=1), [1, 2])
    assert default_decisions(K.ordinal, 1, (1, 4)) == Decisions(cutpoints=(1.5, 2.5, 3.5), lowest_grade=1)
    assert default_decisions(K.multi, 3) == Decisions(thresholds=(0.5, 0.5, 0.5))
    assert default_decisions(K.single, 3) == Decisions()
    with pytest.raises(PaddyError, match="grade range"):
        default_decisions(K.ordinal, 1, None)


def test_qwk_by_hand():
    values, truth = np.array([[0.1], [1.6], [2.2]]), np.array([0.0, 1.0, 2.0])
    # default cut-points 0.5, 1.5: grades 0, 2, 2. Observed: (0,0), (1,2), (2,2); weights (i - j)^2:
    # observed cost 1; expected = truth counts (1, 1, 1) x predicted counts (1, 0, 2) / 3, each row
    # [1/3, 0, 2/3]: costs 0 + 4*2/3, 1/3 + 2/3, 4/3 = 5 in all: kappa = 1 - 1/5
    assert score(M.qwk, K.ordinal, values, truth) == pytest.approx(0.8)
    with pytest.raises(PaddyError, match="undefined"):
        score(M.qwk, K.ordinal, np.array([[0.1], [0.2]]), np.array([0.0, 0.0]), Decisions(cutpoints=(0.5,)))


def test_fitted_cutpoints_raise_kappa_over_the_defaults():
    truth = np.array([0, 0, 1, 1, 2, 2])
    values = truth[:, None] + np.array([[0.6], [0.7], [0.6], [0.7], [0.6], [0.7]])  # the model guesses 0.6 high
    default = score(M.qwk, K.ordinal, values, truth.astype(float))  # grades 1, 1, 2, 2, 2, 2
    cuts = fit_cutpoints(values, truth)
    assert len(cuts) == 2 and cuts[0] < cuts[1]
    fitted = score(M.qwk, K.ordinal, values, truth.astype(float), Decisions(cutpoints=cuts))
    assert fitted == pytest.approx(1.0) and default < 0.9
    assert 0.7 < cuts[0] < 1.6 and 1.7 < cuts[1] < 2.6
    with pytest.raises(PaddyError, match="whole numbers"):
        fit_cutpoints(values, truth + 0.5)


def test_rmse_of_numbers_and_of_grades_by_hand():
    # errors 0.5, 0, 2: sqrt((0.25 + 0 + 4) / 3)
    expected = math.sqrt(4.25 / 3)
    assert score(M.rmse, K.regression, np.array([[1.0], [2.0], [4.0]]), np.array([1.5, 2.0, 2.0])) == pytest.approx(
        expected
    )
    # ordinal: grades 0, 2, 1 of 0.4, 1.6, 1.4 against 0, 1, 2: errors 0, 1, 1; accuracy 1/3
    values, truth = np.array([[0.4], [1.6], [1.4]]), np.array([0.0, 1.0, 2.0])
    assert score(M.rmse, K.ordinal, values, truth) == pytest.approx(math.sqrt(2 / 3))
    assert score(M.accuracy, K.ordinal, values, truth) == pytest.approx(1 / 3)


def test_map5_by_hand():
    probs = np.array(
        [
            [0.5, 0.2, 0.1, 0.1, 0.05, 0.05],  # target 0 first: 1
            [0.4, 0.3, 0.1, 0.1, 0.05, 0.05],  # target 1 second: 1/2
            [0.3, 0.25, 0.2, 0.15, 0.08, 0.02],  # target 5 sixth, outside the top 5: 0
            [0.1, 0.5, 0.05, 0.2, 0.15, 0.0],  # order 1, 3, 4, 0, 2: target 4 third: 1/3
            [0.25, 0.25, 0.25, 0.25, 0.0, 0.0],  # a tie ranks the lower index first: target 2 third: 1/3
        ]
    )
    expected = (1 + 1 / 2 + 0 + 1 / 3 + 1 / 3) / 5
    assert score(M.map5, K.single, probs, np.array([0, 1, 5, 4, 2])) == pytest.approx(expected)


def test_which_metrics_are_better_higher():
    assert [greater_is_better(m) for m in (M.error_rate, M.log_loss, M.rmse)] == [False, False, False]
    assert all(greater_is_better(m) for m in (M.accuracy, M.roc_auc, M.f1_macro, M.f1_samples, M.f2_samples, M.qwk))
    assert greater_is_better(M.map5)


@pytest.mark.parametrize(
    "metric, kind, outputs, targets, match",
    [
        (M.rmse, K.single, SINGLE, SINGLE_T, "does not fit"),
        (M.accuracy, K.single, SINGLE[:0], SINGLE_T[:0], "cannot score"),
        (M.accuracy, K.single, SINGLE, SINGLE_T[:3], "cannot score"),
        (M.accuracy, K.single, SINGLE, np.array([0, 1, 2, 3]), "class indices"),
        (M.accuracy, K.single, SINGLE, np.array([0, -1, 2, 1]), "class indices"),
        (M.accuracy, K.single, SINGLE, SINGLE_T.astype(float), "class indices"),
        (M.accuracy, K.single, SINGLE * 2, SINGLE_T, "probabilities"),
        (M.accuracy, K.single, np.full((4, 3), np.nan), SINGLE_T, "cannot score"),
        (M.roc_auc, K.binary, SINGLE, SINGLE_T, "need"),
        (M.f1_samples, K.multi, MULTI, MULTI_T[:, :2], "0/1"),
        (M.f1_samples, K.multi, MULTI, MULTI_T * 2, "0/1"),
        (M.rmse, K.regression, MULTI, np.array([1.0, 2.0]), r"\(n, 1\)"),
        (M.qwk, K.ordinal, np.array([[0.1], [1.2]]), np.array([0.0, 1.5]), "whole grades"),
    ],
)
def test_malformed_inputs_are_refused(metric, kind, outputs, targets, match):
    with pytest.raises(PaddyError, match=match):
        score(metric, kind, outputs, targets)


def test_thresholds_of_the_wrong_length_are_refused():
    with pytest.raises(PaddyError, match="2 thresholds"):
        score(M.f1_samples, K.multi, MULTI, MULTI_T, Decisions(thresholds=(0.5, 0.5)))


def test_decisions_round_trip_through_json_and_bad_ones_are_refused():
    ordinal = Decisions(cutpoints=(0.4, 1.6, 2.5), lowest_grade=1)
    assert ordinal.to_json() == {"cutpoints": [0.4, 1.6, 2.5], "grades": [1, 4]}
    assert Decisions.from_json(ordinal.to_json()) == ordinal
    multi = Decisions(thresholds=(0.3, 0.5))
    assert Decisions.from_json(multi.to_json()) == multi
    assert Decisions.from_json(None) == Decisions() == Decisions.from_json({})
    for bad in (
        {"thresholds": [0.5, 1.5]},
        {"thresholds": "0.5"},
        {"cutpoints": [1.5, 0.5], "grades": [0, 2]},
        {"cutpoints": [0.5, 1.5], "grades": [0, 3]},
        {"cutpoints": [0.5, 1.5]},
    ):
        with pytest.raises(PaddyError, match="decisions"):
            Decisions.from_json(bad)


def test_a_scoring_refuses_a_metric_that_does_not_fit_its_kind():
    with pytest.raises(PaddyError, match="does not fit"):
        Scoring(M.qwk, K.single)
    assert Scoring(M.roc_auc, K.binary)(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 1])) == 1.0


def test_the_hand_made_auc_and_kappa_equal_sklearns():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 300).astype(bool)
    column = np.round(rng.random(300) + 0.3 * truth, 1)  # rounded: many ties, which count half
    assert binary_auc(truth, column) == pytest.approx(roc_auc_score(truth, column))
    grades_true, grades_guessed = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    grades_guessed[grades_guessed == 3] = 4  # grade 3 only among the truth
    expected = cohen_kappa_score(grades_true, grades_guessed, weights="quadratic", labels=range(5))
    assert quadratic_kappa(grades_true, grades_guessed) == pytest.approx(expected)
    # a grade nobody gave still counts as a step: 0 against 2 costs 4, as sklearn with every label
    assert quadratic_kappa(np.array([0, 2, 2]), np.array([0, 0, 2])) == pytest.approx(
        cohen_kappa_score([0, 2, 2], [0, 0, 2], weights="quadratic", labels=[0, 1, 2])
    )


def test_scoring_imports_no_sklearn_until_it_scores():
    """`paddy --help` imports the ensembling modules: sklearn.metrics would cost it more than it has."""
    script = "import sys, paddy.ensembling.cv, paddy.scoring.metrics\nprint('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
