"""Appearance augmentation: what another machine or hospital does to the same chest.

Training-time only, on batches of the tf.data pipeline (float32 grey levels 0..255, shape
(B, S, S, 1)); evaluation and serving never see it. Each transform is off unless its
``augment`` field says otherwise (see :class:`pipeline.config.AugmentConfig`):

- ``gamma``: a gamma curve per image, γ in [1/(1+g), 1+g] (exposure and detector response);
- ``contrast``: contrast scaled about the image's mean by [1-c, 1+c];
- ``blur``: a Gaussian blur of sigma up to ``blur`` pixels, on a random half of the batch;
- ``noise``: Gaussian noise of std up to ``noise`` of the range, per image (quantum noise);
- ``resample``: down-sampling by up to ``resample`` and back, on a random half (a 224-px copy);
- ``jpeg``: re-encoding at a JPEG quality from ``jpeg`` to 95, per image (lossy archives).

Randomness is stateless and seeded: batch ``k`` of a run draws from ``(seed, random stream k)``,
so a run is reproducible and two epochs differ.
"""

from __future__ import annotations

import math

import tensorflow as tf

from pipeline.config import AugmentConfig

_JPEG_MAX = 95


def active(aug: AugmentConfig) -> bool:
    """Whether any appearance transform is on."""
    return bool(aug.gamma or aug.contrast or aug.blur or aug.noise or aug.resample > 1 or aug.jpeg)


def _uniform(seed: tf.Tensor, k: int, shape: tuple, lo: float, hi: float) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed + k, minval=lo, maxval=hi)


def _gaussian_blur(x: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """``x`` blurred by a separable Gaussian of ``sigma`` (a scalar tensor), reflect-padded."""
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(t / tf.maximum(sigma, 1e-3)))
    k = k / tf.reduce_sum(k)
    padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    rows = tf.nn.conv2d(padded, tf.reshape(k, (-1, 1, 1, 1)), 1, "VALID")
    return tf.nn.conv2d(rows, tf.reshape(k, (1, -1, 1, 1)), 1, "VALID")


def _half(seed: tf.Tensor, k: int, n: tf.Tensor) -> tf.Tensor:
    return tf.reshape(_uniform(seed, k, (n,), 0.0, 1.0) < 0.5, (-1, 1, 1, 1))


def augment(x: tf.Tensor, aug: AugmentConfig, seed: tf.Tensor) -> tf.Tensor:
    """``x`` (float32 (B, S, S, 1), 0..255) with the configured transforms; ``seed`` is an
    int64 tensor of shape (2,)."""
    n = tf.shape(x)[0]
    per_image = (n, 1, 1, 1)
    x = x / 255.0
    if aug.gamma:
        log_g = math.log1p(aug.gamma)
        gamma = tf.exp(_uniform(seed, 1, per_image, -log_g, log_g))
        x = tf.pow(tf.clip_by_value(x, 1e-6, 1.0), gamma)
    if aug.contrast:
        factor = _uniform(seed, 2, per_image, 1.0 - aug.contrast, 1.0 + aug.contrast)
        mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        x = tf.clip_by_value(mean + (x - mean) * factor, 0.0, 1.0)
    if aug.blur:
        sigma = _uniform(seed, 3, (), 0.3, aug.blur)
        x = tf.where(_half(seed, 4, n), _gaussian_blur(x, sigma, math.ceil(2 * aug.blur)), x)
    if aug.resample > 1:
        size = tf.shape(x)[1:3]
        factor = _uniform(seed, 5, (), 1.0, aug.resample)
        small = tf.cast(tf.math.ceil(tf.cast(size, tf.float32) / factor), tf.int32)
        down = tf.image.resize(x, small, method="area")
        x = tf.where(_half(seed, 6, n), tf.image.resize(down, size, method="bilinear"), x)
    if aug.noise:
        std = _uniform(seed, 7, per_image, 0.0, aug.noise)
        x = x + std * tf.random.stateless_normal(tf.shape(x), seed=seed + 8)
        x = tf.clip_by_value(x, 0.0, 1.0)
    if aug.jpeg:
        seeds = tf.random.experimental.stateless_split(seed + 9, num=n)
        x = tf.map_fn(
            lambda pair: tf.image.stateless_random_jpeg_quality(
                pair[0], aug.jpeg, _JPEG_MAX, seed=pair[1]
            ),
            (x, seeds),
            fn_output_signature=tf.float32,
        )
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0
