"""Several dataset folders trained on together: one index in which every image keeps its source.

``data.path`` may list several folders, each in its own layout (tb-cxr's ``Normal/`` and
``Tuberculosis/``, nlm-224's ``healthy/`` and ``tb/``, NLM file names...). Each folder is scanned
and preprocessed on its own, through the same caches as a single folder
(:func:`pipeline.data.index_cache.load_index`, :func:`pipeline.preprocessing.cache.cached_arrays`),
and the results are joined here. Sources differ in scanner, population and burned-in artefacts, so
the splitter stratifies by source × class and ``train.balance_sources`` can weigh them equally.

Public TB collections share radiographs, so near-duplicates are looked for *across* the folders
too, with the scan's own criterion (pHash within ``DUP_DISTANCE`` bits, confirmed by thumbnail
correlation; see :mod:`pipeline.data.scan`): a radiograph found in two sources forms one group,
which the splitter keeps on one side of every split.

One folder gives its own :class:`~pipeline.data.scan.DatasetIndex` and cached arrays unchanged, so
a single-source run splits and trains exactly as before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline import paths
from pipeline.config import DataConfig
from pipeline.data import duplicates, index_cache, layouts
from pipeline.data.scan import DatasetIndex, ImageRecord
from pipeline.imaging.decoded import ImageError
from pipeline.preprocessing import cache

# Rows of the pHash distance matrix compared at once, and images copied at once when stacking.
_CHUNK = 1024


@dataclass(frozen=True)
class CombinedIndex(DatasetIndex):
    """Several folders' indexes as one: records of ``parts`` in order, near-duplicate groups
    joined across them.

    ``root`` is the folders' common parent (image paths saved with a run are relative to it,
    e.g. ``tb-cxr/Normal/x.png``); ``layout`` joins the parts' layouts with ``+``;
    ``fingerprint`` hashes the parts' fingerprints in order, so it differs from each of them.
    ``source_of`` gives, for each record, the position of its folder in ``parts``.
    """

    parts: tuple[DatasetIndex, ...]
    source_of: tuple[int, ...]

    @property
    def sources(self) -> np.ndarray:
        """Source of each image as an (N,) int64 array: a position in :attr:`roots`."""
        return np.array(self.source_of, dtype=np.int64)

    @property
    def roots(self) -> tuple[str, ...]:
        """Each source folder (absolute), in ``data.path`` order."""
        return tuple(p.root for p in self.parts)


def load_index(folders: Sequence[str], *, progress: bool = False) -> DatasetIndex:
    """The index of ``data.sources``: one folder's own index, or several combined.

    Each folder is scanned through the cache of :func:`pipeline.data.index_cache.load_index`.
    """
    parts = [index_cache.load_index(folder, progress=progress) for folder in folders]
    return parts[0] if len(parts) == 1 else combine(parts)


def combine(parts: Sequence[DatasetIndex]) -> CombinedIndex:
    """Join folder indexes; near-duplicates across folders are put in one group.

    Raises ValueError when two parts are the same folder.
    """
    roots = [p.root for p in parts]
    if len(set(roots)) != len(roots):
        raise ValueError(f"the same folder is listed twice among {roots}")
    records = [r for p in parts for r in p.records]
    source_of = tuple(s for s, p in enumerate(parts) for _ in p.records)
    groups = _joined_groups(records, np.array(source_of))
    digest = hashlib.sha256(b"sources v1\n")
    for p in parts:
        digest.update(f"{p.fingerprint}\n".encode())
    return CombinedIndex(
        root=os.path.commonpath(roots),
        layout=" + ".join(p.layout for p in parts),
        records=tuple(replace(r, group=g) for r, g in zip(records, groups, strict=True)),
        bad_files=tuple(b for p in parts for b in p.bad_files),
        fingerprint=digest.hexdigest(),
        parts=tuple(parts),
        source_of=source_of,
    )


def cached_arrays(index: DatasetIndex, data: DataConfig, *, progress: bool = False) -> np.ndarray:
    """The preprocessed images of ``index``: uint8 (N, S, S), memory-mapped read-only.

    For one folder, :func:`pipeline.preprocessing.cache.cached_arrays`. For several, each folder's
    cache is built or reused, then they are copied, a chunk at a time, into one cache file of the
    combined index (keyed by its fingerprint), so memory never holds the whole stack.
    """
    if not isinstance(index, CombinedIndex):
        return cache.cached_arrays(index, data, progress=progress)
    folder = paths.cache_dir() / "arrays"
    path = folder / f"{cache.array_key(index.fingerprint, data)}.npy"
    if not path.exists():
        pieces = [cache.cached_arrays(p, data, progress=progress) for p in index.parts]
        size = data.image_size
        with cache.written_array(path, (len(index.records), size, size)) as out:
            row = 0
            for piece in pieces:
                for start in range(0, len(piece), _CHUNK):
                    block = piece[start : start + _CHUNK]
                    out[row : row + len(block)] = block
                    row += len(block)
    return np.load(path, mmap_mode="r")


def source_counts(index: DatasetIndex) -> list[dict[str, object]]:
    """Images per source and class, for ``inspect`` and the dashboard: one dict per source,
    ``{"source": folder, "name": its last component, "normal": n, "tb": n}``."""
    sources, labels = index.sources, index.labels
    return [
        {
            "source": root,
            "name": Path(root).name,
            **{
                name: int(((sources == s) & (labels == label)).sum())
                for label, name in layouts.CLASS_NAMES.items()
            },
        }
        for s, root in enumerate(index.roots)
    ]


def _joined_groups(records: list[ImageRecord], source_of: np.ndarray) -> list[str]:
    """Each record's group id once near-duplicates in different sources are joined.

    Candidates are pairs from different sources whose pHashes differ in at most
    ``duplicates.DUP_DISTANCE`` bits; only their images are read again (for the thumbnails the
    scan does not keep), and the scan's own grouping confirms them. A joined group takes the id
    of its earliest record's group.
    """
    hashes = duplicates.hashes([r.phash for r in records])
    candidates: set[int] = set()
    for start, close in duplicates.close_pairs(hashes, hashes):
        across = close & (source_of[start : start + len(close), None] < source_of)
        rows, cols = np.nonzero(across)
        candidates.update((rows + start).tolist(), cols.tolist())
    groups = [r.group for r in records]
    if not candidates:
        return groups
    involved = sorted(candidates)
    thumbs = []
    for i in involved:
        try:
            thumbs.append(duplicates.read_thumbnail(records[i].path))
        except ImageError as err:
            raise ValueError(
                f"{records[i].path} changed since it was scanned: {err.reason}"
            ) from err
        except OSError as err:
            raise ValueError(f"{records[i].path} cannot be read again: {err.strerror}") from err
    first = duplicates.groups([records[i].phash for i in involved], np.stack(thumbs))
    # Union-find over group ids; the root is the group met first in record order.
    order = {g: i for i, g in reversed(list(enumerate(groups)))}
    parent = {g: g for g in order}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    for k, i in enumerate(involved):
        a, b = find(groups[i]), find(groups[involved[first[k]]])
        if a != b:
            keep, drop = sorted((a, b), key=order.__getitem__)
            parent[drop] = keep
    return [find(g) for g in groups]
