"""The X-rays a pretraining run learns from: every image of its folders, labels ignored.

Each folder gives its images as :func:`pipeline.data.unlabelled.folder_index` finds them, and
they are preprocessed as the classifier's are (lung ROI, size) and cached like a training set's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DataConfig
from pipeline.data import catalog
from pipeline.data.unlabelled import folder_index
from pipeline.preprocessing.cache import cached_arrays

# The shared sets pretraining uses by default, found under the data roots: the unlabelled
# collections and the images (not the labels) of every labelled one.
DEFAULT_SETS = ("cxr-unlabelled", "tb-cxr", "nlm-224", "montgomery", "lung-masks")


def default_folders(without: tuple[str, ...] = ()) -> list[Path]:
    """The :data:`DEFAULT_SETS` found under the data roots (``$TBXRAY_DATA_DIRS``), but for the
    collections named in ``without``."""
    found = {}
    for root in catalog.data_roots():
        for name in DEFAULT_SETS:
            if name not in found and name not in without and (root / name).is_dir():
                found[name] = (root / name).resolve()
    return [found[n] for n in DEFAULT_SETS if n in found]


def pretraining_arrays(
    folders: list[Path],
    data: DataConfig,
    *,
    max_images: int | None,
    seed: int,
    progress: bool,
    without: tuple[str, ...] = (),
) -> tuple[np.ndarray, dict[str, int]]:
    """All images of ``folders`` preprocessed for ``data`` (uint8 (N, S, S)) and the count per
    folder; at most ``max_images`` in all, drawn at random (``seed``) in proportion.

    ``without``: collections left out of a folder that mixes several, by file-name prefix
    (lung-masks' ``montgomery-*`` films are Montgomery's), so that an encoder can be made that
    never saw a held-out collection.
    """
    parts, counts = [], {}
    for folder in folders:
        index = folder_index(folder, progress=progress)
        arrays = cached_arrays(index, data, progress=progress)
        if without:
            keep = [
                i
                for i, r in enumerate(index.records)
                if not Path(r.path).name.startswith(tuple(f"{name}-" for name in without))
            ]
            arrays = np.asarray(arrays)[keep]
        parts.append(arrays)
        counts[Path(folder).name] = len(arrays)
    total = sum(counts.values())
    if max_images is None or max_images >= total:
        return np.concatenate(parts), counts
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(total, size=max_images, replace=False))
    bounds = np.cumsum([0, *counts.values()])
    counts = {
        name: int(((keep >= lo) & (keep < hi)).sum())
        for name, lo, hi in zip(counts, bounds[:-1], bounds[1:], strict=True)
    }
    return np.concatenate(parts)[keep], counts
