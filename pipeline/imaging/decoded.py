"""What decoding produces: the :class:`Decoded` image, the :class:`ImageError` every refusal
raises, and what every format (PNG, JPEG, DICOM...) shares: the header-size check, the
reduction of very large images and the memory budget all decodes of a process share."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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
    result must see (e.g. text burned into the image), ``colourfulness`` of the file's
    colours when decoding was asked to measure it (0 for grayscale images and otherwise), and
    ``size``: (width, height) as stored, before any reduction to :data:`MAX_SIDE`."""

    pixels: np.ndarray
    format: str
    view: str | None = None
    notes: tuple[str, ...] = ()
    colourfulness: float = 0.0
    size: tuple[int, int] | None = None


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


def human_bytes(n: int) -> str:
    """A byte count as people read it: MB from 100 kB up, else bytes."""
    return f"{n / 2**20:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


# Images larger than MAX_SIDE are box-reduced right after decoding (no model here uses more than
# 1024 px); all decodes of a process share DECODE_BUDGET bytes, so four 7000×7000 16-bit uploads
# at once wait their turn instead of needing gigabytes together.
MAX_SIDE = 4096


def reduction(width: int, height: int) -> int:
    """The whole factor that brings the longer side to at most MAX_SIDE pixels (1: none)."""
    return max(1, -(-max(width, height) // MAX_SIDE))


class DecodeBudget:
    """A byte budget shared by the decodes of a process: a decode waits until its cost fits.

    A single image that costs more than the whole budget is refused with an
    :class:`ImageError` instead of waiting forever.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._free = threading.Condition()

    @contextmanager
    def reserve(self, cost: int, source: str | None) -> Iterator[None]:
        if cost > self.total:
            raise ImageError(
                source,
                f"decoding it would take {human_bytes(cost)} of memory, over the "
                f"{human_bytes(self.total)} a decode may use",
                BOMB_FIX,
            )
        with self._free:
            self._free.wait_for(lambda: self.used + cost <= self.total)
            self.used += cost
        try:
            yield
        finally:
            with self._free:
                self.used -= cost
                self._free.notify_all()


DECODE_BUDGET = DecodeBudget(int(os.environ.get("TBXRAY_DECODE_BUDGET_MB", "256")) * 2**20)
