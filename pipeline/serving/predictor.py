"""Serving a trained run: load its model and preprocessing, score images, give a verdict.

A predictor is built from a run's artifacts folder alone. The preprocessing (size, lung ROI,
enhancement, PCA) and the operating threshold come from the run, never from the caller, so the
dashboard, the CLI and the public app all score an image exactly as the run was evaluated. The
model is loaded with Keras safe mode (no arbitrary code from the file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from db import RunStore
from pipeline.config import RunConfig, load_config_file
from pipeline.evaluation.calibration import Calibrator
from pipeline.imaging import decode
from pipeline.lungs.masks import Plausibility
from pipeline.preprocessing.enhance import PCADenoiser
from pipeline.preprocessing.transform import LungInput, preprocess_image, preprocess_with_lungs
from pipeline.serving.scorer import Scorer

POSITIVE = "Possible TB — refer for testing"
NEGATIVE = "No signs of TB"


@dataclass(frozen=True)
class Prediction:
    """One scored image: P(TB) in [0, 1], the verdict at the run's threshold, the model input
    and, when asked for, the lung mask (bool S×S) in the model input's frame and whether the
    lungs found look plausible."""

    probability: float
    verdict: str
    threshold: float
    image: np.ndarray
    lungs: np.ndarray | None = None
    plausibility: Plausibility | None = None


class Predictor:
    """Scores images with a trained run (see module docstring)."""

    def __init__(self, run_dir: str | Path, threshold: float | None = None) -> None:
        """Load the run in ``run_dir``; ``threshold`` replaces its validated one (a site's)."""
        import keras

        import pipeline.model  # noqa: F401 - registers the custom layers for safe-mode loading

        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(
                f"the run's artifacts folder {self.run_dir} is not on this machine: the worker "
                "that trained it wrote to another runs folder. Workers and apps sharing a store "
                "must share one runs folder (TBXRAY_RUNS_DIR; README, 'Scaling out')"
            )
        if (self.run_dir / "encoder.keras").is_file():
            raise ValueError(
                f"{self.run_dir} is a pretraining run: an encoder, not a classifier; train a "
                f"classifier from it with --set model.init={self.run_dir / 'encoder.keras'}"
            )
        missing = [
            f
            for f in ("model.keras", "config.json", "metrics.json")
            if not (self.run_dir / f).exists()
        ]
        if missing:
            raise FileNotFoundError(
                f"{self.run_dir} is not a finished run folder (missing {', '.join(missing)}); "
                "pick a run whose status is 'succeeded'"
            )
        self.config: RunConfig = load_config_file(self.run_dir / "config.json")
        self.metrics: dict = json.loads((self.run_dir / "metrics.json").read_text())
        self.validated_threshold = float(self.metrics["threshold"])
        self.threshold = self.validated_threshold if threshold is None else float(threshold)
        # P(TB) as the run reports it: calibrated when the run was trained with eval.calibration.
        self.calibrator = Calibrator.load(self.run_dir)
        self.model = keras.saving.load_model(self.run_dir / "model.keras", safe_mode=True)
        pca_file = self.run_dir / "pca.npz"
        self.pca = PCADenoiser.load(pca_file) if pca_file.exists() else None
        self.scorer = Scorer(self.model, self.config.data, self.pca, self.calibrator)

    @classmethod
    def from_store(cls, store: RunStore, run_id: str) -> Predictor:
        """The predictor of a succeeded run of ``store`` (id or unique prefix)."""
        run = store.get_run(run_id)
        if run.status != "succeeded" or not run.artifacts_dir:
            raise ValueError(f"run {run.id} is {run.status}; only a succeeded run can predict")
        return cls(run.artifacts_dir)

    def prepare(self, img: np.ndarray) -> np.ndarray:
        """Grayscale uint8 H×W (any size) -> the uint8 S×S the model was trained on."""
        return self._denoise(preprocess_image(img, self.config.data))

    def prepare_with_lungs(self, img: np.ndarray) -> LungInput:
        """:meth:`prepare`, the lung mask (bool S×S) in the model input's frame, plausibility."""
        out = preprocess_with_lungs(img, self.config.data)
        return out._replace(image=self._denoise(out.image))

    def _denoise(self, out: np.ndarray) -> np.ndarray:
        return self.scorer.denoise(out[np.newaxis])[0]

    def predict_prepared(self, batch: np.ndarray) -> np.ndarray:
        """P(TB) for uint8 (N, S, S) model inputs, as float64 (N,), calibrated if the run is."""
        return self.scorer.predict_prepared(batch)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The network's raw outputs as the run's P(TB) (unchanged for an uncalibrated run)."""
        return self.scorer.calibrate(raw)

    def verdict(self, probability: float) -> str:
        return POSITIVE if probability >= self.threshold else NEGATIVE

    def predict(
        self, src: str | Path | bytes | np.ndarray, *, with_lungs: bool = False
    ) -> Prediction:
        """Score one image given as a path, encoded bytes, or a grayscale uint8 array;
        ``with_lungs`` also segments the lungs (for outlines and in-lung heatmap energy)."""
        img = src if isinstance(src, np.ndarray) else decode.read_image(src)
        found = self.prepare_with_lungs(img) if with_lungs else None
        prepared = self.prepare(img) if found is None else found.image
        p = float(self.predict_prepared(prepared[np.newaxis])[0])
        return Prediction(
            probability=p,
            verdict=self.verdict(p),
            threshold=self.threshold,
            image=prepared,
            lungs=None if found is None else found.lungs,
            plausibility=None if found is None else found.plausibility,
        )
