"""Scan a dataset folder of chest X-rays into an index: labels, near-duplicate groups, bad files.

Accepted layouts, detected automatically (:func:`scan`):

* **TB Chest X-ray Database** (T. Rahman, A. Khandakar, M. A. Kadir et al., "Reliable
  Tuberculosis Detection using Chest X-ray with Deep Learning, Segmentation and Visualization",
  IEEE Access 8:191586-191601, 2020, doi:10.1109/ACCESS.2020.3031384): ``Normal/`` and
  ``Tuberculosis/`` in the folder or one level down (the release unpacks to
  ``TB_Chest_Radiography_Database/Normal``). 3,500 normal and 700 TB images.
* **Two class folders** whose names say which is which (``healthy/`` + ``tb/``, ``negative/`` +
  ``positive/``, ``0/`` + ``1/``...), or any two folders named in an explicit ``label_map``.
* **NLM file names**, as in the Shenzhen and Montgomery County sets of the U.S. National Library
  of Medicine (S. Jaeger et al., "Two public chest X-ray datasets for computer-aided screening of
  pulmonary diseases", Quant. Imaging Med. Surg. 4(6):475-477, 2014): one folder of images
  (e.g. ``CXR_png/``) named ``*_0.png`` (normal) and ``*_1.png`` (TB).

Public TB collections are re-shared widely and contain the same radiograph more than once
(resized or re-encoded). Such copies must stay on one side of a train/test split, so the scan
groups near-duplicates (perceptual hash, confirmed by thumbnail correlation; see
:mod:`pipeline.data.duplicates`);
``ImageRecord.group`` is what splitting keeps together.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from pipeline.data import duplicates
from pipeline.imaging import decode
from pipeline.imaging.decoded import ImageError

NORMAL, TB = 0, 1
CLASS_NAMES = {NORMAL: "normal", TB: "tb"}

# Folder names (lower case, "-" and " " read as "_") that mean each class.
NORMAL_FOLDERS = frozenset({"normal", "healthy", "negative", "neg", "no_tb", "0"})
TB_FOLDERS = frozenset({"tuberculosis", "tb", "positive", "pos", "1"})

# Files at the top of a dataset folder or an NLM folder with these suffixes are taken as images,
# and so are DICOM files without them (recognised by content: CD and PACS exports often have no
# extension); anything else there (manifest.csv, README.txt, clinical readings) is ignored.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"})
_NLM_NAME = re.compile(r"_([01])$")

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
class BadFile:
    """A file in a class folder that was skipped, and why (the :class:`ImageError` reason)."""

    path: str
    reason: str


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
        all 0 here; an index over several folders (:mod:`pipeline.preprocessing.sources`) numbers them."""
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


class DatasetLayoutError(ValueError):
    """The folder is not in a layout :func:`scan` understands; the message says what was found."""


_LAYOUT_HELP = (
    "Accepted layouts:\n"
    "  1. Normal/ and Tuberculosis/ (TB Chest X-ray Database), in the folder or one level down;\n"
    "  2. two class folders named like normal/healthy/negative/0 and tuberculosis/tb/positive/1,\n"
    "     or any two folders with label_map, e.g. label_map={'clear': 0, 'sick': 1}\n"
    "     (CLI: --label-map clear=0,sick=1);\n"
    "  3. images named *_0.png (normal) and *_1.png (TB) in one folder (NLM Shenzhen/Montgomery)."
)


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
    in a class folder is decoded with :func:`pipeline.imaging.decode.read_image`, and those that fail
    become :class:`BadFile` entries instead of stopping the scan. Images whose perceptual hashes
    differ in at most ``dup_distance`` of 64 bits and whose thumbnails correlate at
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
    layout, candidates, bad = _find_files(base, label_map, one_class)
    candidates.sort(key=lambda item: _relative(item[0], base))
    workers = min(16, (os.cpu_count() or 1) + 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_read_one, candidates)
        if progress:
            results = tqdm(results, total=len(candidates), desc=f"scan {base.name}", unit="img")
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


def layout(root: str | Path, *, one_class: bool = False) -> str:
    """The layout of a dataset folder, found as :func:`scan` finds it but without decoding an
    image: cheap enough to try on every folder a picker might offer.

    Raises :class:`DatasetLayoutError` where :func:`scan` would refuse the layout (an empty or
    unrecognised folder, an empty class folder); a folder that passes can still fail the scan
    when one class has no image that decodes.
    """
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise DatasetLayoutError(f"dataset folder {base} does not exist or is not a folder")
    return _find_files(base, None, one_class)[0]


def _find_files(
    base: Path, label_map: dict[str, int] | None, one_class: bool = False
) -> tuple[str, list[tuple[Path, int]], list[BadFile]]:
    """Detect the layout; return its name, the (file, label) pairs to read and early bad files."""
    if label_map is not None:
        folders = _label_map_folders(base, label_map)
        return "label_map", _class_folder_files(folders), _nested_dirs_as_bad(folders)
    found = _layout_in(base, one_class)
    if found is not None:
        return found
    nested = {d: f for d in _subdirs(base) if (f := _layout_in(d, one_class)) is not None}
    if len(nested) > 1:
        names = ", ".join(d.name + "/" for d in nested)
        raise DatasetLayoutError(
            f"{base} holds several datasets ({names}); point at one of them, e.g. "
            f"{next(iter(nested))}"
        )
    if nested:
        return next(iter(nested.values()))
    raise DatasetLayoutError(_describe_unknown(base))


def _layout_in(
    folder: Path, one_class: bool = False
) -> tuple[str, list[tuple[Path, int]], list[BadFile]] | None:
    """The layout found directly in ``folder`` (class folders or NLM names), else None."""
    folders = _class_folders(folder, one_class)
    if folders is not None:
        names = {p.name.lower() for p in folders}
        layout = "tb_chest_xray_db" if names == {"normal", "tuberculosis"} else "class_folders"
        return layout, _class_folder_files(folders), _nested_dirs_as_bad(folders)
    nlm = _nlm_files(folder)
    if nlm is not None:
        return "nlm_names", *nlm
    return None


def _class_folders(folder: Path, one_class: bool = False) -> dict[Path, int] | None:
    """The two class folders directly in ``folder`` (or one, if ``one_class``), or None when the
    names do not say."""
    normal = [d for d in _subdirs(folder) if _folder_key(d.name) in NORMAL_FOLDERS]
    tb = [d for d in _subdirs(folder) if _folder_key(d.name) in TB_FOLDERS]
    if not (normal or tb) or (not one_class and not (normal and tb)):
        return None
    if len(normal) > 1 or len(tb) > 1:
        found = ", ".join(d.name + "/" for d in normal + tb)
        raise DatasetLayoutError(
            f"{folder}: more than one folder per class ({found}); keep one normal and one TB "
            f"folder, or choose two with label_map.\n{_LAYOUT_HELP}"
        )
    return {d: label for ds, label in ((normal, NORMAL), (tb, TB)) for d in ds}


def _label_map_folders(base: Path, label_map: dict[str, int]) -> dict[Path, int]:
    """Resolve an explicit ``{folder name: label}`` map, in ``base`` or one level down."""
    if sorted(label_map.values()) != [NORMAL, TB]:
        raise DatasetLayoutError(
            f"label_map must name exactly two folders, one labelled 0 (normal) and one 1 (TB), "
            f"got {label_map}"
        )
    for folder in [base, *_subdirs(base)]:
        by_name = {d.name.lower(): d for d in _subdirs(folder)}
        if all(name.lower() in by_name for name in label_map):
            return {by_name[name.lower()]: label for name, label in label_map.items()}
    raise DatasetLayoutError(
        f"{base}: label_map names {sorted(label_map)} but the folders there are "
        f"{_listing(base)}; use the folder names exactly as they appear"
    )


def _class_folder_files(folders: dict[Path, int]) -> list[tuple[Path, int]]:
    """Every non-hidden file directly in each class folder, with the folder's label."""
    pairs = []
    for folder, label in folders.items():
        files = [p for p in _visible(folder) if p.is_file()]
        if not files:
            raise DatasetLayoutError(
                f"class folder {folder} is empty; put the {CLASS_NAMES[label]} images in it"
            )
        pairs += [(p, label) for p in files]
    return pairs


def _nested_dirs_as_bad(folders: dict[Path, int]) -> list[BadFile]:
    """Folders inside a class folder are not read; say so rather than drop their images quietly."""
    return [
        BadFile(str(p), "a folder inside a class folder is not read; move its images up a level")
        for folder in folders
        for p in _visible(folder)
        if p.is_dir()
    ]


def _nlm_files(folder: Path) -> tuple[list[tuple[Path, int]], list[BadFile]] | None:
    """Images named ``*_0[.ext]`` / ``*_1[.ext]`` directly in ``folder``, or None when none are."""
    pictures = [p for p in _visible(folder) if p.is_file() and _is_picture(p)]
    labelled, bad = [], []
    for p in pictures:
        match = _NLM_NAME.search(p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name)
        if match:
            labelled.append((p, int(match.group(1))))
        else:
            bad.append(
                BadFile(
                    str(p),
                    "name does not end in _0 (normal) or _1 (TB), so its label is unknown; "
                    "rename it or move it out of the folder",
                )
            )
    return (labelled, bad) if labelled else None


def _is_picture(path: Path) -> bool:
    """An image by its suffix, or a DICOM file by its content whatever its name."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            return decode.is_dicom(f.read(132))
    except OSError:
        return False  # unreadable and unnamed: nothing says it is an image


def _fingerprint(base: Path, records: Iterable[ImageRecord]) -> str:
    """sha256 over the sorted (relative path, label, sha1) triples of the records."""
    triples = sorted((_relative(Path(r.path), base), r.label, r.sha1) for r in records)
    digest = hashlib.sha256()
    for rel, label, sha1 in triples:
        digest.update(f"{rel}\t{label}\t{sha1}\n".encode())
    return digest.hexdigest()


def _describe_unknown(base: Path) -> str:
    if next(_visible(base), None) is None:
        return (
            f"{base} is empty: it holds no class folders and no images. Copy a dataset into "
            f"it, or choose the folder that holds one.\n{_LAYOUT_HELP}"
        )
    return (
        f"{base}: cannot tell which images are normal and which are TB. Found {_listing(base)}. "
        f"If two of these folders hold the classes, pass label_map, e.g. "
        f"label_map={{'<normal folder>': 0, '<TB folder>': 1}}.\n{_LAYOUT_HELP}"
    )


def _listing(folder: Path) -> str:
    dirs = [d.name + "/" for d in _subdirs(folder)]
    files = [p for p in _visible(folder) if p.is_file()]
    shown = ", ".join(dirs) if dirs else "no sub-folders"
    return f"{shown} and {len(files)} files"


def _folder_key(name: str) -> str:
    return re.sub(r"[-\s]+", "_", name.strip().lower())


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_dir()]


def _visible(folder: Path) -> Iterator[Path]:
    """Entries of ``folder`` in name order, without hidden ones (.DS_Store, ._x.png, .git)."""
    return (p for p in sorted(folder.iterdir()) if not p.name.startswith("."))


def _relative(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()
