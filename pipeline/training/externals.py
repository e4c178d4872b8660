"""A finished run read on its external sets: every image scored as serving would score it, and
the run's validated threshold applied unchanged."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from pipeline.config import RunConfig
from pipeline.data.scan import DatasetIndex
from pipeline.evaluation import calibration, metrics
from pipeline.preprocessing.enhance import PCADenoiser
from pipeline.serving.scorer import Scorer


@dataclass(frozen=True)
class Evaluation:
    """One external set: its index, every image's P(TB), and the metrics at the threshold."""

    index: DatasetIndex
    scores: np.ndarray
    metrics: dict


def evaluate(
    cfg: RunConfig,
    pca: PCADenoiser | None,
    model: keras.Model,
    calibrator: calibration.Calibrator | None,
    threshold: float,
    externals: list[DatasetIndex],
) -> list[Evaluation]:
    """Each external set scored with the run's preprocessing, PCA and calibration, and evaluated
    at the threshold chosen on validation (never re-fitted on the external set)."""
    scorer = Scorer(model, cfg.data, pca, calibrator)
    out = []
    for index in externals:
        scores = scorer.score_index(index, batch_size=cfg.train.batch_size)
        scored = metrics.external(
            index.labels, scores, threshold, n_boot=cfg.eval.bootstrap, seed=cfg.seed
        )
        out.append(Evaluation(index, scores, scored))
    return out


def write_predictions(folder: Path, evaluations: list[Evaluation]) -> None:
    """``external_predictions.csv``: every external image's P(TB), for paired tests between runs."""
    if not evaluations:
        return
    with (folder / "external_predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "path", "label", "score"])
        for e in evaluations:
            for record, score in zip(e.index.records, e.scores, strict=True):
                rel = os.path.relpath(record.path, e.index.root)
                writer.writerow([e.index.root, rel, record.label, repr(float(score))])
