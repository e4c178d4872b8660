"""Can the model assess this image at all? An out-of-distribution check for uploads.

A classifier scores anything it is given: a cat photo gets a TB probability too. Before a
verdict is shown, an upload passes two checks, and fails with a reason a user can act on:

1. :func:`image_checks` — cheap tests on the decoded image that need no model: a colour picture,
   a blank (near-uniform) image, random noise, or a shape far from a radiograph's.
2. :class:`FeatureDistance` — the Mahalanobis distance of the model's penultimate features (the
   global-average-pooled last conv block, layer ``gap``) to those of the run's training images,
   with Ledoit-Wolf shrinkage of the covariance. The threshold is the 99th percentile of
   *held-out* distances (5-fold cross-fitting over the training and validation images), so about
   99 % of X-rays like the training images pass and anything the model has never seen the like
   of lands far away (Lee et al., "A Simple Unified Framework for Detecting Out-of-Distribution
   Samples and Adversarial Attacks", NeurIPS 2018, without the input perturbation).

The reference is fitted once per run at training time and saved as ``ood.npz`` beside the model
(:func:`save_reference`); a run trained before that can be fitted later from its ``split.json``
while its dataset still exists (:func:`fit_from_split`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from pipeline.data.splits import Split

FEATURE_LAYER = "gap"
OOD_FILE = "ood.npz"
QUANTILE = 0.99
# Held-out distances need a few images per fold (5 folds).
FOLDS = 5
MIN_IMAGES = 2 * FOLDS

# Cheap checks. Each limit leaves a wide margin to what the 1,331 real radiographs of tb-cxr and
# nlm-224 measure (BENCHMARKS.md, "Serving"), so none of them is refused by these.
# Hasler & Süsstrunk colourfulness: any gray image scores 0 (also when saved as RGB); 15 is
# "slightly colourful" on their scale, and photos of people, food or nature score 30-100.
MAX_COLOURFULNESS = 15.0
# Standard deviation of the gray levels (0-255) at 128 px: the real radiographs have 17 or more.
MIN_CONTRAST = 8.0
# Correlation of horizontally and vertically adjacent pixels at 128 px: anatomy is smooth (the
# real radiographs: 0.90 and more), noise is not (about 0 for white noise).
MIN_NEIGHBOUR_CORRELATION = 0.5
# Longer side over shorter side: chest radiographs are 1 : 1 to about 1 : 1.3.
MAX_ASPECT = 2.0
_CHECK_SIDE = 128


def image_checks(
    gray: np.ndarray, colour: float = 0.0, size: tuple[int, int] | None = None
) -> str | None:
    """Why ``gray`` (H×W uint8, as decoded) cannot be a chest X-ray, or None if it may be one.

    ``colour`` is the original file's colourfulness
    (:func:`pipeline.imaging.decode.colourfulness`); ``size`` its (width, height) before
    decoding reduced it, which the reasons quote. The reason names the problem and what to
    upload instead.
    """
    width, height = size or gray.shape[::-1]
    fix = "upload a frontal chest radiograph (PNG, JPEG or DICOM)"
    if colour > MAX_COLOURFULNESS:
        return (
            f"this is a colour picture (colourfulness {colour:.0f}); X-rays are grayscale — {fix}"
        )
    if max(height, width) > MAX_ASPECT * min(height, width):
        return (
            f"the image is {width}×{height} pixels, far wider or taller than a chest X-ray "
            f"(at most {MAX_ASPECT:g} : 1) — {fix}, not a crop or a scan of a page"
        )
    small = cv2.resize(gray, (_CHECK_SIDE, _CHECK_SIDE), interpolation=cv2.INTER_AREA).astype(
        np.float64
    )
    contrast = float(small.std())
    if contrast < MIN_CONTRAST:
        return (
            f"the image is almost uniform (gray-level spread {contrast:.1f} of 255), i.e. blank "
            f"or completely over- or under-exposed — {fix}"
        )
    correlation = _neighbour_correlation(small)
    if correlation < MIN_NEIGHBOUR_CORRELATION:
        return (
            f"the image looks like random noise (adjacent pixels correlate at {correlation:.2f}; "
            f"radiographs above 0.9) — {fix}"
        )
    return None


def _neighbour_correlation(x: np.ndarray) -> float:
    """Mean Pearson correlation of horizontally and vertically adjacent pixels."""
    out = []
    for a, b in ((x[:, :-1], x[:, 1:]), (x[:-1, :], x[1:, :])):
        a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
        denom = np.sqrt((a * a).sum() * (b * b).sum())
        out.append(float((a * b).sum() / denom) if denom > 0 else 1.0)
    return float(np.mean(out))


@dataclass(frozen=True)
class FeatureDistance:
    """Mahalanobis distance to the training images' penultimate features, and its threshold.

    ``mean`` (D,) and ``precision`` (D, D, the inverse of the Ledoit-Wolf covariance) describe
    the reference images; ``threshold`` is the ``quantile`` of their held-out distances.
    """

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    n_images: int

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distances (N,) of features (N, D) to the reference."""
        d = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", d, self.precision, d), 0.0))

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            mean=self.mean,
            precision=self.precision,
            meta=json.dumps(
                {"threshold": self.threshold, "quantile": self.quantile, "n_images": self.n_images}
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> FeatureDistance:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            return cls(mean=f["mean"], precision=f["precision"], **meta)


def fit_distance(
    features: np.ndarray, quantile: float = QUANTILE, folds: int = FOLDS, seed: int = 0
) -> FeatureDistance:
    """Fit the reference on features (N, D) of in-distribution images.

    The threshold comes from held-out distances: each of ``folds`` parts is measured against a
    reference fitted on the others, so the threshold is not set by images measuring themselves
    (which would make it too tight). The returned reference is fitted on all N.
    """
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2 * folds:
        raise ValueError(
            f"fitting the OOD reference needs at least {2 * folds} images, got {len(x)}"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    held_out = np.empty(len(x))
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        lw = LedoitWolf().fit(x[rest])
        d = x[part] - lw.location_
        held_out[part] = np.sqrt(np.einsum("nd,de,ne->n", d, lw.precision_, d))
    lw = LedoitWolf().fit(x)
    return FeatureDistance(
        mean=lw.location_,
        precision=lw.precision_,
        threshold=float(np.quantile(held_out, quantile)),
        quantile=quantile,
        n_images=len(x),
    )


def feature_model(model: Any) -> Any:
    """A Keras model: prepared image batch (N, S, S, 1) -> [penultimate features (N, D), P(TB)]."""
    import keras

    try:
        layer = model.get_layer(FEATURE_LAYER)
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer named {FEATURE_LAYER!r}; the OOD check needs "
            "a run trained by this project's CNN"
        ) from None
    return keras.Model(model.input, [layer.output, model.output])


def features(model: Any, arrays: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Penultimate features (N, D) of prepared uint8 images (N, S, S)."""
    head = feature_model(model)
    out = []
    for start in range(0, len(arrays), batch_size):
        batch = np.asarray(arrays[start : start + batch_size], dtype=np.float32)[..., np.newaxis]
        out.append(np.asarray(head(batch, training=False)[0]))
    return np.concatenate(out).astype(np.float64)


def save_reference(
    folder: str | Path, model: Any, arrays: np.ndarray, split: Split, seed: int = 0
) -> FeatureDistance | None:
    """Fit a run's reference on its training and validation images (not test) into ``folder``.

    Writes ``folder/ood.npz`` and returns the reference; with fewer than ``MIN_IMAGES`` such
    images (a toy dataset) writes nothing and returns None: the app then relies on the image
    checks alone and says so.
    """
    rows = np.sort(np.concatenate([split.train, split.val]))
    if len(rows) < MIN_IMAGES:
        return None
    ref = fit_distance(features(model, np.asarray(arrays[rows])), seed=seed)
    ref.save(Path(folder) / OOD_FILE)
    return ref


def fit_from_split(
    model: Any, run_dir: str | Path, prepare: Any, data_root: str | Path
) -> FeatureDistance:
    """Fit the reference of an older run from its ``split.json`` and its dataset folder.

    ``prepare`` maps a decoded grayscale image to the model input (``Predictor.prepare``).
    Raises FileNotFoundError when the dataset or one of its images is gone.
    """
    from pipeline.imaging import decode

    root = Path(data_root)
    split = json.loads((Path(run_dir) / "split.json").read_text())
    paths = [root / rel for rel in split["train"] + split["val"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the run's {len(paths)} training images are gone "
            f"(e.g. {missing[0]}); the OOD reference cannot be rebuilt"
        )
    arrays = np.stack([prepare(decode.read_image(p)) for p in paths])
    return fit_distance(features(model, arrays), seed=int(split.get("seed", 0)))
