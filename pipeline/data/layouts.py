"""Dataset folder layouts: which files of a folder are images, and of which class.

Accepted layouts, detected automatically (:func:`find_files`, used by
:func:`pipeline.data.scan.scan`):

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
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.imaging import decode

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
class BadFile:
    """A file in a class folder that was skipped, and why (the :class:`ImageError` reason)."""

    path: str
    reason: str


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
    return find_files(base, None, one_class)[0]


def find_files(
    base: Path, label_map: dict[str, int] | None, one_class: bool = False
) -> tuple[str, list[tuple[Path, int]], list[BadFile]]:
    """Detect the layout; return its name, the (file, label) pairs to read and early bad files."""
    if label_map is not None:
        folders = _label_map_folders(base, label_map)
        return "label_map", _class_folder_files(folders), _nested_dirs_as_bad(folders)
    mask_set = _mask_set(base)
    if mask_set is not None:
        raise DatasetLayoutError(mask_set)
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


def _mask_set(base: Path) -> str | None:
    """Why ``base`` is not TB-labelled X-rays when it is an image / lung-mask set (its
    ``manifest.csv`` pairs an ``image`` with a ``mask`` and has no ``label``), or that set's
    images or masks folder, whose file names (``montgomery-MCUCXR_0001_0.png``) would
    otherwise read as NLM labels; else None."""
    for folder in (base, base.parent):
        manifest = folder / "manifest.csv"
        try:
            with manifest.open(newline="") as f:
                header = next(csv.reader(f), [])
        except OSError:
            continue
        pairs = {"image", "mask"} <= set(header) and "label" not in header
        if pairs and (folder == base or base.name in {"images", "masks"}):
            return (
                f"{folder} is a set of X-rays with lung masks, for the lung segmenter "
                f"(python -m pipeline lungs train --data {folder}), not X-rays labelled normal "
                "or TB; choose a folder of normal and TB images instead (e.g. "
                "../shared/data/tb-cxr)"
            )
    return None


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
        files = [p for p in _visible(folder) if _is_file(p)]
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
    pictures = [p for p in _visible(folder) if _is_file(p) and _is_picture(p)]
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
    files = [p for p in _visible(folder) if _is_file(p)]
    shown = ", ".join(dirs) if dirs else "no sub-folders"
    return f"{shown} and {len(files)} files"


def _folder_key(name: str) -> str:
    return re.sub(r"[-\s]+", "_", name.strip().lower())


def _is_file(path: Path) -> bool:
    """A file, or a link to one that is no longer there: the scan lists the broken link among
    the bad files instead of dropping it without a word."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in _visible(folder) if p.is_dir()]


def _visible(folder: Path) -> Iterator[Path]:
    """Entries of ``folder`` in name order, without hidden ones (.DS_Store, ._x.png, .git)."""
    return (p for p in sorted(folder.iterdir()) if not p.name.startswith("."))
