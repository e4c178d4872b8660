"""Images that one dataset shares with another: the same radiograph, resized or re-encoded.

An external evaluation is only external if none of its images were among the run's own data. The
check is the one the scan uses to group near-duplicates inside a dataset (see
:data:`pipeline.datasets.DUP_DISTANCE`): identical file bytes, or perceptual hashes within
``DUP_DISTANCE`` bits whose 32×32 thumbnails correlate at ``DUP_MIN_CORRELATION`` or more.
Only the candidate pairs the hashes propose are decoded, so checking two collections of a few
thousand images takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.scan import DUP_DISTANCE, DUP_MIN_CORRELATION, DatasetIndex
from pipeline.data.index_cache import load_index
from pipeline.imaging import decode

_THUMB = 32
# Candidate rows of the distance matrix computed at once (1024 × 16k uint8 = 16 MB).
_CHUNK = 1024


@dataclass(frozen=True)
class SharedImage:
    """A file of the other dataset that is (a copy of) a file of the reference dataset."""

    path: str
    same_as: str
    how: str  # "identical file" or "near-duplicate (thumbnail correlation 0.997)"


class OverlapError(ValueError):
    """An "external" folder holds images of the run's own data; ``shared`` names them."""

    def __init__(self, folder: str, shared: list[SharedImage], reference: str) -> None:
        self.shared = shared
        listed = "\n".join(
            f"  - {Path(s.path).name} = {Path(s.same_as).name} ({s.how})" for s in shared[:10]
        )
        more = f"\n  … and {len(shared) - 10} more" if len(shared) > 10 else ""
        super().__init__(
            f"{folder} is not external to this run: {len(shared)} of its images are in the "
            f"run's own data ({reference}):\n{listed}{more}\nRemove them from the folder (or "
            "evaluate on a collection the run never saw): a score on images the model trained "
            "on overstates how it does elsewhere."
        )


def _thumb(path: str) -> np.ndarray:
    gray = decode.read_image(Path(path).read_bytes())
    flat = cv2.resize(gray, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    flat = flat.reshape(-1) - flat.mean()
    norm = float(np.linalg.norm(flat))
    return flat / norm if norm > 0 else flat


def shared_images(
    reference: DatasetIndex, other: DatasetIndex, *, dup_distance: int = DUP_DISTANCE
) -> list[SharedImage]:
    """Every image of ``other`` that is the same file as, or a near-duplicate of, an image of
    ``reference``; in ``other``'s order, each listed once."""
    by_sha = {r.sha1: r.path for r in reference.records}
    ref_hashes = np.array([int(r.phash, 16) for r in reference.records], dtype=np.uint64)
    found: dict[str, SharedImage] = {}
    thumbs: dict[str, np.ndarray] = {}

    def thumb(path: str) -> np.ndarray:
        if path not in thumbs:
            thumbs[path] = _thumb(path)
        return thumbs[path]

    for start in range(0, len(other.records), _CHUNK):
        chunk = other.records[start : start + _CHUNK]
        hashes = np.array([int(r.phash, 16) for r in chunk], dtype=np.uint64)
        close = np.bitwise_count(hashes[:, None] ^ ref_hashes[None, :]) <= dup_distance
        for i, record in enumerate(chunk):
            if record.sha1 in by_sha:
                found[record.path] = SharedImage(record.path, by_sha[record.sha1], "identical file")
                continue
            for j in np.flatnonzero(close[i]):
                ref = reference.records[j].path
                corr = float(thumb(record.path) @ thumb(ref))
                if corr >= DUP_MIN_CORRELATION:
                    how = f"near-duplicate (thumbnail correlation {corr:.3f})"
                    found[record.path] = SharedImage(record.path, ref, how)
                    break
    return list(found.values())


def check_external(reference: DatasetIndex, other: DatasetIndex) -> None:
    """Raise :class:`OverlapError` when ``other`` shares any image with ``reference``."""
    shared = shared_images(reference, other)
    if shared:
        raise OverlapError(other.root, shared, reference.root)


def load_external(
    folder: str, reference: DatasetIndex | None, *, progress: bool = False
) -> DatasetIndex:
    """The index of an external folder (one class accepted), refused with
    :class:`OverlapError` if it shares an image with ``reference`` (the run's
    own data; None when that folder is not on this machine, and then nothing is checked)."""
    index = load_index(folder, progress=progress, one_class=True)
    if reference is not None:
        check_external(reference, index)
    return index
