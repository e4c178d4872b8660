"""Why the model said TB: Grad-CAM, LIME and SHAP heatmaps of one image, as arrays.

Every method takes a trained model and the *prepared* model input — the uint8 S×S image that
:meth:`pipeline.serving.predictor.Predictor.prepare` returns (resized, enhanced and PCA-denoised
exactly as in training; rescaling and normalisation happen inside the model). So an explanation
always sees the image the way the run's model sees it. Computing is separate from drawing:
:func:`overlay` turns any heatmap into an RGB picture.

- :func:`gradcam` — gradient of the TB logit with respect to the last conv block's activation
  (layer ``last_conv``), channel-weighted and upsampled to the image (Selvaraju et al., 2017).
- :func:`lime` — SLIC superpixels of the X-ray; random subsets of them are replaced by their mean
  grey, the model scores every variant in large batches, and a weighted ridge model
  (``lime.lime_base.LimeBase``) gives each superpixel a signed weight (Ribeiro et al., 2016).
- :func:`shap` — ``shap``'s Partition explainer with a blurring image masker: Owen values over a
  hierarchy of image regions, signed (positive pushes towards TB).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.model import LAST_CONV

METHODS: tuple[str, ...] = ("gradcam", "lime", "shap")
Progress = Callable[[float], None]
# Called before every batch of perturbed images; the public app waits there while predictions
# are running, so that explanations never hold the CPU a prediction needs.
Pause = Callable[[], None]


class ExplainError(ValueError):
    """The model or image cannot be explained as asked; the message says why and what to do."""


@dataclass(frozen=True)
class LimeResult:
    """LIME's answer: a [0, 1] heatmap of the pro-TB superpixels, and what it was built from."""

    heatmap: np.ndarray  # float32 (S, S): positive superpixel weight, scaled to [0, 1]
    weights: np.ndarray  # float64 (n_segments,): signed weight per superpixel
    segments: np.ndarray  # int32 (S, S): superpixel label of every pixel
    mask: np.ndarray  # bool (S, S): the top-k positive superpixels
    score: float  # R² of the local linear model on the perturbed samples


@dataclass(frozen=True)
class Explanation:
    """One method's heatmap of one image and how long it took."""

    method: str
    heatmap: np.ndarray
    seconds: float
    signed: bool = False
    mask: np.ndarray | None = None

    def overlay(self, image: np.ndarray, alpha: float = 0.45) -> np.ndarray:
        """The heatmap drawn over ``image`` (RGB uint8)."""
        return overlay(image, self.heatmap, alpha=alpha, signed=self.signed)


def _check_image(model: Any, image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    side = model.input_shape[1]
    if image.ndim != 2 or image.shape != (side, side):
        raise ExplainError(
            f"expected the prepared {side}×{side} grayscale model input, got an array of shape "
            f"{image.shape}; pass the image through Predictor.prepare first"
        )
    return image


_SCORERS: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def batch_scores(model: Any, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """P(TB) for a float or uint8 (N, S, S) stack, in batches, through a compiled graph.

    Every batch is padded to ``batch_size`` so that the graph is traced once per model.
    """
    scorer = _SCORERS.get(model)
    if scorer is None:
        import tensorflow as tf

        scorer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        _SCORERS[model] = scorer
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start : start + batch_size], dtype=np.float32)
        n = len(chunk)
        if n < batch_size and len(images) > batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
        out.append(np.asarray(scorer(chunk[..., np.newaxis])).reshape(-1)[:n])
    return np.concatenate(out).astype(np.float64)


# Grad-CAM


_GRADCAM_FUNCTIONS: weakref.WeakKeyDictionary[Any, Callable[..., Any]] = weakref.WeakKeyDictionary()


def _gradcam_function(model: Any) -> Callable[..., Any]:
    """A compiled function image -> (conv activation weighted by gradient, P(TB)), per model."""
    cached = _GRADCAM_FUNCTIONS.get(model)
    if cached is not None:
        return cached
    import keras
    import tensorflow as tf

    try:
        conv = model.get_layer(LAST_CONV)
    except ValueError:
        conv = None
    if conv is None or len(conv.output.shape) != 4:
        raise ExplainError(
            f"model {model.name!r} has no convolutional layer named {LAST_CONV!r}, so Grad-CAM "
            "has no feature map to explain; explain a run trained by this project's CNN"
        )
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense) or head.units != 1:
        raise ExplainError(
            f"model {model.name!r} does not end in one sigmoid unit; Grad-CAM needs the TB logit"
        )
    # The logit is computed from the head's input and weights: the gradient of the sigmoid
    # output vanishes for confident predictions, the logit's does not.
    features = keras.Model(model.inputs, [conv.output, head.input])

    @tf.function(reduce_retracing=True)
    def run(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            fmap, hidden = features(x, training=False)
            tape.watch(fmap)
            logit = tf.matmul(hidden, head.kernel) + head.bias
        grads = tape.gradient(logit, fmap)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))
        return cam, tf.sigmoid(logit)

    _GRADCAM_FUNCTIONS[model] = run
    return run


def gradcam(model: Any, image: np.ndarray) -> np.ndarray:
    """Grad-CAM heatmap, float32 (S, S) in [0, 1] (all zeros when nothing argues for TB)."""
    image = _check_image(model, image)
    run = _gradcam_function(model)
    cam, _ = run(image[np.newaxis, ..., np.newaxis].astype(np.float32))
    cam = np.asarray(cam)[0]
    side = image.shape[0]
    heat = cv2.resize(cam, (side, side), interpolation=cv2.INTER_LINEAR)
    return _unit(heat)


def _unit(heat: np.ndarray) -> np.ndarray:
    """Scale a non-negative map to [0, 1] by its maximum (zeros stay zeros)."""
    heat = np.maximum(np.asarray(heat, dtype=np.float32), 0)
    peak = float(heat.max()) if heat.size else 0.0
    return heat / peak if peak > 0 else np.zeros_like(heat)


# LIME


def superpixels(image: np.ndarray, n_segments: int = 60) -> np.ndarray:
    """SLIC superpixels of a grayscale X-ray, labels 0..n-1 (int32 S×S).

    SLIC on intensity with moderate compactness follows rib, heart and lung borders while
    keeping regions of similar size; it takes a few ms at 224 px where quickshift takes ~1 s.
    """
    from skimage.segmentation import slic

    segments = slic(
        image.astype(np.float32) / 255.0,
        n_segments=n_segments,
        compactness=0.1,
        sigma=1.0,
        channel_axis=None,
        start_label=0,
        enforce_connectivity=True,
    )
    _, labels = np.unique(segments, return_inverse=True)
    return labels.reshape(segments.shape).astype(np.int32)


def lime(
    model: Any,
    image: np.ndarray,
    num_samples: int = 1000,
    top_k: int = 5,
    seed: int = 0,
    n_segments: int = 60,
    batch_size: int = 128,
    progress: Progress | None = None,
    pause: Pause | None = None,
) -> LimeResult:
    """LIME over superpixels; the model answers ``[1 − p, p]`` and the TB column is explained.

    The neighbourhood is built vectorised (a row of on/off flags indexes each variant's pixels
    at once) instead of ``lime_image``'s per-superpixel Python loop; the explanation model is
    lime's own ``LimeBase`` with lime_image's kernel (cosine distance, width 0.25).
    """
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    image = _check_image(model, image)
    if num_samples < 10:
        raise ExplainError(f"LIME needs at least 10 samples, got {num_samples}")
    segments = superpixels(image, n_segments)
    n = int(segments.max()) + 1
    means = np.bincount(segments.ravel(), weights=image.ravel(), minlength=n) / np.maximum(
        np.bincount(segments.ravel(), minlength=n), 1
    )
    fudged = means[segments].astype(np.float32)
    rng = np.random.default_rng(seed)
    flags = rng.integers(0, 2, size=(num_samples, n)).astype(bool)
    flags[0] = True  # the unperturbed image itself

    scores = np.empty(num_samples)
    original = image.astype(np.float32)
    for start in range(0, num_samples, batch_size):
        on = flags[start : start + batch_size][:, segments]  # (B, S, S)
        variants = np.where(on, original, fudged)
        if pause is not None:
            pause()
        scores[start : start + len(on)] = batch_scores(model, variants, batch_size)
        if progress is not None:
            progress(min(1.0, (start + len(on)) / num_samples))
    labels = np.stack([1.0 - scores, scores], axis=1)

    distances = pairwise_distances(flags, flags[:1], metric="cosine").ravel()
    width = 0.25
    base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / width**2)), random_state=seed)
    _, ranked, fit_score, _ = base.explain_instance_with_data(
        flags.astype(float), labels, distances, 1, num_features=n, feature_selection="none"
    )
    weights = np.zeros(n)
    for segment, weight in ranked:
        weights[segment] = weight
    positive = np.maximum(weights, 0)
    heatmap = _unit(positive[segments])
    order = [s for s in np.argsort(-weights) if weights[s] > 0][:top_k]
    mask = np.isin(segments, order)
    return LimeResult(
        heatmap=heatmap, weights=weights, segments=segments, mask=mask, score=float(fit_score)
    )


# SHAP


def shap(
    model: Any,
    image: np.ndarray,
    max_evals: int = 500,
    blur: int = 32,
    batch_size: int = 128,
    progress: Progress | None = None,
    pause: Pause | None = None,
) -> np.ndarray:
    """Partition SHAP values of P(TB), float32 (S, S), signed: > 0 pushes towards TB.

    Hidden regions are replaced by a ``blur``-pixel box blur of the image (shap's
    ``Image("blur(k,k)")`` masker), which removes local detail such as a lesion but keeps the
    chest's overall brightness, so masking does not itself look like an anomaly.
    """
    import shap as shap_lib

    image = _check_image(model, image)
    if max_evals < 10:
        raise ExplainError(f"SHAP needs at least 10 evaluations, got {max_evals}")
    side = image.shape[0]
    done = 0

    def score(x: np.ndarray) -> np.ndarray:
        nonlocal done
        if pause is not None:
            pause()
        out = batch_scores(model, x[..., 0], batch_size)
        done += len(x)
        if progress is not None:
            progress(min(1.0, done / max_evals))
        return out

    masker = shap_lib.maskers.Image(f"blur({blur},{blur})", (side, side, 1))
    explainer = shap_lib.Explainer(score, masker, algorithm="partition")
    x = image.astype(np.float32)[np.newaxis, ..., np.newaxis]
    values = explainer(x, max_evals=max_evals, batch_size=batch_size, silent=True).values
    return np.asarray(values, dtype=np.float32).reshape(side, side)


# Drawing


# One colour scale for every method, so that red means the same on every heatmap.
LEGEND = (
    "red: pushes towards TB · blue: pushes away from TB · the stronger the colour, the "
    "stronger the effect (Grad-CAM shows only what pushes towards TB)"
)
TOWARDS, AWAY = (230.0, 30.0, 30.0), (30.0, 80.0, 230.0)


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    alpha: float = 0.45,
    signed: bool = False,
) -> np.ndarray:
    """``heat`` drawn over the grayscale ``image``: RGB uint8 at the image's size.

    Every method uses the same signed scale (:data:`LEGEND`): red where the region pushes towards
    TB, blue where it pushes away, blended in proportion to the strength. Unsigned maps
    (Grad-CAM, [0, 1]) are all "towards"; signed maps (LIME weights, SHAP values) are scaled by
    their largest magnitude.
    """
    gray = np.asarray(image)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape != gray.shape:
        heat = cv2.resize(heat, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    base = np.repeat(gray[..., np.newaxis], 3, axis=2).astype(np.float32)
    if signed:
        scale = float(np.abs(heat).max()) or 1.0
        h = np.clip(heat / scale, -1, 1)
    else:
        h = np.clip(heat, 0, 1)
    color = np.where(h[..., np.newaxis] >= 0, TOWARDS, AWAY).astype(np.float32)
    weight = alpha * np.abs(h)[..., np.newaxis]
    return np.clip(base * (1 - weight) + color * weight, 0, 255).astype(np.uint8)


def explain(model: Any, image: np.ndarray, method: str, **kwargs: Any) -> Explanation:
    """Run one method (``gradcam``, ``lime`` or ``shap``) and time it."""
    if method not in METHODS:
        raise ExplainError(f"unknown explanation method {method!r}; choose one of {METHODS}")
    start = time.perf_counter()
    mask = None
    if method == "gradcam":
        heat = gradcam(model, image, **kwargs)
    elif method == "lime":
        result = lime(model, image, **kwargs)
        # Signed, like SHAP: superpixels that push away from TB are drawn too (in blue).
        heat, mask = result.weights[result.segments].astype(np.float32), result.mask
    else:
        heat = shap(model, image, **kwargs)
    return Explanation(
        method=method,
        heatmap=heat,
        seconds=time.perf_counter() - start,
        signed=method != "gradcam",
        mask=mask,
    )
