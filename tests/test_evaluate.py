"""Tests for pipeline.evaluation.metrics on tables small enough to check by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.evaluation.metrics import (
    _resampled_auc,
    bootstrap_ci,
    choose_threshold,
    evaluate,
    external,
    metrics,
)

# Six samples, threshold 0.5 (score >= 0.5 -> TB):
#
#   label  score  called   cell
#     0     0.4    0       TN
#     0     0.6    1       FP
#     0     0.7    1       FP
#     1     0.4    0       FN
#     1     0.8    1       TP
#     1     0.9    1       TP
#
# TN=1 FP=2 FN=1 TP=2
# sensitivity = TP/(TP+FN) = 2/3      specificity = TN/(TN+FP) = 1/3
# precision   = TP/(TP+FP) = 2/4      npv         = TN/(TN+FN) = 1/2
# accuracy    = (TP+TN)/6  = 3/6      F1 = 2TP/(2TP+FP+FN) = 4/7
# AUC = share of (positive, negative) pairs ranked right, a tie counting 1/2; 3 x 3 = 9 pairs:
#   pos 0.4 vs neg 0.4, 0.6, 0.7 -> 1/2 + 0 + 0 = 1/2
#   pos 0.8 vs all three         -> 3
#   pos 0.9 vs all three         -> 3
#   AUC = 6.5/9 = 13/18
# Average precision = sum over recall steps of (recall gain x precision there), scores descending:
#   0.9 (TP): recall 1/3, precision 1/1 -> 1/3 x 1
#   0.8 (TP): recall 2/3, precision 2/2 -> 1/3 x 1
#   0.7, 0.6 (FP): no recall gain
#   0.4 (TP and TN tied, taken together): recall 1, precision 3/6 -> 1/3 x 1/2
#   AP = 1/3 + 1/3 + 1/6 = 5/6
Y6 = [0, 0, 0, 1, 1, 1]
S6 = [0.4, 0.6, 0.7, 0.4, 0.8, 0.9]


def test_metrics_match_the_hand_worked_six_sample_table():
    m = metrics(Y6, S6, 0.5)

    assert (m["n"], m["n_pos"], m["n_neg"], m["threshold"]) == (6, 3, 3, 0.5)
    assert m["confusion"] == {"tn": 1, "fp": 2, "fn": 1, "tp": 2}
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 3)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["npv"] == pytest.approx(1 / 2)
    assert m["accuracy"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["auc"] == pytest.approx(13 / 18)
    assert m["average_precision"] == pytest.approx(5 / 6)
    assert m["who_met"] is False


def test_a_score_equal_to_the_threshold_is_called_positive():
    # The negative scored exactly 0.6 is a false positive at threshold 0.6 and a true negative
    # just above it.
    assert metrics(Y6, S6, 0.6)["confusion"] == {"tn": 1, "fp": 2, "fn": 1, "tp": 2}
    assert metrics(Y6, S6, 0.61)["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}


def test_who_met_needs_both_sensitivity_90_and_specificity_70():
    # 10 positives, 10 negatives. At 0.5: 9 of 10 positives caught (sensitivity 0.9 exactly) and
    # 7 of 10 negatives cleared (specificity 0.7 exactly): the WHO minimum, met on the boundary.
    y = [1] * 10 + [0] * 10
    s = [0.9] * 9 + [0.1] + [0.1] * 7 + [0.9] * 3
    assert metrics(y, s, 0.5)["who_met"] is True
    # One more false positive: specificity 0.6 -> not met.
    s[16] = 0.9
    assert metrics(y, s, 0.5)["who_met"] is False


def test_roc_and_pr_curves_are_json_safe_and_start_where_nothing_is_positive():
    m = metrics(Y6, S6, 0.5)
    roc = m["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"])
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    # sklearn's first threshold is inf; ours is just above the highest score, same meaning.
    assert math.isfinite(roc["thresholds"][0])
    assert roc["thresholds"][0] > max(S6)
    assert len(m["pr"]["precision"]) == len(m["pr"]["recall"]) == len(m["pr"]["thresholds"]) + 1
    text = json.dumps(m, allow_nan=False)
    assert json.loads(text)["confusion"]["tp"] == 2


def test_undefined_ratios_are_nan_not_zero():
    # Threshold above every score: nothing is called TB, so precision = 0/0 is undefined.
    m = metrics(Y6, S6, 0.95)
    assert m["confusion"] == {"tn": 3, "fp": 0, "fn": 3, "tp": 0}
    assert math.isnan(m["precision"])
    assert m["sensitivity"] == 0.0
    assert m["f1"] == 0.0  # 2*0 / (0 + 0 + 3): defined, and zero
    # Threshold below every score: everything is TB, so npv = 0/0 is undefined.
    assert math.isnan(metrics(Y6, S6, 0.0)["npv"])


def test_single_class_gives_nan_auc_in_metrics_but_counts_still_work():
    # An external folder holding only TB cases: sensitivity is measurable, AUC and specificity not.
    m = metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert m["confusion"] == {"tn": 0, "fp": 0, "fn": 1, "tp": 2}
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert math.isnan(m["specificity"])
    assert math.isnan(m["auc"])
    assert math.isnan(m["average_precision"])
    assert m["roc"] == {"fpr": [], "tpr": [], "thresholds": []}
    assert m["who_met"] is False
    json.dumps(m)


# Nine samples, listed by descending score; "top k" = called TB at the k-th score.
# 5 positives (P), 4 negatives (N).
#
#   k  score label  TP FP  sens  spec   Youden J  F1 = 2TP/(TP+FP+5)
#   1   0.9    1     1  0   0.2   1.00   0.20      2/6  = 0.333
#   2   0.8    1     2  0   0.4   1.00   0.40      4/7  = 0.571
#   3   0.7    1     3  0   0.6   1.00   0.60 <-   6/8  = 0.750
#   4   0.6    0     3  1   0.6   0.75   0.35      6/9  = 0.667
#   5   0.5    1     4  1   0.8   0.75   0.55      8/10 = 0.800 <-
#   6   0.4    0     4  2   0.8   0.50   0.30      8/11 = 0.727
#   7   0.3    0     4  3   0.8   0.25   0.05      8/12 = 0.667
#   8   0.2    1     5  3   1.0   0.25   0.25 (WHO) 10/13 = 0.769
#   9   0.1    0     5  4   1.0   0.00   0.00      10/14 = 0.714
#
# WHO: only k >= 8 reach sensitivity >= 0.9; of those, k=8 has the higher specificity -> 0.2.
# Youden: each negative costs 1/4 of specificity, each positive is worth 1/5 of sensitivity, so it
#   stops before the first negative -> 0.7.
# F1 ignores true negatives, so giving up one negative (k=4) to gain a positive (k=5) pays -> 0.5.
Y9 = [1, 1, 1, 0, 1, 0, 0, 1, 0]
S9 = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]


def test_the_three_rules_pick_the_hand_worked_thresholds():
    assert choose_threshold(Y9, S9) == 0.2  # "who" is the default
    assert choose_threshold(Y9, S9, rule="youden") == 0.7
    assert choose_threshold(Y9, S9, rule="max_f1") == 0.5


def test_rules_do_not_depend_on_the_order_of_the_samples():
    order = np.random.default_rng(3).permutation(len(Y9))
    y, s = np.array(Y9)[order], np.array(S9)[order]
    assert [choose_threshold(y, s, rule=r) for r in ("who", "youden", "max_f1")] == [0.2, 0.7, 0.5]


def test_who_rule_breaks_a_specificity_tie_towards_higher_sensitivity():
    # With min_sensitivity 0.4 both k=2 (0.8) and k=3 (0.7) have specificity 1.0; k=3 catches one
    # more TB case (sensitivity 0.6 vs 0.4), so it wins.
    assert choose_threshold(Y9, S9, min_sensitivity=0.4) == 0.7
    # With 0.7, only k >= 5 qualify; k=5 has the best specificity (0.75).
    assert choose_threshold(Y9, S9, min_sensitivity=0.7) == 0.5


def test_chosen_threshold_is_always_one_of_the_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = rng.random(50) + y * 0.3
    for rule in ("who", "youden", "max_f1"):
        assert choose_threshold(y, s, rule=rule) in set(s.tolist())


def test_threshold_comes_from_validation_and_is_applied_unchanged_to_test():
    # Validation is the nine-sample table (WHO threshold 0.2). The test set is scored higher
    # across the board, so fitting on test would pick a different threshold (0.6 here).
    y_test = [0, 0, 0, 1, 1, 1]
    s_test = [0.1, 0.3, 0.5, 0.6, 0.8, 0.9]
    assert choose_threshold(y_test, s_test) == 0.6

    r = evaluate(Y9, S9, y_test, s_test, n_boot=0)

    assert r["threshold"] == 0.2
    assert r["threshold_rule"] == "who"
    # At 0.2, two of three test negatives (0.3, 0.5) are false alarms: specificity 1/3, where
    # the test-fitted 0.6 would have claimed 1.0.
    assert r["confusion"] == {"tn": 1, "fp": 2, "fn": 0, "tp": 3}
    assert r["specificity"] == pytest.approx(1 / 3)
    assert r["val"]["sensitivity"] == 1.0
    assert r["val"]["specificity"] == 0.25
    assert r["val"]["auc"] == pytest.approx(metrics(Y9, S9, 0.2)["auc"])
    assert r["auc_ci"] is None


def test_evaluate_result_holds_cis_and_is_json_serialisable():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    s = rng.normal(y, 1.0)
    r = evaluate(y[:40], s[:40], y[40:], s[40:], n_boot=200)
    for name in ("auc", "sensitivity", "specificity"):
        lo, hi = r[f"{name}_ci"]
        assert lo <= r[name] <= hi
    decoded = json.loads(json.dumps(r))
    assert decoded["val"].keys() == {"n", "auc", "sensitivity", "specificity"}


def test_external_uses_the_given_threshold_and_accepts_a_single_class():
    r = external([1, 1, 1, 1], [0.1, 0.35, 0.6, 0.9], 0.3, n_boot=100)
    assert r["threshold"] == 0.3
    assert r["sensitivity"] == 0.75
    assert math.isnan(r["auc"])
    assert all(math.isnan(v) for v in r["auc_ci"])
    assert all(math.isnan(v) for v in r["specificity_ci"])
    assert r["sensitivity_ci"][0] <= 0.75 <= r["sensitivity_ci"][1]
    assert "NaN" in json.dumps(r)


def _separable_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    return y, rng.normal(1.2 * y, 1.0)


def test_bootstrap_ci_contains_the_point_estimate_and_narrows_with_more_data():
    widths = []
    for size in (60, 600):
        y, s = _separable_sample(size, seed=size)
        point = metrics(y, s, 0.6)
        ci = bootstrap_ci(y, s, 0.6, n=500, seed=0)
        assert ci.keys() == {"auc", "sensitivity", "specificity"}
        for name, (lo, hi) in ci.items():
            assert lo <= point[name] <= hi
        widths.append(ci["auc"][1] - ci["auc"][0])
    # AUC standard error shrinks like 1/sqrt(n): ten times the data, about a third the width.
    assert widths[1] < widths[0] / 2


def test_bootstrap_ci_is_reproducible_from_its_seed_and_empty_for_zero_resamples():
    y, s = _separable_sample(100, seed=5)
    assert bootstrap_ci(y, s, 0.5, n=200, seed=7) == bootstrap_ci(y, s, 0.5, n=200, seed=7)
    assert bootstrap_ci(y, s, 0.5, n=200, seed=7) != bootstrap_ci(y, s, 0.5, n=200, seed=8)
    assert bootstrap_ci(y, s, 0.5, n=0) == {}


def test_bootstrap_ci_of_a_perfect_classifier_is_a_point():
    ci = bootstrap_ci([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 0.5, n=300)
    assert ci == {"auc": (1.0, 1.0), "sensitivity": (1.0, 1.0), "specificity": (1.0, 1.0)}


def test_vectorised_resample_auc_agrees_with_sklearn_including_ties():
    rng = np.random.default_rng(2)
    # Rounded scores make ties between positives and negatives common.
    pos = np.round(rng.normal(1.0, 1.0, (20, 7)), 1)
    neg = np.round(rng.normal(0.0, 1.0, (20, 9)), 1)
    y = np.r_[np.ones(7), np.zeros(9)]
    expected = [roc_auc_score(y, np.r_[p, n]) for p, n in zip(pos, neg, strict=True)]
    np.testing.assert_allclose(_resampled_auc(pos, neg), expected)


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([], [], "empty"),
        ([0, 1, 1], [0.1, 0.2], "3 labels but y_score has 2 scores"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0 (normal) or 1 (TB); found 2"),
        ([0, 1, 1], [0.1, float("nan"), 0.3], "NaN or infinite"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "only class 1 (TB)"),
        ([0, 0], [0.1, 0.2], "only class 0 (normal)"),
    ],
)
def test_choose_threshold_refuses_bad_input_with_a_specific_message(y, s, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose_threshold(y, s)


def test_choose_threshold_refuses_unknown_rule_and_bad_target():
    with pytest.raises(ValueError, match="unknown threshold rule 'f2'; choose one of who"):
        choose_threshold(Y9, S9, rule="f2")
    with pytest.raises(ValueError, match=r"min_sensitivity must be in \[0, 1\]"):
        choose_threshold(Y9, S9, min_sensitivity=90)


def test_metrics_and_bootstrap_refuse_bad_threshold_and_settings():
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        metrics(Y6, S6, float("inf"))
    with pytest.raises(ValueError, match="must be >= 0"):
        bootstrap_ci(Y6, S6, 0.5, n=-1)
    with pytest.raises(ValueError, match="level must be strictly between 0 and 1"):
        bootstrap_ci(Y6, S6, 0.5, level=95)


def test_evaluate_says_which_split_could_not_give_a_threshold():
    # A validation split with no TB cases cannot set a threshold; the test split is never used.
    with pytest.raises(ValueError, match="validation split: cannot choose a threshold"):
        evaluate([0, 0, 0], [0.1, 0.2, 0.3], Y6, S6)
    with pytest.raises(ValueError, match="test split: y_true has 6 labels but y_score has 5"):
        evaluate(Y9, S9, Y6, S6[:5])
