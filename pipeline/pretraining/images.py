"""The X-rays a pretraining run learns from: every image of its folders, labels ignored.

A folder in a dataset layout (tb-cxr, nlm-224, Montgomery: :mod:`pipeline.data.layouts`) gives
the images its scan accepts; any other folder gives the pictures in its ``images/`` subfolder
(cxr-unlabelled, lung-masks), or else its own. Each folder's images are preprocessed as the
classifier's are (lung ROI, size) and cached like a training set's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.config import DataConfig
from pipeline.data import catalog, scan
from pipeline.data.index_cache import load_index
from pipeline.data.layouts import IMAGE_SUFFIXES, DatasetLayoutError
from pipeline.preprocessing.cache import cached_arrays

# The shared sets pretraining uses by default, found under the data roots: the unlabelled
# collections and the images (not the labels) of every labelled one.
DEFAULT_SETS = ("cxr-unlabelled", "tb-cxr", "nlm-224", "montgomery", "lung-masks")


def default_folders() -> list[Path]:
    """The :data:`DEFAULT_SETS` found under the data roots (``$TBXRAY_DATA_DIRS``)."""
    found = {}
    for root in catalog.data_roots():
        for name in DEFAULT_SETS:
            if name not in found and (root / name).is_dir():
                found[name] = (root / name).resolve()
    return [found[n] for n in DEFAULT_SETS if n in found]


def folder_index(folder: str | Path, *, progress: bool = False) -> scan.DatasetIndex:
    """The images of ``folder`` as an index (labels of an unlabelled folder are -1)."""
    base = Path(folder).expanduser().resolve()
    try:
        return load_index(base, progress=progress)
    except DatasetLayoutError:
        pass
    inner = base / "images"
    pictures = sorted(
        p
        for p in (inner if inner.is_dir() else base).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not pictures:
        raise DatasetLayoutError(
            f"{base} holds no images for pretraining: expected a dataset folder, an images/ "
            f"subfolder or image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    digest = hashlib.sha256()
    records = []
    for p in pictures:
        stat = p.stat()
        digest.update(f"{p.relative_to(base)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        records.append(scan.ImageRecord(str(p), -1, p.stem, "", "", 0, 0, ""))
    return scan.DatasetIndex(str(base), "unlabelled", tuple(records), (), digest.hexdigest())


def pretraining_arrays(
    folders: list[Path], data: DataConfig, *, max_images: int | None, seed: int, progress: bool
) -> tuple[np.ndarray, dict[str, int]]:
    """All images of ``folders`` preprocessed for ``data`` (uint8 (N, S, S)) and the count per
    folder; at most ``max_images`` in all, drawn at random (``seed``) in proportion."""
    parts, counts = [], {}
    for folder in folders:
        arrays = cached_arrays(folder_index(folder, progress=progress), data, progress=progress)
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
