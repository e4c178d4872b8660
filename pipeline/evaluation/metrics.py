"""Evaluation of a binary TB classifier: operating threshold, metrics, curves, bootstrap intervals.

Conventions used throughout: label 1 = TB (positive), 0 = normal; ``y_score`` is the model's TB
score (any real number, usually a probability); a score ``>= threshold`` is called positive.

The operating threshold is chosen on the validation split and applied unchanged to test
(:func:`evaluate`) and to external datasets (:func:`external`). A threshold fitted on the test set
itself would be optimistically biased: the test numbers would no longer estimate how the model does
on unseen data. Every result is plain Python (``int``, ``float``, ``bool``, ``list``, ``dict``) and
can be written with ``json.dumps``; undefined quantities are ``float("nan")``, which ``json.dumps``
writes as ``NaN`` (the default ``allow_nan=True``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

# WHO target product profile for a TB screening test: the minimum acceptable accuracy.
WHO_MIN_SENSITIVITY = 0.9
WHO_MIN_SPECIFICITY = 0.7

RULES: tuple[str, ...] = ("who", "youden", "max_f1")


def _check(y_true: Any, y_score: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels as int array, scores as float array)`` or raise a ValueError saying why."""
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(
            f"{what}: y_true and y_score must be 1-D (got shapes {y.shape} and {s.shape})"
        )
    if y.size == 0:
        raise ValueError(f"{what}: y_true and y_score are empty; there is nothing to evaluate")
    if y.size != s.size:
        raise ValueError(
            f"{what}: y_true has {y.size} labels but y_score has {s.size} scores; "
            "they must be the same length"
        )
    bad = ~np.isin(y, [0, 1])
    if bad.any():
        found = sorted({str(v) for v in y[bad].tolist()})[:5]
        raise ValueError(f"{what}: labels must be 0 (normal) or 1 (TB); found {', '.join(found)}")
    if not np.isfinite(s).all():
        raise ValueError(
            f"{what}: y_score holds {int((~np.isfinite(s)).sum())} NaN or infinite values; "
            "every score must be a finite number"
        )
    return y.astype(int), s


def _require_both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        only = "1 (TB)" if y[0] == 1 else "0 (normal)"
        raise ValueError(
            f"{what}: cannot choose a threshold, y_true holds only class {only}; sensitivity and "
            "specificity need both TB (1) and normal (0) cases"
        )


def _check_threshold(threshold: float) -> float:
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number (got {threshold})")
    return float(threshold)


def _ratio(num: int, den: int) -> float:
    # A ratio with an empty denominator (e.g. precision with no predicted positives) is undefined;
    # nan says so, where 0 or 1 would be a made-up number.
    return num / den if den else float("nan")


def choose_threshold(
    y_true: Any,
    y_score: Any,
    rule: str = "who",
    min_sensitivity: float = WHO_MIN_SENSITIVITY,
    *,
    weights: Any = None,
) -> float:
    """Choose an operating threshold on validation data; a score ``>= threshold`` is TB.

    Rules:
      - ``"who"``: the highest specificity among thresholds with sensitivity >= ``min_sensitivity``
        (WHO screening target: sensitivity >= 0.9); ties on specificity go to higher sensitivity.
        The lowest score always reaches sensitivity 1, so some threshold always qualifies.
      - ``"youden"``: the highest sensitivity + specificity - 1.
      - ``"max_f1"``: the highest F1.
    Candidates are the distinct values of ``y_score``, so the result is always one of the given
    scores (never infinite). Ties left after the rule go to the higher sensitivity (the lower
    threshold), because in screening a missed TB case costs more than a false alarm.

    ``weights``: per-image weights for the ROC (e.g. every source weighing the same within each
    class, :func:`pipeline.evaluation.by_source.balanced_weights`); sensitivity and specificity
    are then weighted shares.

    Raises ValueError on empty or mismatched input, labels other than 0/1, non-finite scores, an
    unknown rule, ``min_sensitivity`` outside [0, 1], or when ``y_true`` holds only one class.
    Use it on validation data only: a threshold chosen on the test set biases the test metrics.
    """
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(RULES)}")
    if not 0.0 <= min_sensitivity <= 1.0:
        raise ValueError(f"min_sensitivity must be in [0, 1] (got {min_sensitivity})")
    y, s = _check(y_true, y_score, "choose_threshold")
    _require_both_classes(y, "choose_threshold")
    w = np.ones(y.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != y.shape or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("choose_threshold: weights must be one finite value >= 0 per image")
    # Weighted counts on an integer scale (exact for unit weights), so that equal
    # sensitivities compare equal below.
    scale = 1.0 if weights is None else 1e9 / w.sum()
    n_pos = int(np.rint(w[y == 1].sum() * scale))
    n_neg = int(np.rint(w[y == 0].sum() * scale))

    # drop_intermediate=False keeps one point per distinct score; point 0 is sklearn's `inf`
    # threshold (nothing called positive), which is not a real score and is dropped.
    fpr, tpr, thresholds = roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    thresholds = thresholds[1:]
    tp = np.rint(tpr[1:] * n_pos).astype(np.int64)
    fp = np.rint(fpr[1:] * n_neg).astype(np.int64)
    sensitivity = tp / n_pos
    specificity = (n_neg - fp) / n_neg

    if rule == "who":
        candidates = np.flatnonzero(sensitivity >= min_sensitivity)
        score = specificity[candidates]
    elif rule == "youden":
        candidates = np.arange(thresholds.size)
        # Youden's J = sensitivity + specificity - 1, compared on a common integer scale so that
        # equal J values tie exactly instead of differing in the last bit.
        score = tp * n_neg - fp * n_pos
    else:
        candidates = np.arange(thresholds.size)
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + n_pos); never 0/0 since n_pos > 0.
        score = 2 * tp / (tp + fp + n_pos)
    # lexsort sorts by its last key first: best rule score, then highest sensitivity.
    best = candidates[np.lexsort((sensitivity[candidates], score))[-1]]
    return float(thresholds[best])


def metrics(y_true: Any, y_score: Any, threshold: float) -> dict[str, Any]:
    """Metrics of the classifier "TB if score >= threshold", plus threshold-free AUC, AP and curves.

    Returns a JSON-serialisable dict:
      ``n``, ``n_pos``, ``n_neg``, ``threshold``; ``confusion`` {``tn``, ``fp``, ``fn``, ``tp``};
      ``accuracy``, ``precision`` (PPV), ``npv``, ``sensitivity`` (= recall), ``specificity``,
      ``f1``; ``auc``, ``average_precision``; ``roc`` {``fpr``, ``tpr``, ``thresholds``};
      ``pr`` {``precision``, ``recall``, ``thresholds``}; ``who_met`` (sensitivity >= 0.9 and
      specificity >= 0.7).
    A ratio whose denominator is zero is ``nan``: precision with no predicted positives, npv with
    no predicted negatives, sensitivity without positives, specificity without negatives, F1
    (2TP / (2TP + FP + FN)) with neither positives nor predicted positives. With only one class
    present (allowed: an external folder may hold one class) ``auc`` and ``average_precision`` are
    nan and both curves are empty lists, while the confusion counts still hold.
    ``roc`` is sklearn's curve with its first threshold (``inf``, nothing called positive) replaced
    by the smallest float above the highest score, which means the same and is JSON-safe. ``pr``
    follows sklearn: ``precision`` and ``recall`` have one more entry than ``thresholds`` (the final
    point precision 1, recall 0 has no threshold).
    """
    threshold = _check_threshold(threshold)
    y, s = _check(y_true, y_score, "metrics")
    tn, fp, fn, tp = (int(c) for c in confusion_matrix(y, s >= threshold, labels=[0, 1]).ravel())
    n_pos, n_neg = tp + fn, tn + fp
    sensitivity = _ratio(tp, n_pos)
    specificity = _ratio(tn, n_neg)

    both_classes = n_pos > 0 and n_neg > 0
    if both_classes:
        fpr, tpr, roc_thr = roc_curve(y, s)
        roc_thr[0] = np.nextafter(s.max(), np.inf)
        precision_curve, recall_curve, pr_thr = precision_recall_curve(y, s)
        roc = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": roc_thr.tolist()}
        pr = {
            "precision": precision_curve.tolist(),
            "recall": recall_curve.tolist(),
            "thresholds": pr_thr.tolist(),
        }
        auc = float(roc_auc_score(y, s))
        average_precision = float(average_precision_score(y, s))
    else:
        roc = {"fpr": [], "tpr": [], "thresholds": []}
        pr = {"precision": [], "recall": [], "thresholds": []}
        auc = average_precision = float("nan")

    return {
        "n": int(y.size),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "threshold": threshold,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "accuracy": (tp + tn) / y.size,
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": auc,
        "average_precision": average_precision,
        "roc": roc,
        "pr": pr,
        # nan compares False, so a metric that cannot be measured never counts as met.
        "who_met": bool(sensitivity >= WHO_MIN_SENSITIVITY and specificity >= WHO_MIN_SPECIFICITY),
    }


def _resampled_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC of each row: ``pos`` (B, P) and ``neg`` (B, N) are the scores of B resamples.

    Mann-Whitney form: AUC = (sum of positive ranks - P(P+1)/2) / (P N), with tied scores given
    their average rank so that a tie counts one half, as in ``roc_auc_score``. Ranking all rows at
    once is what makes 1000 resamples take milliseconds instead of 1000 sklearn calls.
    """
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (ranks[:, :n_pos].sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    threshold: float,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for ``"auc"``, ``"sensitivity"`` and ``"specificity"``.

    Stratified: positives and negatives are resampled separately, each to its own count, so every
    resample keeps the original class balance and both classes. ``n`` resamples from
    ``np.random.default_rng(seed)``; the same inputs and seed give the same intervals. ``level`` is
    the two-sided coverage, e.g. 0.95 -> the 2.5th and 97.5th percentiles. ``n=0`` returns ``{}``.
    An interval that cannot be measured on this data is ``(nan, nan)``: sensitivity without
    positives, specificity without negatives, AUC unless both classes are present. It holds a few
    ``n x len(y_true)`` float arrays at once (8 MB each for n=1000 on 1000 images); n=1000 takes
    about 20 ms on 200 images and 0.2 s on 1000.
    """
    threshold = _check_threshold(threshold)
    if n < 0:
        raise ValueError(f"n (bootstrap resamples) must be >= 0 (got {n})")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1 (got {level})")
    y, s = _check(y_true, y_score, "bootstrap_ci")
    if n == 0:
        return {}

    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    pos_boot = pos[rng.integers(0, pos.size, size=(n, pos.size))] if pos.size else None
    neg_boot = neg[rng.integers(0, neg.size, size=(n, neg.size))] if neg.size else None

    tail = (1.0 - level) / 2

    def interval(values: np.ndarray | None) -> tuple[float, float]:
        if values is None:
            return (float("nan"), float("nan"))
        lo, hi = np.quantile(values, [tail, 1.0 - tail])
        return (float(lo), float(hi))

    return {
        "auc": interval(
            _resampled_auc(pos_boot, neg_boot)
            if pos_boot is not None and neg_boot is not None
            else None
        ),
        "sensitivity": interval(
            (pos_boot >= threshold).mean(axis=1) if pos_boot is not None else None
        ),
        "specificity": interval(
            (neg_boot < threshold).mean(axis=1) if neg_boot is not None else None
        ),
    }


def _with_cis(result: dict[str, Any], cis: dict[str, tuple[float, float]]) -> dict[str, Any]:
    # With no resamples requested the intervals are None (JSON null), not a made-up width.
    for name in ("auc", "sensitivity", "specificity"):
        result[f"{name}_ci"] = list(cis[name]) if cis else None
    return result


def evaluate(
    y_val: Any,
    s_val: Any,
    y_test: Any,
    s_test: Any,
    *,
    rule: str = "who",
    min_sensitivity: float = WHO_MIN_SENSITIVITY,
    n_boot: int = 1000,
    seed: int = 0,
    val_weights: Any = None,
) -> dict[str, Any]:
    """Choose the threshold on validation, apply it unchanged to test, and report test metrics.

    The threshold is fitted on ``(y_val, s_val)`` only and never looks at test: a threshold chosen
    on the test set would make the test metrics optimistically biased. Returns the test
    :func:`metrics` dict plus ``auc_ci``, ``sensitivity_ci``, ``specificity_ci`` (``[lo, hi]``
    bootstrap 95% intervals on test, or None when ``n_boot=0``), ``threshold_rule``,
    ``min_sensitivity`` (the target the "who" rule used) and ``val``: the validation ``n``, ``auc``
    (threshold-free) and the ``sensitivity`` / ``specificity`` the chosen threshold reached there.
    Raises ValueError as :func:`choose_threshold` does, naming the split at fault: validation must
    hold both classes; test may hold one (its AUC is then nan). ``val_weights`` weigh the
    validation images in the threshold's ROC (see :func:`choose_threshold`).
    """
    # Checked here first so that a refusal names the split at fault.
    y_checked, _ = _check(y_val, s_val, "validation split")
    _require_both_classes(y_checked, "validation split")
    _check(y_test, s_test, "test split")
    threshold = choose_threshold(
        y_val, s_val, rule=rule, min_sensitivity=min_sensitivity, weights=val_weights
    )
    result = metrics(y_test, s_test, threshold)
    _with_cis(result, bootstrap_ci(y_test, s_test, threshold, n=n_boot, seed=seed))
    result["calibration"] = calibration_report(y_test, s_test)
    val = metrics(y_val, s_val, threshold)
    result["threshold_rule"] = rule
    result["min_sensitivity"] = float(min_sensitivity)
    result["val"] = {
        "n": val["n"],
        "auc": val["auc"],
        "sensitivity": val["sensitivity"],
        "specificity": val["specificity"],
    }
    return result


def external(
    y: Any, s: Any, threshold: float, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics on an external dataset at the run's stored threshold, plus bootstrap intervals.

    ``threshold`` must be the one the run chose on its own validation split; it is never re-fitted
    here, because a threshold tuned on the external set would overstate how the model transfers.
    Returns the :func:`metrics` dict plus ``auc_ci``, ``sensitivity_ci``, ``specificity_ci`` as in
    :func:`evaluate`. A one-class folder is accepted: AUC and its interval are nan.
    """
    result = _with_cis(metrics(y, s, threshold), bootstrap_ci(y, s, threshold, n=n_boot, seed=seed))
    result["calibration"] = calibration_report(y, s)
    return result


def reliability(y: Any, p: Any, bins: int = 10) -> dict[str, list[float]]:
    """The reliability diagram: per equal-width bin of P(TB), its mean P(TB), its observed TB
    rate and its number of images (empty bins left out)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    out: dict[str, list[float]] = {"predicted": [], "observed": [], "count": []}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["predicted"].append(float(p[inside].mean()))
            out["observed"].append(float(y[inside].mean()))
            out["count"].append(int(inside.sum()))
    return out


def ece(y: Any, p: Any, bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean |observed − predicted| over bins."""
    r = reliability(y, p, bins)
    counts = np.asarray(r["count"], dtype=np.float64)
    gaps = np.abs(np.asarray(r["observed"]) - np.asarray(r["predicted"]))
    return float((counts * gaps).sum() / counts.sum())


def brier(y: Any, p: Any) -> float:
    """Mean squared difference between P(TB) and the label (0 is perfect)."""
    y = np.asarray(y, dtype=np.float64)
    return float(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2))


def calibration_report(y: Any, p: Any) -> dict[str, Any]:
    """ECE, Brier score and the reliability diagram of probabilities ``p`` for labels ``y``."""
    return {"ece": ece(y, p), "brier": brier(y, p), "reliability": reliability(y, p)}
