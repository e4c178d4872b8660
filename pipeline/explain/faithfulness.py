"""Is a heatmap faithful? Measures that compare explanations with ground truth and the model.

- :func:`pointing_hit` and :func:`energy_inside` score a heatmap against a lesion mask (the
  phantoms have one per TB image): does its maximum fall inside the lesion, and how much of its
  mass does. :func:`chance_pointing` is what a random point would score, the floor to beat.
- :func:`deletion_curve` asks the model itself (Petsiuk et al., 2018): hide the most important
  image squares first and watch P(TB) fall; a faithful map makes it fall faster than a random order.
- :func:`band_energy` is the artefact check: the share of heatmap mass in the bottom band of the
  image, where the anonymisation boxes of some collections sit.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipeline.explain.heatmaps import batch_scores


def _dilate(mask: np.ndarray, tolerance_px: int) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if tolerance_px <= 0:
        return mask
    kernel = cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * tolerance_px + 1, 2 * tolerance_px + 1)
    )
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def pointing_hit(heat: np.ndarray, mask: np.ndarray, tolerance_px: int = 0) -> bool:
    """Whether the heatmap's maximum lies in the lesion (grown by ``tolerance_px``).

    Region methods (LIME) are flat over a superpixel, so every pixel at the maximum counts: the
    hit is scored when any of them is in the lesion. An all-zero map never hits.
    """
    heat = np.asarray(heat, dtype=np.float64)
    peak = heat.max()
    if peak <= 0:
        return False
    return bool(np.any(_dilate(mask, tolerance_px)[heat >= peak - 1e-9 * abs(peak)]))


def chance_pointing(mask: np.ndarray, tolerance_px: int = 0) -> float:
    """The hit rate of a uniformly random point: the grown lesion's share of the image."""
    return float(_dilate(mask, tolerance_px).mean())


def energy_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's positive mass inside the lesion (0 for an all-zero map)."""
    positive = np.maximum(np.asarray(heat, dtype=np.float64), 0)
    total = positive.sum()
    return float(positive[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else 0.0


def band_energy(heat: np.ndarray, band: float = 0.15) -> float:
    """Share of the heatmap's positive mass in the bottom ``band`` of the image's rows."""
    if not 0 < band < 1:
        raise ValueError(f"band must be a fraction between 0 and 1, got {band}")
    positive = np.maximum(np.asarray(heat, dtype=np.float64), 0)
    total = positive.sum()
    rows = max(1, round(band * positive.shape[0]))
    return float(positive[-rows:].sum() / total) if total > 0 else 0.0


def deletion_curve(
    model: Any,
    image: np.ndarray,
    heat: np.ndarray,
    steps: int = 20,
    patch: int = 8,
    blur: int = 31,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """P(TB) as the most important ``patch``-pixel squares are replaced by a blurred copy.

    Returns (fractions deleted, scores), ``steps + 1`` points from 0 to 1. Squares are ranked by
    their mean heat; with ``seed`` the order is random instead (the reference curve). Deleting
    squares rather than single pixels matters: scattered single blurred pixels are a texture the
    model never saw, and a random pixel order would lower P(TB) by that alone.
    """
    image = np.asarray(image)
    side = image.shape[0]
    cells = max(1, side // patch)
    cell_heat = cv2.resize(np.asarray(heat, np.float32), (cells, cells), cv2.INTER_AREA).ravel()
    rng = np.random.default_rng(0 if seed is None else seed)
    jitter = rng.random(cell_heat.size)
    # Ties (a flat map) are broken at random, never row by row.
    order = np.argsort(jitter) if seed is not None else np.lexsort((jitter, -cell_heat))
    filler = cv2.blur(image, (blur, blur)).astype(np.float32)
    original = image.astype(np.float32)
    fractions = np.linspace(0, 1, steps + 1)
    variants = np.empty((len(fractions), *image.shape), dtype=np.float32)
    for i, fraction in enumerate(fractions):
        hidden = np.zeros(cell_heat.size, dtype=np.uint8)
        hidden[order[: round(fraction * cell_heat.size)]] = 1
        mask = cv2.resize(hidden.reshape(cells, cells), image.shape[::-1], cv2.INTER_NEAREST)
        variants[i] = np.where(mask.astype(bool), filler, original)
    return fractions, batch_scores(model, variants, batch_size=len(variants))


def curve_area(fractions: np.ndarray, scores: np.ndarray) -> float:
    """Area under a deletion curve (trapezoids); lower means the map found what mattered."""
    return float(np.trapezoid(scores, fractions))
