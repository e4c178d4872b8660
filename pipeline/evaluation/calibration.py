"""Calibration: probabilities that mean what they say, and an operating point chosen for a site.

Two separate things, as WHO's guidance on computer-aided detection of TB separates them:

- **Probability calibration** (:class:`Calibrator`): a monotone map from the network's output to
  a probability, fitted on the run's validation split (Platt scaling or isotonic regression), with
  the measures that say whether it worked: expected calibration error, Brier score and the
  reliability diagram (:func:`pipeline.evaluation.metrics.calibration_report`).
- **Site calibration** (:func:`calibrate_site`): a site's labelled sample is split
  (:func:`site_split`, near-duplicate groups kept together) into a calibration part, where the
  threshold is chosen by the run's rule, and a check part, where it is reported with bootstrap
  intervals, beside the threshold table WHO's calibration toolkit shows
  (:func:`threshold_table`: sensitivity, specificity, PPV and NPV at the site's prevalence, and
  per 1,000 people screened the number referred, TB found and TB missed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.splits import stratified_group_split
from pipeline.evaluation import metrics

CALIBRATION_FILE = "calibration.json"
KINDS = ("none", "platt", "isotonic")
# Each part of a site sample needs this many images of each class: fewer and the threshold (or
# its check) rests on a handful of patients.
MIN_PER_CLASS_AND_PART = 10
_EPS = 1e-6


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from model output to probability (JSON-serialisable, no pickle).

    ``platt``: ``sigmoid(a · logit(p) + b)`` with ``a > 0``. ``isotonic``: a non-decreasing
    step function through ``(x, y)``, linearly interpolated and clipped at the ends.
    """

    kind: str
    params: dict[str, list[float]]

    def __call__(self, scores: Any) -> np.ndarray:
        s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
        if self.kind == "platt":
            z = self.params["a"][0] * _logit(s) + self.params["b"][0]
            return 1.0 / (1.0 + np.exp(-z))
        return np.interp(s, self.params["x"], self.params["y"])

    def save(self, folder: Path) -> None:
        (folder / CALIBRATION_FILE).write_text(json.dumps({"kind": self.kind, **self.params}))

    @classmethod
    def load(cls, folder: Path) -> Calibrator | None:
        """The run's calibrator, or None when the run has none."""
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        kind = saved.pop("kind")
        if kind not in ("platt", "isotonic"):
            raise ValueError(f"{path}: unknown calibration {kind!r}")
        return cls(kind, saved)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def fit_calibrator(kind: str, y_val: Any, s_val: Any) -> Calibrator | None:
    """Fit a calibrator of ``kind`` on validation labels and scores; None for ``"none"``."""
    if kind not in KINDS:
        raise ValueError(f"unknown calibration {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "none":
        return None
    y = np.asarray(y_val).astype(int)
    s = np.asarray(s_val, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("probability calibration needs both classes in the validation split")
    if kind == "platt":
        from sklearn.linear_model import LogisticRegression

        # Nearly unregularised: the two parameters are fitted, not shrunk.
        fit = LogisticRegression(C=1e6).fit(_logit(s)[:, None], y)
        a = max(float(fit.coef_[0, 0]), _EPS)  # monotone: a higher score never lowers P(TB)
        return Calibrator("platt", {"a": [a], "b": [float(fit.intercept_[0])]})
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
    return Calibrator(
        "isotonic",
        {"x": fit.X_thresholds_.tolist(), "y": fit.y_thresholds_.tolist()},
    )


def site_split(
    labels: Any, groups: list[str], check_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split a site sample into calibration and check parts (indices), stratified by class with
    near-duplicate groups kept together. Refuses, naming the count needed, a sample that cannot
    give each part :data:`MIN_PER_CLASS_AND_PART` images of each class."""
    if not 0.1 <= check_fraction <= 0.9:
        raise ValueError(f"check fraction must be between 0.1 and 0.9 (got {check_fraction})")
    y = np.asarray(labels).astype(int)
    smaller = min(check_fraction, 1.0 - check_fraction)
    needed = int(np.ceil(MIN_PER_CLASS_AND_PART / smaller))
    for cls, name in ((1, "TB"), (0, "normal")):
        have = int((y == cls).sum())
        if have < needed:
            raise ValueError(
                f"the site sample has {have} {name} images; calibrating with a check fraction "
                f"of {check_fraction:g} needs at least {needed} (at least "
                f"{MIN_PER_CLASS_AND_PART} in each part), so add labelled {name} images"
            )
    split = stratified_group_split(
        y, groups, val_fraction=0.0, test_fraction=check_fraction, seed=seed
    )
    return split.train, split.test


def threshold_table(
    y: Any, s: Any, prevalence: float, thresholds: Any | None = None
) -> list[dict[str, float]]:
    """WHO's calibration table: at each threshold (default: every distinct score), sensitivity,
    specificity, PPV and NPV at ``prevalence``, and per 1,000 people screened the number
    referred for testing, TB found and TB missed. Rows go from the lowest threshold up."""
    if not 0.0 < prevalence < 1.0:
        raise ValueError(f"prevalence must be between 0 and 1, exclusive (got {prevalence})")
    y = np.asarray(y).astype(int)
    s = np.asarray(s, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the threshold table needs TB and normal images")
    grid = np.unique(s) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    rows = []
    for t in np.sort(grid):
        sens = float((s[y == 1] >= t).sum() / n_pos)
        spec = float((s[y == 0] < t).sum() / n_neg)
        tb = 1000.0 * prevalence
        found = sens * tb
        false_alarms = (1.0 - spec) * (1000.0 - tb)
        referred = found + false_alarms
        healthy_cleared = spec * (1000.0 - tb)
        cleared = healthy_cleared + (tb - found)
        rows.append(
            {
                "threshold": float(t),
                "sensitivity": sens,
                "specificity": spec,
                "ppv": found / referred if referred > 0 else float("nan"),
                "npv": healthy_cleared / cleared if cleared > 0 else float("nan"),
                "referred_per_1000": referred,
                "tb_found_per_1000": found,
                "tb_missed_per_1000": tb - found,
            }
        )
    return rows


def calibrate_site(
    y: Any,
    s: Any,
    groups: list[str],
    *,
    run_threshold: float,
    prevalence: float,
    rule: str = "who",
    min_sensitivity: float = metrics.WHO_MIN_SENSITIVITY,
    check_fraction: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Choose a site threshold on one part of a labelled site sample and check it on the other.

    Returns ``threshold`` (chosen on the calibration part by ``rule``), ``check`` (metrics on
    the check part at that threshold, with bootstrap intervals), ``check_at_run_threshold`` (the
    same at the run's validated threshold, for comparison), ``table`` (:func:`threshold_table`
    on the check part, with rows for both thresholds), and the sizes of both parts. The run's
    own threshold is not changed.
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(s, dtype=np.float64)
    cal, check = site_split(y, groups, check_fraction, seed)
    threshold = metrics.choose_threshold(y[cal], s[cal], rule=rule, min_sensitivity=min_sensitivity)
    at_site = metrics.external(y[check], s[check], threshold, n_boot=n_boot, seed=seed)
    at_run = metrics.external(y[check], s[check], run_threshold, n_boot=n_boot, seed=seed)
    keep = ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity", "specificity_ci")
    return {
        "threshold": threshold,
        "rule": rule,
        "min_sensitivity": float(min_sensitivity),
        "prevalence": float(prevalence),
        "check_fraction": float(check_fraction),
        "seed": int(seed),
        "n_images": int(y.size),
        "n_calibration": int(cal.size),
        "n_check": int(check.size),
        "check": {k: at_site[k] for k in keep},
        # How well P(TB) itself is calibrated at this site, on all its images.
        "calibration": metrics.calibration_report(y, s),
        "check_at_run_threshold": {"threshold": float(run_threshold)}
        | {k: at_run[k] for k in keep},
        # Every distinct check score, and both thresholds, so each has its own row.
        "table": threshold_table(
            y[check], s[check], prevalence, np.unique(np.r_[s[check], threshold, run_threshold])
        ),
    }
