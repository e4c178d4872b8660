"""Non-anatomical marks a model can learn instead of the disease, found and removed.

In the TB Chest X-ray Database many TB radiographs carry solid white rectangles near the bottom
edge (burnt-in anonymisation), while almost no normal one does; on ``../shared/data/tb-cxr`` this
detector finds them on 142 of 407 TB images and 0 of 522 normal ones. A classifier can reach a high
AUC by spotting the box. :func:`bottom_boxes` finds such boxes, so that a dataset audit can count
them by class and an explanation audit can ask how much of a heatmap sits on them.

Other collections carry other marks: Montgomery has burned-in "PA / ERECT" markers and wide black
bands. :func:`find_artefacts` marks bright, flat, sharp-edged regions anywhere on the film (solid
boxes) and small bright strokes near its edges (text, lead markers); :func:`remove` is the
``data.artefacts`` step of preprocessing:

- ``keep``: the image as it is (the default);
- ``inpaint``: the marked pixels filled from their surroundings (OpenCV's Telea inpainting);
- ``crop_border``: uniform dark or bright bands trimmed, then a fixed band cut from every side
  (:data:`CROP`), the bottom one as deep as :data:`BAND`, where the boxes sit.
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


ARTEFACT_MODES: tuple[str, ...] = ("keep", "inpaint", "crop_border")
# crop_border: the share of the (trimmed) image cut from each side.
CROP = {"top": 0.05, "bottom": BAND, "left": 0.06, "right": 0.06}
EDGE_BAND = 0.15  # text and markers are looked for this close to an edge (lungs lie inside)
STROKE_MIN = 200  # text and markers are bright ...
STROKE_CONTRAST = 60  # ... and stand out this much from their surroundings (white top-hat)
MAX_STROKE_AREA = 0.01  # of the image, per connected stroke: larger bright areas are anatomy
FLAT_BAND = 3.0  # a border row or column with a std below this (of 255) is a uniform band


def find_artefacts(image: np.ndarray) -> np.ndarray:
    """Boolean mask (same shape as the gray uint8 ``image``) of burned-in marks: the union of
    :func:`artefact_kinds`."""
    kinds = artefact_kinds(image)
    return kinds["boxes"] | kinds["marks"]


def artefact_kinds(image: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the two kinds of burned-in marks in a gray uint8 ``image``.

    ``boxes``: solid near-white rectangles anywhere (``WHITE``, at least ``MIN_FILL`` of their
    bounding box, the size of an anonymisation box or a label). ``marks``: small bright strokes
    that stand out from their surroundings within ``EDGE_BAND`` of an edge (text, "PA"/"L"
    markers). The lungs lie inside the edge band, so the lung fields are never marked as text.
    """
    image = np.asarray(image)
    h, w = image.shape
    mask = np.zeros((h, w), dtype=bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        (image >= WHITE).astype(np.uint8), connectivity=8
    )
    for i, (_, _, bw, bh, area) in enumerate(stats[1:n], start=1):
        if area >= MIN_AREA * h * w and area / (bw * bh) >= MIN_FILL:
            mask |= labels == i
    side = max(3, (min(h, w) // 25) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))
    tophat = cv2.morphologyEx(image, cv2.MORPH_TOPHAT, kernel)
    strokes = (image >= STROKE_MIN) & (tophat >= STROKE_CONTRAST)
    band = np.ones((h, w), dtype=bool)
    eh, ew = int(h * EDGE_BAND), int(w * EDGE_BAND)
    band[eh : h - eh, ew : w - ew] = False
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        (strokes & band).astype(np.uint8), connectivity=8
    )
    small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= MAX_STROKE_AREA * h * w)
    return {"boxes": mask, "marks": np.isin(labels, small[small > 0]) & ~mask}


def inpaint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the pixels under ``mask`` (grown by a pixel or two, to take the marks'
    soft edges too) filled in from their surroundings; unchanged where nothing is marked."""
    if not mask.any():
        return image.copy()
    grow = max(1, min(image.shape) // 256)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    grown = cv2.dilate(mask.astype(np.uint8), kernel)
    return cv2.inpaint(image, grown, max(3, 2 * grow + 1), cv2.INPAINT_TELEA)


def trim_bands(image: np.ndarray) -> np.ndarray:
    """``image`` without uniform rows and columns along its edges (black bands, white frames);
    at most a third of either side is trimmed."""
    h, w = image.shape
    rows, cols = image.std(axis=1) >= FLAT_BAND, image.std(axis=0) >= FLAT_BAND

    def extent(keep: np.ndarray, n: int) -> tuple[int, int]:
        inside = np.flatnonzero(keep)
        if not len(inside):
            return 0, n
        return min(int(inside[0]), n // 3), max(int(inside[-1]) + 1, n - n // 3)

    top, bottom = extent(rows, h)
    left, right = extent(cols, w)
    return image[top:bottom, left:right]


def crop_border(image: np.ndarray) -> np.ndarray:
    """:func:`trim_bands`, then cut :data:`CROP` of the height or width from each side."""
    image = trim_bands(image)
    h, w = image.shape
    return image[
        int(h * CROP["top"]) : h - int(h * CROP["bottom"]),
        int(w * CROP["left"]) : w - int(w * CROP["right"]),
    ]


def remove(image: np.ndarray, mode: str) -> np.ndarray:
    """The ``data.artefacts`` step on a gray uint8 radiograph (see the module docstring)."""
    if mode == "keep":
        return image
    if mode == "inpaint":
        return inpaint(image, find_artefacts(image))
    if mode == "crop_border":
        return crop_border(image)
    raise ValueError(f"data.artefacts must be one of {ARTEFACT_MODES}, got {mode!r}")


def box_mask(shape: tuple[int, int], boxes: list[Box]) -> np.ndarray:
    """A boolean mask of ``shape`` that is True inside the boxes."""
    mask = np.zeros(shape, dtype=bool)
    for b in boxes:
        mask[b.y : b.y + b.height, b.x : b.x + b.width] = True
    return mask
