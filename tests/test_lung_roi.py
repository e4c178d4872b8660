"""The classifier's lung ROI (data.roi): the crop, the cache key, and training == serving."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from db import RunStore
from pipeline.cli import main
from pipeline.config import ConfigError, DataConfig, preset
from pipeline.data import index_cache
from pipeline.imaging import decode
from pipeline.lungs.roi import apply_roi
from pipeline.preprocessing import cache
from pipeline.serving.predictor import Predictor


def test_lung_crop_cuts_the_lungs_box_plus_margin_from_the_full_image():
    image = np.arange(200 * 100, dtype=np.uint32).reshape(200, 100) % 251
    image = image.astype(np.uint8)
    lungs = np.zeros((200, 100), bool)
    lungs[50:150, 20:80] = True  # a 100 × 60 box
    crop, mask = apply_roi(image, lungs, "lung_crop", 32, margin=0.1)
    # margin 0.1: 10 rows and 6 columns more on each side -> rows 40:160, columns 14:86
    assert np.array_equal(crop, decode.resize(image[40:160, 14:86], 32))
    assert mask[16, 16]
    assert not mask[0, 0]
    full, full_mask = apply_roi(image, lungs, "full", 32, margin=0.1)
    assert np.array_equal(full, decode.resize(image, 32))
    assert full_mask.mean() == pytest.approx(0.3, abs=0.02)
    with pytest.raises(ValueError, match=r"data\.roi"):
        apply_roi(image, lungs, "lungs", 32, 0.1)


def test_roi_is_validated_and_old_configs_default_to_the_full_image():
    with pytest.raises(ConfigError, match=r"data\.roi"):
        preset("smoke", **{"data.roi": "heart"})
    assert DataConfig.model_validate({"image_size": 64}).roi == "full"


def test_the_roi_is_part_of_the_cache_key_and_the_cache_is_reused(phantoms, monkeypatch):
    index = index_cache.load_index(phantoms)
    full = DataConfig(path=str(phantoms), image_size=64)
    crop = DataConfig(path=str(phantoms), image_size=64, roi="lung_crop")
    keys = {
        cache.array_key(index.fingerprint, d)
        for d in (
            full,
            crop,
            crop.model_copy(update={"roi_margin": 0.2}),
            DataConfig(roi="lung_mask", image_size=64),
        )
    }
    assert len(keys) == 4
    first = np.array(cache.cached_arrays(index, crop))
    assert not np.array_equal(first, cache.cached_arrays(index, full))

    def no_decoding(*args, **kwargs):
        raise AssertionError("a warm cache decoded an image")

    monkeypatch.setattr(decode, "read_image", no_decoding)
    assert np.array_equal(cache.cached_arrays(index, crop), first)


@pytest.mark.parametrize("roi", ["lung_crop", "lung_mask"])
def test_a_served_prediction_equals_the_evaluation_time_score(phantoms, capsys, roi):
    assert (
        main(["train", "--preset", "smoke", "--data", str(phantoms), "--set", f"data.roi={roi}"])
        == 0
    )
    capsys.readouterr()
    (run,) = RunStore().list_runs()
    folder = Path(run.artifacts_dir)
    assert json.loads((folder / "config.json").read_text())["data"]["roi"] == roi
    with (folder / "predictions.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:3]
    predictor = Predictor(folder)
    for row in rows:
        served = predictor.predict(phantoms / row["path"], with_lungs=True)
        assert served.probability == pytest.approx(float(row["score"]), abs=1e-5)
        if roi == "lung_mask":
            assert np.all(served.image[~served.lungs] == 0)
            assert served.image[served.lungs].std() > 0
