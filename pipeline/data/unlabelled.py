"""Folders of X-rays without labels: a pretraining set, or a site's images for adaptation.

A folder in a dataset layout (:mod:`pipeline.data.layouts`) gives the images its scan accepts
(labels kept, and ignored by the callers); any other folder gives the pictures in its
``images/`` subfolder (cxr-unlabelled, lung-masks), or else its own, with label -1.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pipeline.data import scan
from pipeline.data.index_cache import load_index
from pipeline.data.layouts import IMAGE_SUFFIXES, DatasetLayoutError


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
