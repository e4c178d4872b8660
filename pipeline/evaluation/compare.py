"""Statistics that tell a real difference between two models from noise.

:func:`delong` is DeLong's test for two correlated AUCs — two models scored on the *same* test
images (DeLong, DeLong & Clarke-Pearson, Biometrics 44:837–845, 1988), computed with midranks
(Sun & Xu, IEEE Signal Process. Lett. 21:1389–1393, 2014). It is the paired test to use when a
change is said to improve a model on one test or external set; over seeds, compare the per-seed
results with a paired test instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t


@dataclass(frozen=True)
class AucComparison:
    """``auc_a`` − ``auc_b`` with its DeLong standard error, z statistic and two-sided p."""

    auc_a: float
    auc_b: float
    se: float
    z: float
    p: float

    @property
    def difference(self) -> float:
        return self.auc_a - self.auc_b


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's placement values: for each positive, the share of negatives it beats
    (ties count half); for each negative, the share of positives that beat it."""
    m, n = pos.size, neg.size
    ranks = rankdata(np.concatenate([pos, neg]))
    v10 = (ranks[:m] - rankdata(pos)) / n
    v01 = 1.0 - (ranks[m:] - rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong(y_true: Any, score_a: Any, score_b: Any) -> AucComparison:
    """DeLong's test: is model A's AUC different from model B's on the same labelled images?

    ``score_a`` and ``score_b`` score the same images, in the same order as ``y_true`` (0/1,
    both classes present). Identical scores give a difference of 0 with p = 1.
    """
    y = np.asarray(y_true).astype(int)
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    if not (y.shape == a.shape == b.shape) or y.ndim != 1:
        raise ValueError("labels and both score arrays must be 1-D and of the same length")
    if not set(np.unique(y)) == {0, 1}:
        raise ValueError("DeLong's test needs both TB and normal images")
    m, n = int(y.sum()), int((y == 0).sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two images of each class")
    auc_a, v10_a, v01_a = _placements(a[y == 1], a[y == 0])
    auc_b, v10_b, v01_b = _placements(b[y == 1], b[y == 0])
    s10 = np.cov(np.vstack([v10_a, v10_b]))
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    cov = s10 / m + s01 / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if variance <= 1e-15:
        return AucComparison(auc_a, auc_b, 0.0, 0.0, 1.0)
    se = variance**0.5
    z = (auc_a - auc_b) / se
    return AucComparison(auc_a, auc_b, se, float(z), float(2 * norm.sf(abs(z))))


@dataclass(frozen=True)
class PairedComparison:
    """A metric of setting A against setting B over the seeds both have: the mean of the per-seed
    differences (A − B), their sample std, the paired t statistic and its two-sided p."""

    n: int
    mean_difference: float
    sd: float
    t: float
    p: float


def paired_seeds(a: dict[int, float], b: dict[int, float]) -> PairedComparison | None:
    """The paired t-test over the seeds both ``a`` and ``b`` (seed -> metric) have results for.

    Runs of the same seed share their split, so their difference removes what the split
    contributes. None with fewer than two shared seeds (no spread to test against). Identical
    differences on every seed (sd 0) give p = 0 unless they are all 0 (p = 1).
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= 1e-12:
        p = 1.0 if abs(mean) <= 1e-12 else 0.0
        return PairedComparison(len(seeds), mean, sd, float("inf") * np.sign(mean), p)
    t = mean / (sd / np.sqrt(len(seeds)))
    return PairedComparison(
        len(seeds), mean, sd, float(t), float(2 * student_t.sf(abs(t), len(d) - 1))
    )
