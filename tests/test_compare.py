"""DeLong's test for two correlated AUCs, on a hand-worked example and against its properties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.evaluation.compare import delong

# Three TB and three normal images, scored by two models (hand-worked):
#   A: TB 0.9 0.8 0.4 | normal 0.7 0.3 0.2  -> TB placements 1, 1, 2/3; normal 2/3, 1, 1
#                                              AUC_A = 8/9
#   B: TB 0.6 0.5 0.35 | normal 0.55 0.4 0.1 -> TB placements 1, 2/3, 1/3; normal 1/3, 2/3, 1
#                                              AUC_B = 2/3
#   Covariances (ddof 1), TB placements: var A 1/27, var B 1/9, cov 1/18; normal: the same.
#   var(AUC_A − AUC_B) = (1/27 + 1/9 − 2/18) / 3 + (1/27 + 1/9 − 2/18) / 3 = 2/81
#   z = (2/9) / (√2 / 9) = √2, two-sided p = 2 (1 − Φ(√2)) = 0.1573
Y = np.array([1, 1, 1, 0, 0, 0])
A = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2])
B = np.array([0.6, 0.5, 0.35, 0.55, 0.4, 0.1])


def test_delong_on_the_hand_worked_example():
    result = delong(Y, A, B)
    assert result.auc_a == pytest.approx(8 / 9)
    assert result.auc_b == pytest.approx(2 / 3)
    assert result.se == pytest.approx(np.sqrt(2) / 9)
    assert result.z == pytest.approx(np.sqrt(2))
    assert result.p == pytest.approx(0.1573, abs=1e-4)
    # Swapping the models flips the sign, not the evidence.
    swapped = delong(Y, B, A)
    assert swapped.z == pytest.approx(-result.z)
    assert swapped.p == pytest.approx(result.p)


def test_delong_aucs_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.round(rng.normal(y, 1.0), 1)  # rounded: many ties
    b = np.round(rng.normal(y * 0.3, 1.0), 1)
    result = delong(y, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a))
    assert result.auc_b == pytest.approx(roc_auc_score(y, b))
    assert result.p < 0.001  # a clearly better model on 300 images


def test_the_same_model_twice_is_no_difference():
    assert delong(Y, A, A).p == 1.0
    with pytest.raises(ValueError, match="both TB and normal"):
        delong(np.ones(6), A, B)
