"""A dataset folder's index, scanned once and cached while no file under the folder changes."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from pipeline import paths
from pipeline.data import layouts, scan

# Bump when scanning finds other images in the same files, or the index's classes move, so old
# indexes are not reused (2: DICOM files are read; an index cached before listed them as bad
# files. 3: the index classes live in pipeline.data.scan; an index pickled before names a
# module that is gone. 4: an image / lung-mask set is refused, and a broken link is a bad file;
# an index cached before read a mask set's images folder as NLM-labelled X-rays).
INDEX_VERSION = 4


def _listing_key(root: Path, label_map: dict[str, int] | None) -> str:
    """Cheap identity of a folder's contents: every file's relative path, size and mtime."""
    labels = sorted((label_map or {}).items())
    h = hashlib.sha256(f"v{INDEX_VERSION}|{root.resolve()}|{labels}".encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            # A broken link has no file to stat: the link itself is what the key sees.
            st = os.stat(path) if os.path.exists(path) else os.lstat(path)
            rel = os.path.relpath(path, root)
            h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_index(
    root: str | Path,
    *,
    label_map: dict[str, int] | None = None,
    progress: bool = False,
    cache: Path | None = None,
    one_class: bool = False,
) -> scan.DatasetIndex:
    """:func:`pipeline.data.scan.scan` with the result cached while no file under ``root`` changes.

    ``one_class``: also accept a folder of one class (for external evaluation only).
    """
    root = Path(root)
    if not root.is_dir():
        raise layouts.DatasetLayoutError(
            f"dataset folder {root} does not exist or is not a folder; pass the folder that "
            "holds the class folders (e.g. Normal/ and Tuberculosis/)"
        )
    folder = (cache or paths.cache_dir()) / "index"
    path = folder / f"{_listing_key(root, label_map)}.pkl"
    if path.exists():
        try:
            with path.open("rb") as f:
                index = pickle.load(f)
        except (pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError):
            # A cache written by another version of the code: scan again and replace it.
            path.unlink()
        else:
            return _check_classes(index, one_class)
    index = scan.scan(root, label_map=label_map, progress=progress, one_class=one_class)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        pickle.dump(index, f)
    tmp.replace(path)
    return index


def _check_classes(index: scan.DatasetIndex, one_class: bool) -> scan.DatasetIndex:
    """A cached one-class index (scanned for an external evaluation) is refused as the scan
    would refuse the folder for training."""
    missing = [n for c, n in layouts.CLASS_NAMES.items() if not (index.labels == c).any()]
    if missing and not one_class:
        raise layouts.DatasetLayoutError(
            f"{index.root}: no usable {missing[0]} image found (layout {index.layout!r}); "
            "a dataset needs both classes"
        )
    return index
