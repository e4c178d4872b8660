"""One image -> model input: artefacts, lung ROI, resize, intensity standardisation and
enhancement, exactly as a run was trained (the array cache and serving both call it)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.config import DataConfig
from pipeline.imaging import decode
from pipeline.lungs import roi, segmenter
from pipeline.lungs.masks import Plausibility, plausibility
from pipeline.preprocessing import artefacts, enhance, intensity


def preprocess_image(img: np.ndarray, data: DataConfig) -> np.ndarray:
    """Grayscale uint8 H×W of any size -> uint8 S×S: artefacts (``data.artefacts``), lung ROI
    (``data.roi``), resize (area), intensity standardisation, enhancement, per ``data``. With
    ``roi="full"`` the segmenter is not run."""
    if data.roi == "full":
        img = artefacts.remove(img, data.artefacts)
        small = intensity.standardise(decode.resize(img, data.image_size), data.intensity)
        return enhance.enhance(
            small, data.enhancement, clahe_clip=data.clahe_clip, clahe_tile=data.clahe_tile
        )
    return preprocess_with_lungs(img, data)[0]


class LungInput(NamedTuple):
    """A model input with its lungs: ``image`` uint8 S×S, ``lungs`` bool S×S in the same frame,
    ``plausibility`` judged on the whole radiograph's mask, its quality included."""

    image: np.ndarray
    lungs: np.ndarray
    plausibility: Plausibility


def preprocess_with_lungs(img: np.ndarray, data: DataConfig) -> LungInput:
    """:func:`preprocess_image` and the lungs the shipped segmenter finds, whatever the ROI.

    For drawing outlines, for measuring how much of a heatmap lies in the lungs, and for
    refusing images without two plausible lungs.
    """
    img = artefacts.remove(img, data.artefacts)
    lungs, quality = segmenter.shipped().find(img)
    small, mask = roi.apply_roi(img, lungs, data.roi, data.image_size, data.roi_margin)
    small = intensity.standardise(small, data.intensity)
    out = enhance.enhance(
        small, data.enhancement, clahe_clip=data.clahe_clip, clahe_tile=data.clahe_tile
    )
    if data.roi == "lung_mask":
        out[~mask] = roi.OUTSIDE
    return LungInput(out, mask, plausibility(lungs, quality))
