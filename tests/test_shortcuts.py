"""Shortcut remedies: burned-in marks found and removed, grey levels standardised, appearance
varied in training only — each checked on what a user would see in the model's input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config import AugmentConfig, DataConfig, preset
from pipeline.data import synth
from pipeline.imaging import appearance
from pipeline.preprocessing import artefacts, cache, intensity, transform
from pipeline.training import inputs


@pytest.fixture
def phantom() -> synth.Phantom:
    """A 512-px phantom radiograph with its lung fields."""
    return synth.render_phantom(np.random.default_rng(3), 512, tb=False)


@pytest.fixture
def chest(phantom: synth.Phantom) -> np.ndarray:
    return phantom.image


def stamp(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A white anonymisation box at the bottom and a "PA ERECT" stamp in the top corner, and
    where they were put."""
    marked = image.copy()
    marked[440:480, 180:330] = 255
    cv2.putText(marked, "PA ERECT", (360, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    where = marked != image
    return marked, where


def test_a_drawn_box_and_a_text_stamp_are_found_and_inpainted_lungs_unchanged(phantom, chest):
    marked, where = stamp(chest)
    lungs = phantom.lung_mask
    assert not (where & lungs).any()  # the marks were put outside the lungs
    found = artefacts.find_artefacts(marked)
    assert found[where].mean() > 0.9  # the box and the letters
    assert not found[lungs].any()  # nothing in the lungs

    clean = artefacts.remove(marked, "inpaint")
    # The box and the letters are gone: filled with grey levels close to the film beneath.
    assert (clean[where] >= 250).mean() < 0.02
    assert np.abs(clean[where].astype(int) - chest[where]).mean() < 15
    assert np.array_equal(clean[lungs], chest[lungs])
    assert not artefacts.find_artefacts(chest)[lungs].any()


def test_crop_border_trims_black_bands_and_cuts_the_bottom_band(chest):
    banded = np.zeros((512, 600), np.uint8)
    banded[:, 44:556] = chest  # black bands either side, as on many Montgomery films
    cropped = artefacts.remove(banded, "crop_border")
    assert cropped.std(axis=0).min() > artefacts.FLAT_BAND  # no uniform column left
    h = cropped.shape[0]
    assert h == 512 - int(512 * artefacts.CROP["top"]) - int(512 * artefacts.CROP["bottom"])
    with pytest.raises(ValueError, match=r"data\.artefacts"):
        artefacts.remove(chest, "erase")


def test_inpainting_reaches_the_model_input_in_training_and_serving_alike(chest):
    marked, _ = stamp(chest)
    data = DataConfig(image_size=128, artefacts="inpaint")
    kept = transform.preprocess_image(marked, DataConfig(image_size=128))
    removed = transform.preprocess_image(marked, data)
    box = (slice(111, 119), slice(46, 82))  # the box at 128 px
    beneath = transform.preprocess_image(chest, DataConfig(image_size=128))
    assert kept[box].min() >= 250
    assert np.abs(removed[box].astype(int) - beneath[box]).mean() < 15
    assert cache.array_key("fp", data) != cache.array_key("fp", DataConfig())


def test_hist_match_maps_a_dark_image_onto_the_reference():
    # An underexposed film: grey levels crowded into 0..120.
    dark = (np.random.default_rng(0).beta(2, 5, (256, 256)) * 120).astype(np.uint8)
    matched = intensity.standardise(dark, "hist_match")
    reference = intensity.shipped_reference()
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        want = reference[round(q * (len(reference) - 1))]
        assert abs(np.quantile(matched, q) - want) <= 6, q
    # Monotone: what was brighter stays brighter.
    order = np.argsort(dark.ravel(), kind="stable")
    assert (np.diff(matched.ravel()[order].astype(int)) >= 0).all()


def test_percentile_standardisation_stretches_the_1st_to_99th_percentile(chest):
    dull = (60 + chest * 0.3).astype(np.uint8)
    out = intensity.standardise(dull, "percentile")
    assert np.percentile(out, 1) <= 3
    assert np.percentile(out, 99) >= 252


ON = {
    "gamma": 0.5,
    "contrast": 0.5,
    "blur": 2.0,
    "noise": 0.1,
    "resample": 3.0,
    "jpeg": 20,
}


@pytest.mark.parametrize("field", sorted(ON))
def test_each_appearance_augmentation_changes_training_batches_only(field):
    rng = np.random.default_rng(0)
    size = 64
    base = synth.render(rng, size, tb=False)[0]
    arrays = np.stack([np.roll(base, i, axis=1) for i in range(16)])
    labels = np.arange(16) % 2
    every = np.arange(16)
    aug = AugmentConfig(**{field: ON[field]})
    assert appearance.active(aug)

    def first(training: bool) -> np.ndarray:
        ds = inputs.make_dataset(
            arrays, labels, every, batch_size=16, training=training, appearance=aug
        )
        return next(iter(ds))[0].numpy()[..., 0]

    # Off at inference: the raw pixels, the same twice.
    assert np.array_equal(first(False), arrays.astype(np.float32))
    assert np.array_equal(first(False), first(False))
    trained = first(True)
    order = [int(np.argmin(np.abs(arrays.astype(float) - t).sum(axis=(1, 2)))) for t in trained]
    changed = np.abs(trained - arrays[order].astype(np.float32)).mean(axis=(1, 2))
    assert changed.max() > 1.0  # grey levels moved by more than one level on average
    assert trained.min() >= 0.0
    assert trained.max() <= 255.0


def test_appearance_fields_are_validated_and_off_by_default():
    assert not appearance.active(preset("baseline").augment)
    with pytest.raises(ValueError, match="JPEG quality below 10"):
        AugmentConfig(jpeg=5)
    with pytest.raises(ValueError, match="resample"):
        AugmentConfig(resample=0.5)
