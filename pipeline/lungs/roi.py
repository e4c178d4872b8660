"""The classifier's region of interest (``data.roi``): the whole film, the lungs' box, or the lungs.

Shortcuts a classifier can learn (anonymisation boxes, markers, text, borders) mostly sit outside
the lungs (REFERENCES.md §1.2). :func:`apply_roi` turns a gray radiograph of any size and its lung
mask into the S×S model input:

- ``full``: the whole image, resized (the default; the mask only follows along, for display).
- ``lung_crop``: the bounding box of both lungs, grown by ``margin`` of the box's height and
  width on every side, cut from the full-resolution image and resized to S×S.
- ``lung_mask``: the whole image resized; pixels outside the lungs are set later, after
  enhancement, to :data:`OUTSIDE` (so that no enhancement can bring texture back).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.imaging import decode
from pipeline.lungs.masks import bounding_box

ROIS: tuple[str, ...] = ("full", "lung_crop", "lung_mask")
OUTSIDE = 0  # the constant outside the lungs with roi=lung_mask (black: air, no information)


def apply_roi(
    image: np.ndarray, lungs: np.ndarray, roi: str, size: int, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(input uint8 S×S, lung mask bool S×S)`` of a gray image and its same-sized lung mask."""
    if roi not in ROIS:
        raise ValueError(f"data.roi must be one of {ROIS}, got {roi!r}")
    if roi == "lung_crop":
        top, bottom, left, right = bounding_box(lungs, margin)
        image, lungs = image[top:bottom, left:right], lungs[top:bottom, left:right]
    small = decode.resize(image, size)
    mask = cv2.resize(lungs.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return small, mask.astype(bool)
