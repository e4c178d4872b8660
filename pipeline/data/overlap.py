"""Images that one dataset shares with another: the same radiograph, resized or re-encoded.

An external evaluation is only external if none of its images were among the run's own data. The
check is the one the scan uses to group near-duplicates inside a dataset
(:mod:`pipeline.data.duplicates`): identical file bytes, or perceptual hashes within
``DUP_DISTANCE`` bits whose 32×32 thumbnails correlate at ``DUP_MIN_CORRELATION`` or more.
Only the candidate pairs the hashes propose are decoded, so checking two collections of a few
thousand images takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data import duplicates
from pipeline.data.index_cache import load_index
from pipeline.data.scan import DatasetIndex


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


def shared_images(
    reference: DatasetIndex, other: DatasetIndex, *, dup_distance: int = duplicates.DUP_DISTANCE
) -> list[SharedImage]:
    """Every image of ``other`` that is the same file as, or a near-duplicate of, an image of
    ``reference``; in ``other``'s order, each listed once."""
    by_sha = {r.sha1: r.path for r in reference.records}
    ref_hashes = duplicates.hashes([r.phash for r in reference.records])
    found: dict[str, SharedImage] = {}
    thumbs: dict[str, np.ndarray] = {}

    def thumb(path: str) -> np.ndarray:
        if path not in thumbs:
            thumbs[path] = duplicates.read_thumbnail(path)
        return thumbs[path]

    hashes = duplicates.hashes([r.phash for r in other.records])
    for start, close in duplicates.close_pairs(hashes, ref_hashes, dup_distance):
        for i, row in enumerate(close):
            record = other.records[start + i]
            if record.sha1 in by_sha:
                found[record.path] = SharedImage(record.path, by_sha[record.sha1], "identical file")
                continue
            for j in np.flatnonzero(row):
                ref = reference.records[j].path
                corr = duplicates.correlation(thumb(record.path), thumb(ref))
                if corr >= duplicates.DUP_MIN_CORRELATION:
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
