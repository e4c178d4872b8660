"""Linear probe: how much TB an encoder's frozen features tell on a labelled set, untuned.

Features of every image (global-pooled, as the classifier's head sees them) feed a logistic
regression scored out of fold (5 folds, near-duplicates kept in one fold), so the AUC measures
the features, not a fitted network. The same probe on the same architecture with random weights
is the reference: pretraining is worth its cost where it beats that.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import RunConfig
from pipeline.data.index_cache import load_index
from pipeline.model import build_encoder
from pipeline.preprocessing.cache import cached_arrays

FOLDS = 5


def features(encoder: keras.Model, arrays: np.ndarray, batch: int = 128) -> np.ndarray:
    """Pooled features (N, D) of uint8 images (N, S, S)."""
    x = np.asarray(arrays, dtype=np.float32)[..., np.newaxis]
    return np.asarray(encoder.predict(x, batch_size=batch, verbose=0), dtype=np.float64)


def probe_auc(feats: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """Out-of-fold AUC of a logistic regression on ``feats``."""
    scores = np.zeros(len(labels))
    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(feats, labels, groups):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000))
        clf.fit(feats[train], labels[train])
        scores[test] = clf.predict_proba(feats[test])[:, 1]
    return float(roc_auc_score(labels, scores))


def linear_probe(
    encoder: keras.Model, cfg: RunConfig, folders: list[Path], *, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{folder name: {"auc", "auc_scratch", "n"}}`` for each labelled folder."""
    scratch = build_encoder(cfg)
    out = {}
    for folder in folders:
        index = load_index(folder)
        arrays = cached_arrays(index, cfg.data)
        groups = np.array([r.group for r in index.records])
        labels = index.labels
        out[Path(folder).name] = {
            "auc": probe_auc(features(encoder, arrays), labels, groups, seed),
            "auc_scratch": probe_auc(features(scratch, arrays), labels, groups, seed),
            "n": len(labels),
        }
    return out
