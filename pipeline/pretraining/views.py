"""Two random views of each X-ray, as VICReg compares them: what may change without changing
what the film shows.

Each view is a random crop (35-100 % of the area, aspect 3:4 to 4:3) resized to ``side`` pixels,
a small rotation (±10°), a gamma (0.7-1.4) and a contrast change (×0.7-1.3), a Gaussian blur
(half the views) and sensor-like noise. Chest X-rays differ between hospitals in exactly these:
collimation and patient position (crop, rotation), exposure and detector response (gamma,
contrast), resolution (blur) and dose (noise). Left out on purpose: colour jitter (X-rays are
grey), vertical flips (no film is upside down) and horizontal flips (the heart is on the left;
a flipped film is an anatomy the model should not learn is equivalent).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

MIN_AREA, MAX_ASPECT = 0.35, 4 / 3
MAX_ROTATION_DEG = 10.0
GAMMA = (0.7, 1.4)
CONTRAST = (0.7, 1.3)
MAX_NOISE = 8.0  # standard deviation on the 0-255 scale
BLUR_SHARE = 0.5


def _gaussian_kernel(sigma: float = 1.0, radius: int = 2) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float32)
    g = np.exp(-(x**2) / (2 * sigma**2))
    k = np.outer(g, g)
    return (k / k.sum())[:, :, np.newaxis, np.newaxis]


class Views:
    """``views(x)``: one random view of each image of a batch (B, S, S, 1), 0-255 floats, as
    (B, side, side, 1) 0-255 floats. Call it twice for the two views of VICReg."""

    def __init__(self, side: int, seed: int = 0) -> None:
        self.side = side
        self.rotate = keras.layers.RandomRotation(
            MAX_ROTATION_DEG / 360.0, fill_mode="constant", fill_value=0.0, seed=seed
        )
        self.kernel = tf.constant(_gaussian_kernel())

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        n = tf.shape(x)[0]
        x = tf.image.crop_and_resize(x, _crop_boxes(n), tf.range(n), (self.side, self.side))
        x = self.rotate(x, training=True)
        x = tf.clip_by_value(x, 0.0, 255.0) / 255.0
        gamma = tf.random.uniform((n, 1, 1, 1), *GAMMA)
        x = tf.pow(x + 1e-6, gamma)
        mean = tf.reduce_mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * tf.random.uniform((n, 1, 1, 1), *CONTRAST) + mean
        blurred = tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME")
        x = tf.where(tf.random.uniform((n, 1, 1, 1)) < BLUR_SHARE, blurred, x)
        noise = tf.random.normal(tf.shape(x)) * tf.random.uniform((n, 1, 1, 1), 0, MAX_NOISE)
        return tf.clip_by_value(x * 255.0 + noise, 0.0, 255.0)


def _crop_boxes(n: tf.Tensor) -> tf.Tensor:
    """Normalised (y1, x1, y2, x2) boxes: area share in [MIN_AREA, 1], aspect in [3/4, 4/3]."""
    area = tf.random.uniform((n,), MIN_AREA, 1.0)
    log_aspect = tf.random.uniform((n,), -math.log(MAX_ASPECT), math.log(MAX_ASPECT))
    aspect = tf.exp(log_aspect)
    h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    y1 = tf.random.uniform((n,)) * (1.0 - h)
    x1 = tf.random.uniform((n,)) * (1.0 - w)
    return tf.stack([y1, x1, y1 + h, x1 + w], axis=1)
