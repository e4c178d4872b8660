"""The dataset folders on this machine: those found under the data roots, for pickers.

A data root is a folder that holds dataset folders. ``$TBXRAY_DATA_DIRS`` names them, several
separated by ``os.pathsep`` (``:`` on Linux and macOS, ``;`` on Windows); relative ones start at
the working directory. Unset, the roots are the project's ``data/`` and ``../shared/data`` beside
the checkout, where they exist; set but empty, there are none.

A folder is found by its layout alone (:func:`pipeline.data.layouts.layout`), so listing the roots
decodes no image; the full scan (:func:`pipeline.data.index_cache.load_index`) still decides whether
a run can train on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pipeline.data import layouts

ENV = "TBXRAY_DATA_DIRS"
PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_ROOTS = (PROJECT / "data", PROJECT.parent / "shared" / "data")


def data_roots() -> list[Path]:
    """The configured data roots, absolute; the defaults only where they exist.

    Roots named in ``$TBXRAY_DATA_DIRS`` are returned whether or not they exist, so that a
    caller can say that one is missing rather than list nothing from it.
    """
    value = os.environ.get(ENV)
    if value is None:
        return [root for root in DEFAULT_ROOTS if root.is_dir()]
    named = [Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip()]
    return [Path(os.path.abspath(root)) for root in named]


def find_datasets(roots: Iterable[Path]) -> list[Path]:
    """The dataset folders under ``roots``, root by root, each root's in name order.

    A root's sub-folders in a layout the scan accepts are listed; a root that holds none but is
    itself a dataset (``Normal/`` and ``Tuberculosis/`` directly in it) is listed instead.
    Missing roots, hidden folders and folders in no known layout (empty ones included) are
    left out.
    """
    found: dict[Path, None] = {}
    for root in roots:
        if not root.is_dir():
            continue
        inside = [d for d in sorted(root.iterdir()) if is_dataset(d)]
        if not inside and is_dataset(root):
            inside = [root]
        found.update(dict.fromkeys(d.resolve() for d in inside))
    return list(found)


def is_dataset(folder: Path) -> bool:
    """Whether ``folder`` is in a layout the scan accepts (hidden folders never are)."""
    if folder.name.startswith(".") or not folder.is_dir():
        return False
    try:
        layouts.layout(folder)
    except (layouts.DatasetLayoutError, OSError):
        return False
    return True
