"""The array cache: a dataset preprocessed once per (dataset, size, ROI, enhancement), on disk
as uint8.

Every run of a sweep over one dataset and preprocessing reads the same cache file, memory-mapped,
so a second run decodes nothing. Each image goes through
:func:`pipeline.preprocessing.transform.preprocess_image`, the function that also serves single
images at prediction time, so serving applies exactly the preprocessing a run trained with.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline import paths
from pipeline.config import DataConfig
from pipeline.data import scan
from pipeline.imaging import decode
from pipeline.lungs import segmenter
from pipeline.preprocessing import intensity, transform
from pipeline.progress import bar as progress_bar

# Bump when the preprocessing code changes what it writes, so old caches are not reused.
CACHE_VERSION = 2


def array_key(fingerprint: str, data: DataConfig) -> str:
    """Cache key of the preprocessed array: data fingerprint + every parameter that shapes it."""
    params = {
        "v": CACHE_VERSION,
        "fingerprint": fingerprint,
        "size": data.image_size,
        "enhancement": data.enhancement,
        "clahe": [data.clahe_clip, data.clahe_tile] if data.enhancement == "clahe" else None,
        "roi": data.roi,
        "roi_margin": data.roi_margin if data.roi == "lung_crop" else None,
        # A retrained segmenter draws other lungs: its weights are part of the key.
        "segmenter": None if data.roi == "full" else segmenter.shipped_sha256(),
    }
    # Added only when used, so caches built before these steps existed stay valid.
    if data.artefacts != "keep":
        params["artefacts"] = data.artefacts
    if data.intensity != "none":
        params["intensity"] = data.intensity
        if data.intensity == "hist_match":
            params["reference"] = intensity.shipped_reference().round(3).tolist()
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]


def cached_arrays(
    index: scan.DatasetIndex,
    data: DataConfig,
    *,
    progress: bool = False,
    cache: Path | None = None,
) -> np.ndarray:
    """All images of ``index`` preprocessed: uint8 (N, S, S), memory-mapped read-only from disk.

    Built on the first call (decode → gray → lung ROI → resize → enhance, one thread per core)
    and written atomically, so an interrupted build never leaves a cache that later runs would
    trust.
    """
    folder = (cache or paths.cache_dir()) / "arrays"
    path = folder / f"{array_key(index.fingerprint, data)}.npy"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        remove_abandoned(folder)
        size = data.image_size
        with written_array(path, (len(index.records), size, size)) as out:
            if data.roi != "full":
                segmenter.shipped()  # load it once here, not in several threads at once

            def work(i: int) -> None:
                out[i] = transform.preprocess_image(decode.read_image(index.records[i].path), data)

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                jobs = pool.map(work, range(len(index.records)))
                total = len(index.records)
                for _ in progress_bar(jobs, total=total, desc="preprocess", disable=not progress):
                    pass
    return np.load(path, mmap_mode="r")


@contextmanager
def written_array(path: Path, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    """A uint8 ``.npy`` of ``shape``, memory-mapped for writing under a temporary name in the
    same folder, and renamed to ``path`` when the block ends; a block stopped or failed half-way
    (a bad file, Ctrl-C, a stopped worker) leaves no file that a later run would trust. The
    temporary name is the one :func:`remove_abandoned` cleans up after a killed process."""
    tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        yield out
        out.flush()
        del out
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# A partial cache file left by a process that was killed (SIGKILL, power loss) is removed by the
# next build once its writer is gone and it has not changed for this long; a build in progress on
# another machine sharing the cache keeps writing to its file.
ABANDONED_AFTER_S = 600.0


def remove_abandoned(folder: Path, older_than_s: float = ABANDONED_AFTER_S) -> list[Path]:
    """Delete ``*.tmp<pid>.npy`` files whose writer is not running here and that are stale."""
    removed = []
    for tmp in folder.glob("*.tmp*.npy"):
        pid = tmp.suffixes[-2].removeprefix(".tmp") if len(tmp.suffixes) >= 2 else ""
        alive = pid.isdigit() and paths.process_alive(int(pid))
        age = time.time() - tmp.stat().st_mtime
        if not alive and age > older_than_s:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
