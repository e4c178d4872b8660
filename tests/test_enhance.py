"""Enhancements change the histogram the way their names promise; PCA denoising behaves."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from pipeline import config
from pipeline.preprocessing.enhance import (
    ENHANCEMENTS,
    PCADenoiser,
    clahe,
    contrast_stretch,
    enhance,
    hist_eq,
)


def _smooth(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A blurred random field as float64 in 0..1: soft structure like a radiograph's."""
    field = cv2.GaussianBlur(rng.random((size, size)), (0, 0), sigmaX=size / 10)
    return (field - field.min()) / (field.max() - field.min())


def _low_contrast(rng: np.random.Generator) -> np.ndarray:
    """Smooth anatomy squeezed into grey levels 100..140, as in an under-exposed film."""
    return (100 + 40 * _smooth(rng, 128)).astype(np.uint8)


def _cdf_error(img: np.ndarray) -> float:
    """RMS distance between the image's cumulative histogram and the straight line 0..1."""
    cdf = np.cumsum(np.bincount(img.ravel(), minlength=256)) / img.size
    return float(np.sqrt(np.mean((cdf - np.arange(1, 257) / 256) ** 2)))


def _local_contrast(img: np.ndarray, block: int = 16) -> float:
    """Mean standard deviation of the block × block tiles: detail visible within a region."""
    h, w = img.shape
    tiles = img[: h // block * block, : w // block * block].astype(np.float64)
    tiles = tiles.reshape(h // block, block, w // block, block)
    return float(tiles.std(axis=(1, 3)).mean())


def test_contrast_stretch_spreads_a_low_contrast_image_over_the_full_range():
    img = _low_contrast(np.random.default_rng(0))
    out = contrast_stretch(img)
    assert out.dtype == np.uint8
    assert np.percentile(out, 2) <= 3
    assert np.percentile(out, 98) >= 252
    # Monotone: a brighter input pixel never comes out darker.
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)


def test_hist_eq_makes_the_cumulative_histogram_nearly_linear():
    # Squared field in 30..180: a narrow histogram bunched at the dark end.
    img = (30 + 150 * _smooth(np.random.default_rng(1), 128) ** 2).astype(np.uint8)
    before, after = _cdf_error(img), _cdf_error(hist_eq(img))
    assert before > 0.25
    assert after < 0.03


def test_clahe_raises_local_contrast_and_stays_uint8():
    rng = np.random.default_rng(2)
    y, x = np.mgrid[0:128, 0:128]
    # Faint rib-like stripes on a slow gradient: little contrast inside any region.
    texture = 110 + 30 * x / 127 + 3 * np.sin(y / 2.0) + rng.normal(0, 0.5, (128, 128))
    img = np.clip(texture, 0, 255).astype(np.uint8)
    out = clahe(img, clip=2.0, tile=8)
    assert out.dtype == np.uint8
    assert out.shape == img.shape
    assert _local_contrast(out) > 2 * _local_contrast(img)


@pytest.mark.parametrize("name", ENHANCEMENTS)
def test_constant_image_stays_constant_and_finite(name):
    img = np.full((32, 32), 77, dtype=np.uint8)
    out = enhance(img, name)
    assert out.dtype == np.uint8
    assert out.shape == img.shape
    assert len(np.unique(out)) == 1


def test_enhance_dispatches_and_lists_the_choices_for_an_unknown_name():
    img = _low_contrast(np.random.default_rng(3))
    np.testing.assert_array_equal(enhance(img, "none"), img)
    np.testing.assert_array_equal(enhance(img, "hist_eq"), hist_eq(img))
    np.testing.assert_array_equal(
        enhance(img, "clahe", clahe_clip=4.0, clahe_tile=4), clahe(img, clip=4.0, tile=4)
    )
    with pytest.raises(ValueError, match="choose one of none, contrast_stretch, hist_eq, clahe"):
        enhance(img, "sharpen")


def test_enhancements_match_what_the_run_config_accepts():
    assert set(ENHANCEMENTS) == set(config.ENHANCEMENTS)


def test_enhancements_refuse_float_images():
    with pytest.raises(ValueError, match="uint8"):
        hist_eq(np.zeros((8, 8), dtype=np.float32))


def _clean_and_noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n smooth 24×24 images built from 3 shared patterns, and copies with Gaussian noise."""
    rng = np.random.default_rng(seed)
    patterns = np.stack([_smooth(rng, 24) for _ in range(3)])
    weights = rng.dirichlet(np.ones(3), size=n)
    clean = 40 + 170 * np.einsum("nk,khw->nhw", weights, patterns)
    noisy = clean + rng.normal(0, 20, clean.shape)
    return _to_uint8(clean), _to_uint8(noisy)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def test_pca_denoiser_reduces_gaussian_noise():
    clean, noisy = _clean_and_noisy(80, seed=5)
    den = PCADenoiser().fit(noisy[:60], n_components=3, seed=0)
    # Held-out images: the projection learnt on the training images must carry over.
    out = den.transform(noisy[60:])
    assert out.dtype == np.uint8
    assert out.shape == noisy[60:].shape
    assert _rmse(out, clean[60:]) < 0.5 * _rmse(noisy[60:], clean[60:])


def test_pca_denoiser_save_load_and_pickle_give_the_same_projection(tmp_path):
    _, noisy = _clean_and_noisy(30, seed=6)
    den = PCADenoiser().fit(noisy, n_components=4)
    den.save(tmp_path / "pca.npz")
    loaded = PCADenoiser.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(loaded.transform(noisy), den.transform(noisy))
    unpickled = pickle.loads(pickle.dumps(den))
    np.testing.assert_array_equal(unpickled.transform(noisy), den.transform(noisy))


def test_pca_denoiser_refuses_bad_requests():
    _, noisy = _clean_and_noisy(10, seed=7)
    with pytest.raises(ValueError, match=r"min\(10, 576\) = 10, got 11"):
        PCADenoiser().fit(noisy, n_components=11)
    with pytest.raises(ValueError, match="not fitted"):
        PCADenoiser().transform(noisy)
    den = PCADenoiser().fit(noisy, n_components=2)
    with pytest.raises(ValueError, match="fitted on 24×24 images, got 12×12"):
        den.transform(noisy[:, :12, :12])
