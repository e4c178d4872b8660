"""Recent uploads as the app read them, so that one upload is decoded once.

The page's events all name the same uploaded file: the prediction, the preview of the image as
read, and every LIME or SHAP click. :class:`Reads` keeps, for the last few uploads, what reading
one gave — its screening :class:`~pipeline.serving.assess.Assessment` (verdict, prepared image,
lung mask) and a preview-sized copy of the decoded image — keyed by the file's path, size,
modification time and the upload limits, so the later events reuse it instead of decoding the
file again. Nothing outlives the upload itself: an entry whose file has been deleted (uploads
go after a few minutes) is dropped and never answered from.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.serving.assess import Assessment, Decoding

# The longer side of the "image as read" preview: its 360 px box, sharp on a 2x screen.
PREVIEW_SIDE = 720


@dataclass(frozen=True)
class Read:
    """What reading one upload gave: the screening assessment (no heatmap) and the decoded
    image at most :data:`PREVIEW_SIDE` pixels a side (None when the file could not be read)."""

    assessment: Assessment
    preview: np.ndarray | None


def preview(gray: np.ndarray) -> np.ndarray:
    """``gray`` shrunk to at most :data:`PREVIEW_SIDE` pixels a side (itself when smaller)."""
    scale = PREVIEW_SIDE / max(gray.shape)
    if scale >= 1:
        return gray
    size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


Key = tuple[str, int, int, Decoding]


class Reads:
    """The last ``capacity`` uploads' :class:`Read`, by file (thread-safe)."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._reads: OrderedDict[Key, Read] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, decoding: Decoding) -> Read | None:
        """The read of this very file under these limits, or None (never read, changed, gone)."""
        key = _key(path, decoding)
        with self._lock:
            if key is None:
                self._forget_gone()
                return None
            read = self._reads.get(key)
            if read is not None:
                self._reads.move_to_end(key)
            return read

    def put(self, path: Path, decoding: Decoding, read: Read) -> None:
        """Remember ``read`` for this file; the oldest and those of deleted files go."""
        key = _key(path, decoding)
        with self._lock:
            self._forget_gone()
            if key is None:
                return
            self._reads[key] = read
            while len(self._reads) > self.capacity:
                self._reads.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._reads)

    def _forget_gone(self) -> None:
        for key in [k for k in self._reads if not Path(k[0]).is_file()]:
            del self._reads[key]


def _key(path: Path, decoding: Decoding) -> Key | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return str(path), stat.st_size, stat.st_mtime_ns, decoding
