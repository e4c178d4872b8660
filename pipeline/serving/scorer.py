"""A trained model and everything between the run's cached inputs and its P(TB): PCA and
calibration, in one place, for single images and for whole dataset folders.

Training (its external sets, scored with the model still in memory), external evaluation, site
calibration and the :class:`~pipeline.serving.predictor.Predictor` all score through a
:class:`Scorer`, so an image is never scored one way at the end of training and another way later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import DataConfig
from pipeline.data.scan import DatasetIndex
from pipeline.evaluation.calibration import Calibrator
from pipeline.preprocessing import cache
from pipeline.preprocessing.enhance import PCADenoiser
from pipeline.progress import bar as progress_bar

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Scorer:
    """``model`` (a Keras model taking uint8 values as float32 (N, S, S, 1)), with the run's
    preprocessing ``data``, its fitted ``pca`` (None without PCA) and ``calibrator`` (None for
    an uncalibrated run)."""

    model: Any
    data: DataConfig
    pca: PCADenoiser | None = None
    calibrator: Calibrator | None = None

    def denoise(self, arrays: np.ndarray) -> np.ndarray:
        """Preprocessed uint8 (N, S, S) images as the model takes them (PCA-denoised if the run
        was trained so)."""
        return arrays if self.pca is None else self.pca.transform(np.asarray(arrays))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The network's raw outputs as the run's P(TB) (unchanged for an uncalibrated run)."""
        raw = np.asarray(raw, dtype=np.float64)
        return raw if self.calibrator is None else self.calibrator(raw)

    def predict_prepared(self, batch: np.ndarray) -> np.ndarray:
        """P(TB) for uint8 (N, S, S) model inputs (already denoised), as float64 (N,)."""
        x = np.asarray(batch, dtype=np.float32)[..., np.newaxis]
        return self.calibrate(self.model.predict_on_batch(x).reshape(-1).astype(np.float64))

    def score_index(
        self,
        index: DatasetIndex,
        *,
        batch_size: int = 64,
        progress: bool = False,
        on_progress: Progress | None = None,
    ) -> np.ndarray:
        """P(TB) of every image of ``index``, preprocessed as the run was (through the array
        cache), in the index's order.

        ``on_progress(scored, total)`` is called before the first batch and after each one.
        """
        report = on_progress or (lambda scored, total: None)
        report(0, len(index.labels))
        arrays = self.denoise(cache.cached_arrays(index, self.data, progress=progress))
        scores = []
        for i in progress_bar(
            range(0, len(arrays), batch_size), desc="score", unit="batch", disable=not progress
        ):
            scores.append(self.predict_prepared(arrays[i : i + batch_size]))
            report(min(i + batch_size, len(arrays)), len(arrays))
        return np.concatenate(scores) if scores else np.zeros(0)
