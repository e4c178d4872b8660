"""Site adaptation (python -m pipeline adapt): a run's batch-norm statistics re-estimated on a
site's unlabelled X-rays, stored as a new run that names its parent and the site, every weight
otherwise unchanged; then calibrated like any run."""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from db import RunStore
from pipeline.cli import main
from pipeline.config import preset
from pipeline.data import synth
from pipeline.runs.adapt import adapt
from pipeline.training import train


@pytest.fixture
def parent(phantoms):
    cfg = preset("smoke", **{"data.path": str(phantoms), "train.epochs": 2})
    return train.run(cfg, RunStore())


@pytest.fixture
def site(tmp_path) -> Path:
    """Another machine: the same kind of film, darker and flatter (its labels, in class folders,
    are for calibrating; adapting reads the images only)."""
    made = tmp_path / "made"
    synth.generate(made, 40, size=64, seed=9, tb_ratio=1.0)
    out = tmp_path / "site"
    for cls in ("Normal", "Tuberculosis"):
        (out / cls).mkdir(parents=True)
        for path in sorted((made / cls).glob("*.png")):
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
            cv2.imwrite(str(out / cls / path.name), (40 + 0.5 * img).astype(np.uint8))
    return out


def test_adapting_re_estimates_batch_norm_only_and_stores_a_run_naming_parent_and_site(
    parent, site
):
    adapted = adapt(RunStore(), parent.id, site)
    assert adapted.status == "succeeded"
    assert adapted.kind == "train"
    assert adapted.name == f"{parent.name}+adabn-site"
    note = adapted.metrics["adaptation"]
    assert (note["parent"], note["site"], note["n_images"]) == (parent.id, str(site), 40)
    assert adapted.threshold is not None  # chosen on its validation split, as any run's
    before = keras.saving.load_model(Path(parent.artifacts_dir) / "model.keras")
    after = keras.saving.load_model(Path(adapted.artifacts_dir) / "model.keras")
    np.testing.assert_array_equal(
        before.get_layer("block1_conv").get_weights()[0],
        after.get_layer("block1_conv").get_weights()[0],
    )
    old_mean = before.get_layer("block1_bn").moving_mean.numpy()
    new_mean = after.get_layer("block1_bn").moving_mean.numpy()
    assert not np.allclose(old_mean, new_mean)
    # The new statistics are the site's: the first block's conv outputs on the site's films.
    films = np.stack(
        [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(site.rglob("*.png"))]
    )
    upstream = keras.Model(after.inputs, after.get_layer("block1_bn").input)
    measured = np.asarray(upstream(films[..., None].astype(np.float32))).mean(axis=(0, 1, 2))
    # (The run's preprocessing moves a grey level here and there: close, not identical.)
    assert np.abs(new_mean - measured).max() < 0.05 * np.abs(old_mean - measured).max()


def test_an_adapted_run_is_calibrated_for_its_site_like_any_run(parent, site, capsys):
    adapted = adapt(RunStore(), parent.id, site)
    code = main(
        ["calibrate", adapted.id, "--data", str(site), "--site", "Clinic B", "--prevalence", "0.1"]
    )
    assert code == 0, capsys.readouterr().err
    (calibration,) = RunStore().calibrations(adapted.id)
    assert calibration.site == "Clinic B"
    assert RunStore().calibrations(parent.id) == []


def test_adapt_refuses_what_it_cannot_adapt_in_a_sentence(parent, tmp_path, capsys):
    assert main(["adapt", parent.id, "--data", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    few = tmp_path / "few"
    few.mkdir()
    cv2.imwrite(str(few / "one.png"), np.full((64, 64), 128, np.uint8))
    assert main(["adapt", parent.id, "--data", str(few)]) == 2
    assert "at least 16" in capsys.readouterr().err
