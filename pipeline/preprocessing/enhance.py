"""Contrast enhancement and PCA denoising (numpy in, numpy out).

The enhancements are the ones the "enhancement" experiment suite compares: none, contrast
stretching, global histogram equalisation and CLAHE (contrast-limited adaptive histogram
equalisation, Zuiderveld 1994), all on H×W ``uint8`` gray images. They run once, when the
preprocessed cache is built. Normalisation (unit or z-score) is a layer of the model, so
serving cannot apply a different one (see pipeline.model).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from sklearn.decomposition import PCA

# Guards the z-score division for constant (e.g. blank) images, whose std is 0.


def contrast_stretch(img: np.ndarray, low_pct: float = 2.0, high_pct: float = 98.0) -> np.ndarray:
    """Map the ``low_pct``..``high_pct`` percentile range linearly onto 0..255, clipping outside.

    Percentiles rather than min..max, so a few burnt-in labels or collimator edges do not decide
    the stretch. H×W ``uint8`` in and out; an image whose percentiles coincide (e.g. constant)
    is returned unchanged, as there is no range to stretch.
    """
    _check_gray_uint8(img, "contrast_stretch")
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ValueError(
            f"contrast_stretch needs 0 <= low_pct < high_pct <= 100, got {low_pct}, {high_pct}"
        )
    lo, hi = np.percentile(img, [low_pct, high_pct])
    if hi <= lo:
        return img.copy()
    stretched = (img.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.rint(np.clip(stretched, 0.0, 255.0)).astype(np.uint8)


def hist_eq(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation: the cumulative histogram becomes close to a straight line.

    H×W ``uint8`` in and out (``cv2.equalizeHist``; a constant image stays constant).
    """
    _check_gray_uint8(img, "hist_eq")
    return cv2.equalizeHist(img)


def clahe(img: np.ndarray, clip: float = 2.0, tile: int = 8) -> np.ndarray:
    """CLAHE: histogram equalisation per tile of a ``tile`` × ``tile`` grid, contrast limited.

    ``clip`` caps each tile's histogram bins (as a multiple of the mean bin height) before
    equalising, so flat regions do not have their noise amplified. H×W ``uint8`` in and out.
    """
    _check_gray_uint8(img, "clahe")
    # A new CLAHE object per call: OpenCV's object holds state and is not safe to share
    # between the threads that build the preprocessing cache.
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tile, tile)).apply(img)


def _none(img: np.ndarray) -> np.ndarray:
    _check_gray_uint8(img, "enhance")
    return img


_ENHANCERS: dict[str, Callable[..., np.ndarray]] = {
    "none": _none,
    "contrast_stretch": contrast_stretch,
    "hist_eq": hist_eq,
    "clahe": clahe,
}
ENHANCEMENTS: tuple[str, ...] = tuple(_ENHANCERS)


def enhance(
    img: np.ndarray, name: str, *, clahe_clip: float = 2.0, clahe_tile: int = 8
) -> np.ndarray:
    """Apply the enhancement called ``name`` (one of :data:`ENHANCEMENTS`) to an H×W uint8 image.

    ``clahe_clip`` and ``clahe_tile`` are used only by ``"clahe"``. Returns H×W ``uint8``.
    """
    if name not in _ENHANCERS:
        raise ValueError(f"unknown enhancement {name!r}; choose one of {', '.join(ENHANCEMENTS)}")
    if name == "clahe":
        return clahe(img, clip=clahe_clip, tile=clahe_tile)
    return _ENHANCERS[name](img)


class PCADenoiser:
    """Denoise images by projecting them onto the top principal components of a training set.

    Fit on the training split only (the caller's job): fitting on validation or test images
    would leak them into preprocessing. A fitted denoiser is saved with the run (:meth:`save`)
    because serving must apply exactly the same projection. Usage::

        den = PCADenoiser().fit(train_images, n_components=64, seed=0)
        clean = den.transform(images)

    Memory: fitting holds the N×(H·W) training matrix as float32 (700 images of 224² ≈ 140 MB).
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None  # (H·W,) float32
        self.components_: np.ndarray | None = None  # (k, H·W) float32, orthonormal rows
        self.shape_: tuple[int, int] | None = None  # (H, W) of the images it was fitted on

    def fit(self, images: np.ndarray, n_components: int, seed: int = 0) -> PCADenoiser:
        """Fit on N×H×W ``uint8`` training images, keeping ``n_components`` components.

        Uses randomized SVD (seeded by ``seed``), which is fast when k is much smaller than
        N and H·W. Returns ``self``.
        """
        _check_batch_uint8(images, "PCADenoiser.fit")
        n, h, w = images.shape
        if not 1 <= n_components <= min(n, h * w):
            raise ValueError(
                f"n_components must be between 1 and min(number of images, pixels per image) = "
                f"min({n}, {h * w}) = {min(n, h * w)}, got {n_components}; use fewer components "
                "or more training images"
            )
        pca = PCA(n_components=n_components, svd_solver="randomized", random_state=seed)
        pca.fit(images.reshape(n, h * w).astype(np.float32))
        self.mean_ = pca.mean_.astype(np.float32)
        self.components_ = pca.components_.astype(np.float32)
        self.shape_ = (h, w)
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Project N×H×W ``uint8`` images onto the fitted components and reconstruct them.

        Returns N×H×W ``uint8`` (reconstruction rounded and clipped to 0..255). The images must
        have the size the denoiser was fitted on.
        """
        mean, components, shape = self._fitted()
        _check_batch_uint8(images, "PCADenoiser.transform")
        if images.shape[1:] != shape:
            raise ValueError(
                f"PCADenoiser was fitted on {shape[0]}×{shape[1]} images, got "
                f"{images.shape[1]}×{images.shape[2]}; resize them first"
            )
        flat = images.reshape(len(images), -1).astype(np.float32) - mean
        recon = (flat @ components.T) @ components + mean
        return np.rint(np.clip(recon, 0.0, 255.0)).astype(np.uint8).reshape(images.shape)

    def save(self, path: str | Path) -> None:
        """Write the fitted projection to ``path`` as a numpy ``.npz`` (mean, components, shape).

        Give ``path`` the ``.npz`` suffix: numpy appends it otherwise.
        """
        mean, components, shape = self._fitted()
        np.savez(path, mean=mean, components=components, shape=np.array(shape))

    @classmethod
    def load(cls, path: str | Path) -> PCADenoiser:
        """Read a denoiser written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            den = cls()
            den.mean_ = data["mean"]
            den.components_ = data["components"]
            h, w = (int(v) for v in data["shape"])
            den.shape_ = (h, w)
        return den

    def _fitted(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        if self.mean_ is None or self.components_ is None or self.shape_ is None:
            raise ValueError("this PCADenoiser is not fitted yet; call fit() or load() first")
        return self.mean_, self.components_, self.shape_


def _check_gray_uint8(img: np.ndarray, where: str) -> None:
    if img.dtype != np.uint8 or img.ndim != 2:
        raise ValueError(
            f"{where} expects an H×W uint8 gray image, got shape {img.shape} dtype {img.dtype}"
        )


def _check_batch_uint8(images: np.ndarray, where: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"{where} expects N×H×W uint8 gray images, got shape {images.shape} "
            f"dtype {images.dtype}"
        )
