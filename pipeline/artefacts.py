"""Non-anatomical marks a model can learn instead of the disease: anonymisation boxes.

In the TB Chest X-ray Database many TB radiographs carry solid white rectangles near the bottom
edge (burnt-in anonymisation), while almost no normal one does; on ``../shared/data/tb-cxr`` this
detector finds them on 142 of 407 TB images and 0 of 522 normal ones. A classifier can reach a high
AUC by spotting the box. :func:`bottom_boxes` finds such boxes, so that a dataset audit can count
them by class and an explanation audit can ask how much of a heatmap sits on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BAND = 0.2  # the bottom fifth of the image, where the boxes sit
WHITE = 240  # burnt-in boxes are (near) saturated
MIN_AREA = 0.0015  # of the image: ignores lead markers and text
MIN_FILL = 0.8  # of the bounding box: a solid rectangle, not a bright bone edge


@dataclass(frozen=True)
class Box:
    """A solid bright rectangle: top-left corner, width and height in pixels."""

    x: int
    y: int
    width: int
    height: int


def bottom_boxes(image: np.ndarray, band: float = BAND) -> list[Box]:
    """Solid near-white rectangles in the bottom ``band`` of a grayscale uint8 image."""
    if not 0 < band <= 1:
        raise ValueError(f"band must be a fraction in (0, 1], got {band}")
    image = np.asarray(image)
    h, w = image.shape
    top = int(h * (1 - band))
    bright = (image[top:] >= WHITE).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=8)
    found = []
    for x, y, bw, bh, area in stats[1:n]:
        solid = area / (bw * bh) >= MIN_FILL
        if area >= MIN_AREA * h * w and solid and bw >= 0.04 * w and bh >= 0.01 * h:
            found.append(Box(int(x), int(y) + top, int(bw), int(bh)))
    return found


def box_mask(shape: tuple[int, int], boxes: list[Box]) -> np.ndarray:
    """A boolean mask of ``shape`` that is True inside the boxes."""
    mask = np.zeros(shape, dtype=bool)
    for b in boxes:
        mask[b.y : b.y + b.height, b.x : b.x + b.width] = True
    return mask
