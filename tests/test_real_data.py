"""Real chest X-rays: the baseline learns TB from the TB Chest X-ray Database subset.

Reads ../shared/data/tb-cxr (see its README); skipped with the reason when it is absent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from db import RunStore
from pipeline.config import preset
from pipeline.training import train
from tests.conftest import shared_dataset


@pytest.mark.slow
def test_baseline_reaches_auc_090_on_real_xrays_at_128px():
    data = shared_dataset("tb-cxr")
    cfg = preset("baseline", **{"data.path": str(data), "data.image_size": 128})
    run = train.run(cfg, RunStore())
    assert run.status == "succeeded"
    assert run.auc >= 0.90, f"test AUC {run.auc:.3f} on tb-cxr"
    # Near-duplicate groups of the manifest never straddle the split.
    split = json.loads((Path(run.artifacts_dir) / "split.json").read_text())
    side = {p: name for name in ("train", "val", "test") for p in split[name]}
    groups: dict[str, set[str]] = {}
    with (data / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            if row["near_dup_group"] and row["file"] in side:
                groups.setdefault(row["near_dup_group"], set()).add(side[row["file"]])
    assert groups
    assert all(len(parts) == 1 for parts in groups.values())
