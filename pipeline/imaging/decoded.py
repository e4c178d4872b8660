"""What decoding produces: the :class:`Decoded` image, the :class:`ImageError` every refusal
raises, and the header-size check shared by every format (PNG, JPEG, DICOM...)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Anything smaller cannot hold a chest radiograph; it is a thumbnail, an icon or a broken export.
MIN_SIDE = 8

BOMB_FIX = "downscale the image (a chest X-ray rarely needs more than 4096×4096 pixels)"


class ImageError(ValueError):
    """An image was refused; ``str(err)`` names the file (when known), the problem and the fix.

    ``source`` is the file path (``None`` for in-memory bytes) and ``reason`` is the message
    without the path, e.g. for listing bad files in a dataset report.
    """

    def __init__(self, source: str | None, problem: str, fix: str) -> None:
        self.source = source
        self.reason = f"{problem}; {fix}"
        super().__init__(f"{source}: {self.reason}" if source else self.reason)


@dataclass(frozen=True)
class Decoded:
    """A decoded image: ``pixels`` (H×W uint8), the file's ``format`` (``"PNG"``, ``"JPEG"``,
    ``"DICOM"``...), and for DICOM the header's ``view`` (View Position such as ``"PA"`` or
    ``"LL"``; None when absent or for other formats), ``notes``: sentences a reader of the
    result must see (e.g. text burned into the image), and ``colourfulness`` of the file's
    colours when decoding was asked to measure it (0 for grayscale images and otherwise)."""

    pixels: np.ndarray
    format: str
    view: str | None = None
    notes: tuple[str, ...] = ()
    colourfulness: float = 0.0


def check_dimensions(width: int, height: int, source: str | None, max_pixels: int | None) -> None:
    """Refuse, from a header's width and height, a possible decompression bomb (more than
    ``max_pixels``; ``None``: no limit) and an image too small to be a radiograph."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            source,
            f"the header claims {width}×{height} = {width * height:,} pixels, over the "
            f"{max_pixels:,} pixel limit (a possible decompression bomb)",
            BOMB_FIX,
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            source,
            f"the image is only {width}×{height} pixels, too small to be a chest X-ray "
            f"(minimum {MIN_SIDE}×{MIN_SIDE})",
            "use the full-resolution radiograph, not a thumbnail",
        )
