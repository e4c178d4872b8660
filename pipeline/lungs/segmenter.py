"""The shipped lung segmenter: load it (no download, Keras safe mode) and segment any X-ray.

The weights live in the repository, ``pipeline/lungs/weights/lungs.keras``, with a card beside
it (``lungs.json``: training manifest hash, command, seed, date, Dice per held-out source, input
size). ``python -m pipeline lungs train --install`` replaces both. A missing or corrupt file
raises :class:`SegmenterError`, whose one-line message says how to retrain it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.imaging import decode
from pipeline.lungs.masks import Plausibility, plausibility, postprocess
from pipeline.lungs.quality import MaskQuality, mask_quality

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHTS = WEIGHTS_DIR / "lungs.keras"
CARD = WEIGHTS_DIR / "lungs.json"
RETRAIN = "python -m pipeline lungs train --data ../shared/data/lung-masks --install"


class SegmenterError(ValueError):
    """The segmenter's weights cannot be used; the message is one line with the fix."""


STANDARDISATIONS = ("zscore", "equalise")


def normalise(batch: np.ndarray, standardisation: str = "zscore") -> np.ndarray:
    """uint8 or [0, 1] float (N, S, S) -> float32 (N, S, S, 1), each image mean 0 and std 1.

    Per-image standardisation makes the segmenter indifferent to exposure and window, which
    differ most between sources. ``"equalise"`` first equalises each image's histogram, which
    undoes any monotone change of grey levels (gamma, contrast, a detector's response curve).
    """
    x = np.asarray(batch)
    if standardisation == "equalise":
        if x.dtype != np.uint8:
            x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        x = np.stack([cv2.equalizeHist(img) for img in x])
    elif standardisation != "zscore":
        raise ValueError(f"unknown input standardisation {standardisation!r}")
    x = x.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True)
    return ((x - mean) / np.maximum(std, 1e-6))[..., np.newaxis]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_shipped(weights: Path, what: str, retrain: str) -> tuple[Any, dict[str, Any]]:
    """A shipped model (Keras safe mode, no optimizer) and its card (``.json`` beside it, or
    empty); a missing or broken file raises :class:`SegmenterError` saying how to retrain it."""
    import keras

    if not weights.is_file():
        raise SegmenterError(f"{what}'s weights {weights} are missing; retrain them: {retrain}")
    try:
        model = keras.saving.load_model(weights, compile=False, safe_mode=True)
    except Exception as err:  # a truncated zip, bad JSON, wrong shapes: all one problem
        raise SegmenterError(
            f"{what}'s weights {weights} cannot be loaded ({type(err).__name__}); "
            f"retrain them: {retrain}"
        ) from None
    card = weights.with_suffix(".json")
    return model, json.loads(card.read_text()) if card.is_file() else {}


class Segmenter:
    """A trained lung U-Net and its card; :meth:`segment` gives a lung mask for any image."""

    def __init__(self, weights: str | Path = WEIGHTS) -> None:
        self.weights = Path(weights)
        self.model, self.card = load_shipped(self.weights, "the lung segmenter", RETRAIN)
        self.size = int(self.model.input_shape[1])
        self.standardisation = str(self.card.get("input_standardisation", "zscore"))
        self.sha256 = file_sha256(self.weights)
        # Keras models are not documented as safe to call from several threads at once, and
        # preprocessing runs one thread per core.
        self._lock = threading.Lock()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(lung) float32 (N, S, S) for gray images already at the model's side S."""
        x = normalise(batch, self.standardisation)
        with self._lock:
            return np.asarray(self.model.predict_on_batch(x))[..., 0]

    def find(self, image: np.ndarray) -> tuple[np.ndarray, MaskQuality]:
        """Lung mask (bool, same H×W as ``image``) of a gray uint8 image of any size, and how
        far it can be trusted (:func:`pipeline.lungs.quality.mask_quality`, read from the
        probability map at the model's side).

        The probability map is resized back to the image (linear) before the 0.5 threshold, so
        the outline is smooth at any resolution; then the two largest parts are kept and filled.
        """
        image = np.asarray(image)
        h, w = image.shape
        prob = self.probabilities(decode.resize(image, self.size)[np.newaxis])[0]
        quality = mask_quality(prob, prob >= 0.5, self.size / max(h, w))
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return postprocess(prob >= 0.5), quality

    def segment(self, image: np.ndarray) -> np.ndarray:
        """The lung mask of :meth:`find`."""
        return self.find(image)[0]

    def find_small(
        self, batch: np.ndarray, batch_size: int = 32
    ) -> tuple[np.ndarray, list[MaskQuality]]:
        """Post-processed lung masks (N, s, s) bool of same-sized gray images (N, s, s), e.g.
        thumbnails, and their quality; each is resized to the model's side and its
        probability map back."""
        batch = np.asarray(batch)
        out = np.empty(batch.shape, bool)
        qualities = []
        side = batch.shape[1]
        for start in range(0, len(batch), batch_size):
            chunk = np.stack(
                [decode.resize(b, self.size) for b in batch[start : start + batch_size]]
            )
            for k, prob in enumerate(self.probabilities(chunk)):
                qualities.append(mask_quality(prob, prob >= 0.5, self.size / side))
                small = cv2.resize(prob, (side, side), interpolation=cv2.INTER_LINEAR)
                out[start + k] = postprocess(small >= 0.5)
        return out, qualities


def shipped_sha256() -> str:
    """SHA-256 of the shipped weights file (without loading it); part of preprocessing keys."""
    if not WEIGHTS.is_file():
        raise SegmenterError(
            f"the lung segmenter's weights {WEIGHTS} are missing; retrain them: {RETRAIN}"
        )
    return file_sha256(WEIGHTS)


def audit(seg: Segmenter, paths: list[str], progress: bool = False) -> list[Plausibility]:
    """The plausibility of the lungs found in each image file, their quality included, in
    order (for ``inspect``)."""
    from pipeline.progress import bar as progress_bar

    return [
        plausibility(*seg.find(decode.read_image(p)))
        for p in progress_bar(paths, desc="lungs", unit="img", disable=not progress)
    ]


@functools.cache
def shipped() -> Segmenter:
    """The segmenter shipped in the repository, loaded once per process."""
    return Segmenter(WEIGHTS)
