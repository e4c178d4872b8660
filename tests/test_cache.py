"""The preprocessing cache never keeps a partial file: not after an error, not after a kill."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import preset
from pipeline.data import scan
from pipeline.preprocessing import cache, transform


def test_an_interrupted_build_leaves_no_partial_file_and_the_next_build_succeeds(
    phantoms, tmp_path, monkeypatch
):
    index = scan.scan(phantoms)
    data = preset("smoke", **{"data.path": str(phantoms)}).data
    real = transform.preprocess_image
    calls = 0

    def stopped_half_way(img: np.ndarray, cfg) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 30:
            raise KeyboardInterrupt  # Ctrl-C, or a worker told to stop
        return real(img, cfg)

    monkeypatch.setattr(transform, "preprocess_image", stopped_half_way)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_arrays(index, data, cache=tmp_path)
    assert list((tmp_path / "arrays").iterdir()) == []

    monkeypatch.setattr(transform, "preprocess_image", real)
    arrays = cache.cached_arrays(index, data, cache=tmp_path)
    assert arrays.shape == (len(index.records), data.image_size, data.image_size)
    assert [p.suffix for p in (tmp_path / "arrays").iterdir()] == [".npy"]


def test_a_killed_builders_file_is_removed_but_a_live_builders_is_kept(tmp_path: Path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: no such process
    killed = folder / f"abc.tmp{dead_pid}.npy"
    live = folder / f"def.tmp{os.getpid()}.npy"
    recent = folder / f"ghi.tmp{dead_pid + 1}.npy"
    for f in (killed, live, recent):
        f.write_bytes(b"partial")
    old = time.time() - 2 * cache.ABANDONED_AFTER_S
    os.utime(killed, (old, old))
    os.utime(live, (old, old))

    assert cache.remove_abandoned(folder) == [killed]
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, recent.name])
