"""Scan a dataset folder of chest X-rays into an index: labels, near-duplicate groups, bad files.

Which files are images of which class is the folder's layout (:mod:`pipeline.data.layouts`).
Public TB collections are re-shared widely and contain the same radiograph more than once
(resized or re-encoded). Such copies must stay on one side of a train/test split, so the scan
groups near-duplicates (perceptual hash, confirmed by thumbnail correlation; see
:mod:`pipeline.data.duplicates`); ``ImageRecord.group`` is what splitting keeps together.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.data import duplicates, layouts
from pipeline.data.layouts import CLASS_NAMES, BadFile, DatasetLayoutError
from pipeline.imaging import decode
from pipeline.imaging.decoded import ImageError
from pipeline.progress import bar as progress_bar


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: absolute ``path``, ``label`` (0 normal, 1 TB), near-duplicate ``group``
    id, ``sha1`` of the file bytes, 64-bit perceptual hash ``phash`` (16 hex digits), displayed
    ``width`` × ``height`` in pixels and the file's PIL ``mode`` (e.g. ``"L"``, ``"I;16"``)."""

    path: str
    label: int
    group: str
    sha1: str
    phash: str
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class DatasetIndex:
    """The result of :func:`scan`: usable images sorted by relative path, and skipped files.

    ``fingerprint`` (sha256 hex) identifies the data a run used: it depends on each image's path
    relative to ``root``, label and bytes, not on where the folder lives.
    """

    root: str
    layout: str
    records: tuple[ImageRecord, ...]
    bad_files: tuple[BadFile, ...]
    fingerprint: str

    @property
    def labels(self) -> np.ndarray:
        """Labels as an (N,) int64 array, 0 normal and 1 TB, in record order."""
        return np.array([r.label for r in self.records], dtype=np.int64)

    @property
    def paths(self) -> list[str]:
        """Absolute image paths in record order."""
        return [r.path for r in self.records]

    @property
    def groups(self) -> list[str]:
        """Near-duplicate group ids in record order; equal ids must share a split."""
        return [r.group for r in self.records]

    @property
    def sources(self) -> np.ndarray:
        """Source folder of each image as an (N,) int64 array, a position in :attr:`roots`:
        all 0 here; an index over several folders (:mod:`pipeline.preprocessing.sources`) numbers
        them."""
        return np.zeros(len(self.records), dtype=np.int64)

    @property
    def roots(self) -> tuple[str, ...]:
        """The dataset folders the images come from: this index's ``root`` alone."""
        return (self.root,)

    def counts(self) -> dict[str, int]:
        """Images per class: ``{"normal": n, "tb": n}``."""
        counts = Counter(r.label for r in self.records)
        return {name: counts[label] for label, name in CLASS_NAMES.items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per record, one column per :class:`ImageRecord` field."""
        columns = [f.name for f in fields(ImageRecord)]
        return pd.DataFrame([astuple(r) for r in self.records], columns=columns)


def scan(
    root: str | Path,
    *,
    label_map: dict[str, int] | None = None,
    progress: bool = False,
    dup_distance: int = duplicates.DUP_DISTANCE,
    one_class: bool = False,
) -> DatasetIndex:
    """Find, decode, hash and label every image of a dataset folder.

    The layout is detected (see the module docstring); ``label_map`` maps two folder names to
    0 (normal) and 1 (TB) when the names say nothing. Hidden files are skipped; every other file
    in a class folder is decoded with :func:`pipeline.imaging.decode.read_image`, and those that
    fail become :class:`BadFile` entries instead of stopping the scan. Images whose perceptual
    hashes differ in at most ``dup_distance`` of 64 bits and whose thumbnails correlate at
    :data:`~pipeline.data.duplicates.DUP_MIN_CORRELATION` or more share a group, transitively
    (see :mod:`pipeline.data.duplicates`).

    Decoding runs on a thread pool (PIL releases the GIL while decoding); ``progress`` shows a
    tqdm bar. Raises :class:`DatasetLayoutError` when the layout is not recognised or a class
    has no usable image. ``one_class``: a folder of one class only is accepted too (one class
    folder, e.g. ``Tuberculosis/`` alone, or NLM names of one class) — for external evaluation,
    which then reports sensitivity (or specificity) alone; training always needs both.
    """
    if not 0 <= dup_distance <= 64:
        raise ValueError(f"dup_distance is a number of pHash bits, 0..64; got {dup_distance}")
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise DatasetLayoutError(f"dataset folder {base} does not exist or is not a folder")
    layout, candidates, bad = layouts.find_files(base, label_map, one_class)
    candidates.sort(key=lambda item: _relative(item[0], base))
    workers = min(16, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_read_one, candidates)
        if progress:
            results = progress_bar(
                results, total=len(candidates), desc=f"scan {base.name}", unit="img"
            )
        outcomes = list(results)

    found = [o for o in outcomes if not isinstance(o, BadFile)]
    bad += [o for o in outcomes if isinstance(o, BadFile)]
    present = {f.label for f in found}
    for label, name in CLASS_NAMES.items():
        if label not in present and not (one_class and present):
            raise DatasetLayoutError(
                f"{base}: no usable {name} image found (layout {layout!r}, "
                f"{len(bad)} bad files); a dataset needs both classes"
            )

    group_of = duplicates.groups(
        [f.phash for f in found], np.stack([f.thumb for f in found]), dup_distance
    )
    records = tuple(
        ImageRecord(
            path=str(f.path),
            label=f.label,
            group=found[group_of[i]].sha1,
            sha1=f.sha1,
            phash=f.phash,
            width=f.width,
            height=f.height,
            mode=f.mode,
        )
        for i, f in enumerate(found)
    )
    return DatasetIndex(
        root=str(base),
        layout=layout,
        records=records,
        bad_files=tuple(sorted(bad, key=lambda b: _relative(Path(b.path), base))),
        fingerprint=_fingerprint(base, records),
    )


def summarise(index: DatasetIndex) -> dict[str, Any]:
    """Describe a dataset for the ``inspect`` command and the dashboard (JSON-serialisable).

    Keys: ``root``, ``layout``, ``fingerprint``, ``n_images``, ``counts`` (per class),
    ``imbalance_ratio`` (majority / minority), ``sizes`` (the five commonest ``[width, height,
    count]``), ``n_sizes`` (distinct sizes), ``modes`` (PIL mode -> count), ``n_bad_files``,
    ``bad_files`` (``{"path", "reason"}`` each), ``n_duplicate_groups`` (groups of more than one
    image), ``n_images_in_duplicate_groups``, ``mixed_label_groups`` (group ids holding both
    normal and TB images: the same radiograph labelled both ways, a label error to fix).
    """
    counts = index.counts()
    sizes = Counter((r.width, r.height) for r in index.records)
    members: dict[str, list[ImageRecord]] = {}
    for r in index.records:
        members.setdefault(r.group, []).append(r)
    duplicates = {g: rs for g, rs in members.items() if len(rs) > 1}
    return {
        "root": index.root,
        "layout": index.layout,
        "fingerprint": index.fingerprint,
        "n_images": len(index.records),
        "counts": counts,
        # None when a class is empty (possible for an index filtered by the caller).
        "imbalance_ratio": max(counts.values()) / min(counts.values())
        if min(counts.values())
        else None,
        "sizes": [[w, h, n] for (w, h), n in sizes.most_common(5)],
        "n_sizes": len(sizes),
        "modes": dict(Counter(r.mode for r in index.records).most_common()),
        "n_bad_files": len(index.bad_files),
        "bad_files": [{"path": b.path, "reason": b.reason} for b in index.bad_files],
        "n_duplicate_groups": len(duplicates),
        "n_images_in_duplicate_groups": sum(len(rs) for rs in duplicates.values()),
        "mixed_label_groups": sorted(
            g for g, rs in duplicates.items() if len({r.label for r in rs}) > 1
        ),
    }


@dataclass(frozen=True, eq=False)
class _Found:
    """A decoded image before grouping; ``thumb`` is its 32×32 uint8 thumbnail."""

    path: Path
    label: int
    sha1: str
    phash: str
    thumb: np.ndarray
    width: int
    height: int
    mode: str


def _read_one(item: tuple[Path, int]) -> _Found | BadFile:
    """Read, validate and hash one file; a file PIL refuses becomes a BadFile, never a crash."""
    path, label = item
    if path.is_symlink() and not path.exists():
        return BadFile(
            str(path),
            f"a broken link: it points to {os.readlink(path)}, which is not there; copy the "
            "image itself into the folder or remove the link",
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        return BadFile(str(path), f"cannot read the file ({err.strerror}); check its permissions")
    try:
        gray = decode.read_image(data)
        _, _, mode = decode.describe(data)
    except ImageError as err:
        return BadFile(str(path), err.reason)
    height, width = gray.shape
    return _Found(
        path=path,
        label=label,
        sha1=hashlib.sha1(data).hexdigest(),
        phash=duplicates.phash(gray),
        thumb=duplicates.thumbnail(gray),
        width=width,
        height=height,
        mode=mode,
    )


def _fingerprint(base: Path, records: Iterable[ImageRecord]) -> str:
    """sha256 over the sorted (relative path, label, sha1) triples of the records."""
    triples = sorted((_relative(Path(r.path), base), r.label, r.sha1) for r in records)
    digest = hashlib.sha256()
    for rel, label, sha1 in triples:
        digest.update(f"{rel}\t{label}\t{sha1}\n".encode())
    return digest.hexdigest()


def _relative(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()
