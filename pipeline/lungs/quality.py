"""How far a lung mask can be trusted, read from the segmenter's own probability map.

Where the segmenter is sure, P(lung) is near 0 or 1 and only a thin band along the outline lies
in between: about 2 pixels wide at its 256-px side on the films it learned from. Where it is not
— a heart shadow it cannot tell from lung, a film unlike any it learned from — wide regions sit
near 0.5, and the mask drawn at 0.5 there is a guess. The score compares the mean width of that
band with a sure outline's:

    band  = |{0.1 < P(lung) < 0.9}| / length of the mask's outline
            (pixels at the segmenter's side; the image's own pixels when it was enlarged)
    score = min(1, SURE_BAND_PX / band)

It needs no second pass of the network (segmentation stays one forward pass), and it is
measured, not assumed: ``bench/lungs_loso.py`` scores it against the true Dice of every mask the
segmenter drew on a hospital it never saw, and :data:`MIN_QUALITY` is set there (BENCHMARKS.md,
"Lung segmenter, leave-one-source-out"). A mask below it is shown as low confidence on the
Dataset page and makes the public app answer Cannot assess instead of a verdict on the wrong
pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

UNSURE_LOW, UNSURE_HIGH = 0.1, 0.9
SURE_BAND_PX = 2.0
MIN_QUALITY = 0.3


@dataclass(frozen=True)
class MaskQuality:
    """``score`` in [0, 1] (1: as sure as on the films it learned from), ``band_px`` the mean
    width of the unsure band along the outline, ``ok`` when the score is at least
    :data:`MIN_QUALITY`, and ``reason``: one phrase for a user when not ok, else empty."""

    score: float
    band_px: float
    ok: bool
    reason: str


def mask_quality(prob: np.ndarray, mask: np.ndarray, upscaled: float = 1.0) -> MaskQuality:
    """The quality of ``mask`` (bool H×W) drawn from ``prob`` (P(lung), float H×W, same shape).

    ``upscaled``: how many times the image was enlarged to the segmenter's side (1 when it was
    reduced): a small thumbnail enlarged 2× has a band twice as wide for the same certainty, so
    the band is measured in the image's own pixels.
    """
    p = np.asarray(prob, dtype=np.float32)
    contours, _ = cv2.findContours(
        np.asarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    outline = sum(cv2.arcLength(c, True) for c in contours)
    if not outline:
        return MaskQuality(1.0, 0.0, True, "")  # no lungs drawn: the shape checks say so
    unsure = int(np.count_nonzero((p > UNSURE_LOW) & (p < UNSURE_HIGH)))
    band = unsure / outline / max(upscaled, 1.0)
    score = float(min(1.0, SURE_BAND_PX / band)) if band > 0 else 1.0
    ok = score >= MIN_QUALITY
    reason = (
        ""
        if ok
        else "the lung outline is uncertain (the segmenter could not tell lung from its "
        f"surroundings over a wide band: quality {score:.2f}, under {MIN_QUALITY:.2f})"
    )
    return MaskQuality(score, band, ok, reason)
