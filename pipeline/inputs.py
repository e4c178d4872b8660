"""tf.data input pipelines over the preprocessed uint8 cache.

Images stay uint8 until they reach the model (which rescales and augments inside its graph);
batches are gathered by index, so shuffling moves indices, not pixels.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights ``n / (2 n_c)``: both classes weigh the same in the loss."""
    labels = np.asarray(labels)
    n = len(labels)
    return {c: n / (2.0 * max(int((labels == c).sum()), 1)) for c in (0, 1)}


def make_dataset(
    arrays: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    batch_size: int,
    training: bool = False,
    oversample: bool = False,
    seed: int = 0,
) -> tf.data.Dataset:
    """Batches of (uint8 values as float32 (B, S, S, 1), float32 labels (B,)) for ``indices``.

    training: reshuffled every epoch. oversample (training only): each batch draws the two
    classes with equal probability, an epoch still being ``len(indices)`` images.
    """
    images = tf.constant(np.asarray(arrays[indices]))
    y = tf.constant(np.asarray(labels)[indices].astype(np.float32))
    n = len(indices)

    if training and oversample:
        by_class = [np.flatnonzero(np.asarray(labels)[indices] == c) for c in (0, 1)]
        streams = [
            tf.data.Dataset.from_tensor_slices(idx).repeat().shuffle(len(idx), seed=seed + c)
            for c, idx in enumerate(by_class)
        ]
        order = tf.data.Dataset.sample_from_datasets(streams, weights=[0.5, 0.5], seed=seed)
        order = order.take(n)
    else:
        order = tf.data.Dataset.range(n)
        if training:
            order = order.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def gather(idx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        batch = tf.cast(tf.gather(images, idx), tf.float32)[..., tf.newaxis]
        return batch, tf.gather(y, idx)

    return (
        order.batch(batch_size)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
