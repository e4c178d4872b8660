"""Validation scores in which every training source counts the same.

With several sources in one validation split, the pooled AUC mixes two questions: does the
model rank TB above normal *within* a collection, and does it rank one collection's films above
another's? A model that has learned which scanner a film came from scores on the second
whenever the collections' TB shares differ, and the largest collection (tb-cxr is 63 % of
tb-cxr + nlm-224 + Montgomery) decides the rest. Choosing the checkpoint or the threshold on that
number picks the model that knows the home collection best, not the one that carries to a new
hospital.

Here the checkpoint is chosen on :func:`balanced_auc`, the mean of the per-source AUCs (within-
source ranking only), and the threshold on a ROC in which each source weighs the same within each
class (:func:`balanced_weights`): its sensitivity is the mean of the sources' sensitivities, so a
threshold that misses half of one source's TB cannot hide behind another source's easy cases.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


def balanced_weights(labels: Any, sources: Any) -> np.ndarray:
    """Per-image weights: within each class, every source present in it weighs the same.

    ``n_c / (k_c n_sc)`` for an image of class ``c`` from source ``s`` (``k_c`` sources hold class
    ``c``), so each class keeps its total weight ``n_c`` and a weighted sensitivity or
    specificity is the mean over sources of theirs.
    """
    labels, sources = np.asarray(labels), np.asarray(sources)
    weights = np.zeros(labels.size, dtype=np.float64)
    for c in (0, 1):
        in_class = labels == c
        present = np.unique(sources[in_class])
        for s in present:
            cell = in_class & (sources == s)
            weights[cell] = in_class.sum() / (present.size * cell.sum())
    return weights


def per_source_auc(labels: Any, scores: Any, sources: Any) -> dict[int, float]:
    """AUC within each source that holds both classes (source id -> AUC)."""
    labels, scores, sources = np.asarray(labels), np.asarray(scores), np.asarray(sources)
    out = {}
    for s in np.unique(sources):
        here = sources == s
        if len(np.unique(labels[here])) == 2:
            out[int(s)] = float(roc_auc_score(labels[here], scores[here]))
    return out


def balanced_auc(labels: Any, scores: Any, sources: Any) -> float:
    """The mean of :func:`per_source_auc`; nan when no source holds both classes."""
    aucs = per_source_auc(labels, scores, sources)
    return float(np.mean(list(aucs.values()))) if aucs else float("nan")
