"""Lung masks as numpy arrays: overlap scores, clean-up, plausibility, outline and the ROI box.

Everything here is numpy / OpenCV in, numpy out, and needs no model: the segmenter
(:mod:`pipeline.lungs.segmenter`) produces a probability map, :func:`postprocess` turns it into a
mask of at most two lungs, and the rest measures or uses that mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.lungs.quality import MaskQuality

# Plausibility limits, as shares of the image and of its height. Measured on the 482 hand-drawn
# masks of ../shared/data/lung-masks (bench/lungs.py prints them): the lungs cover 10-59 % of the
# image (1st-99th percentile 15-55 %), the smaller lung is at least 0.54 of the larger one, lung
# centroids sit 0.20-0.62 of the height down. Each limit leaves a margin around that range.
MIN_AREA, MAX_AREA = 0.07, 0.7
MIN_BALANCE = 0.3
MIN_CENTRE_Y, MAX_CENTRE_Y = 0.12, 0.75
MIN_UPRIGHT = 1.0  # height / width of the taller lung field's box


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks of one shape; 1.0 when both empty."""
    a, b = _pair(pred, truth)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B| of two boolean masks; 1.0 when both empty."""
    a, b = _pair(pred, truth)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return a, b


def postprocess(mask: np.ndarray, keep: int = 2) -> np.ndarray:
    """Keep the ``keep`` largest connected components of a boolean mask and fill their holes.

    A segmenter's stray blobs (a bright shoulder, the stomach bubble) are smaller than a lung, and
    a lesion can punch a hole in a lung field; neither belongs in the mask. Returns bool H×W.
    """
    m = np.asarray(mask, dtype=np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros(m.shape, dtype=bool)
    largest = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:keep]
    kept = np.isin(labels, largest).astype(np.uint8)
    # Holes are the background regions that do not touch the border: flood the border, invert.
    padded = np.pad(kept, 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return kept.astype(bool) | holes


@dataclass(frozen=True)
class Plausibility:
    """Whether a lung mask looks like two lungs, and the numbers behind the judgement.

    ``area``: lungs' share of the image; ``balance``: smaller lung area / larger (0 with fewer
    than two); ``reasons``: one phrase per failed check, empty when ``ok``; ``quality``: the
    mask's quality score (:mod:`pipeline.lungs.quality`) when it was judged, and ``confident``
    whether it passed (a mask of the right shape can still be a guess).
    """

    ok: bool
    n_lungs: int
    area: float
    balance: float
    reasons: tuple[str, ...]
    quality: float | None = None
    confident: bool = True

    @property
    def shape_ok(self) -> bool:
        """Whether the mask looks like two lungs, its quality aside."""
        return self.ok or (not self.confident and len(self.reasons) == 1)


def plausibility(mask: np.ndarray, quality: MaskQuality | None = None) -> Plausibility:
    """Judge a post-processed mask: two lungs, one each side of the mid-line, of sensible size
    (share of the image), at a sensible height and of comparable area — and, given its
    ``quality``, drawn with confidence."""
    m = np.asarray(mask, dtype=np.uint8)
    h, w = m.shape
    _, _, stats, centroids = cv2.connectedComponentsWithStats(m, connectivity=8)
    order = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    # Specks (under 1 % of the image) are not lungs.
    lungs = [i for i in order if stats[i, cv2.CC_STAT_AREA] >= 0.01 * h * w]
    area = float(m.astype(bool).mean())
    reasons = []
    balance = 0.0
    if len(lungs) != 2:
        reasons.append(f"{len(lungs)} lung fields found instead of 2")
    else:
        a, b = (float(stats[i, cv2.CC_STAT_AREA]) for i in lungs)
        balance = min(a, b) / max(a, b)
        xs = sorted(centroids[i][0] / w for i in lungs)
        if not (xs[0] < 0.5 < xs[1]):
            reasons.append("both lung fields lie on the same side")
        if balance < MIN_BALANCE:
            reasons.append(f"one lung field is {balance:.0%} the size of the other")
        ys = [centroids[i][1] / h for i in lungs]
        if not all(MIN_CENTRE_Y <= y <= MAX_CENTRE_Y for y in ys):
            reasons.append("the lung fields are too high or too low in the image")
        # Upright lungs are taller than wide; an X-ray turned by 90° shows them lying down.
        tall = [stats[i, cv2.CC_STAT_HEIGHT] / stats[i, cv2.CC_STAT_WIDTH] for i in lungs]
        if max(tall) < MIN_UPRIGHT:
            reasons.append("the lung fields lie sideways: the X-ray seems turned on its side")
    if not MIN_AREA <= area <= MAX_AREA:
        reasons.append(
            f"the lungs cover {area:.0%} of the image (expected {MIN_AREA:.0%}-{MAX_AREA:.0%})"
        )
    confident = quality is None or quality.ok
    if not confident:
        reasons.append(quality.reason)
    return Plausibility(
        not reasons,
        len(lungs),
        area,
        balance,
        tuple(reasons),
        None if quality is None else quality.score,
        confident,
    )


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The boundary pixels of a boolean mask (bool H×W), ``thickness`` pixels wide, inside it."""
    m = np.asarray(mask, dtype=np.uint8)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    return (m - cv2.erode(m, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)).astype(bool)


def draw_outline(
    rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (255, 0, 255)
) -> np.ndarray:
    """A copy of an RGB uint8 image with the mask's outline drawn in ``colour``.

    The mask is resized (nearest) to the image first; the line is about 1/128 of the side thick.
    """
    out = np.array(rgb, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    m = cv2.resize(np.asarray(mask, dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out[outline(m, max(1, round(max(h, w) / 256)))] = colour
    return out


def bounding_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (end-exclusive) of the mask's pixels, grown on every side by
    ``margin`` × the box's own height / width and clipped to the image. An empty mask gives the
    whole image."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return 0, h, 0, w
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = round(margin * (bottom - top)), round(margin * (right - left))
    return max(0, top - dy), min(h, bottom + dy), max(0, left - dx), min(w, right + dx)
