"""tf.data input pipelines over the preprocessed uint8 cache.

Images stay uint8 until a batch is made; the model rescales and augments inside its graph.
Batches are gathered by index, so shuffling moves indices, not pixels, and the pixels of a batch
are read from the cache only when the batch is made: a memory-mapped cache is never copied whole,
so memory holds the cache's pages plus a few batches, however large the dataset.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipeline.config import AugmentConfig
from pipeline.imaging import appearance as pipeline_appearance


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights ``n / (2 n_c)``: both classes weigh the same in the loss."""
    labels = np.asarray(labels)
    n = len(labels)
    return {c: n / (2.0 * max(int((labels == c).sum()), 1)) for c in (0, 1)}


def source_weights(labels: np.ndarray, sources: np.ndarray, imbalance: str) -> np.ndarray:
    """Per-image loss weights, (N,) float32, under which every source weighs the same.

    ``labels`` and ``sources`` (ints) describe the training images; ``imbalance`` is
    ``train.imbalance``, which the weights take over or work with:

    * ``none``: ``n / (k n_s)`` for k sources: each source's images sum to ``n / k``.
    * ``class_weight``: ``n / (2 k n_sc)``: every (source, class) cell sums to ``n / 2k``, so
      sources and classes both weigh the same (this replaces :func:`class_weights`).
    * ``oversample``: ``n_c / (k n_sc)``: within each class the sources weigh the same; the
      class-balanced sampling then gives each class half the draws, so the mean weight of a
      draw stays 1.
    """
    labels, sources = np.asarray(labels), np.asarray(sources)
    n, k = len(labels), len(np.unique(sources))
    weights = np.empty(n, dtype=np.float32)
    for s in np.unique(sources):
        in_source = sources == s
        if imbalance == "none":
            weights[in_source] = n / (k * in_source.sum())
            continue
        for c in (0, 1):
            cell = in_source & (labels == c)
            if imbalance == "class_weight":
                weights[cell] = n / (2 * k * max(int(cell.sum()), 1))
            else:
                weights[cell] = (labels == c).sum() / (k * max(int(cell.sum()), 1))
    return weights


def make_dataset(
    arrays: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    batch_size: int,
    training: bool = False,
    oversample: bool = False,
    seed: int = 0,
    appearance: AugmentConfig | None = None,
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of (uint8 values as float32 (B, S, S, 1), float32 labels (B,)) for ``indices``.

    ``arrays``: (N, S, S) images, typically the memory-mapped cache of
    :func:`pipeline.preprocessing.cache.cached_arrays`; only the rows of a batch are read, when the
    batch is made, and the pixels become float32 only then. training: reshuffled every epoch.
    oversample (training only): each batch draws the two classes with equal probability, an
    epoch still being ``len(indices)`` images. appearance (training only): the appearance
    transforms of :mod:`pipeline.imaging.appearance` that it turns on, applied per batch. weights:
    (N,) per-image loss weights, indexed like ``labels`` (e.g. :func:`source_weights`); then batches
    also carry float32 weights (B,).
    """
    indices = np.asarray(indices, dtype=np.int64)
    subset_labels = np.asarray(labels)[indices]
    y = tf.constant(subset_labels.astype(np.float32))
    w = None if weights is None else tf.constant(np.asarray(weights, np.float32)[indices])
    n = len(indices)

    if training and oversample:
        by_class = [np.flatnonzero(subset_labels == c) for c in (0, 1)]
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

    def read(positions: np.ndarray) -> np.ndarray:
        return arrays[indices[positions]]

    def gather(positions: tf.Tensor) -> tuple[tf.Tensor, ...]:
        batch = tf.numpy_function(read, [positions], tf.as_dtype(arrays.dtype), stateful=False)
        batch = tf.ensure_shape(batch, (None, *arrays.shape[1:]))
        x = tf.cast(batch, tf.float32)[..., tf.newaxis]
        if w is None:
            return x, tf.gather(y, positions)
        return x, tf.gather(y, positions), tf.gather(w, positions)

    batches = order.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    if training and appearance is not None and pipeline_appearance.active(appearance):
        # One random stream per batch, drawn afresh every epoch, from the run's seed.
        streams = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def vary(batch: tuple[tf.Tensor, ...], k: tf.Tensor) -> tuple:
            key = tf.stack([tf.constant(seed, tf.int64), k])
            # Labels (and weights, when given) pass through unchanged.
            return pipeline_appearance.augment(batch[0], appearance, key), *batch[1:]

        batches = tf.data.Dataset.zip(batches, streams).map(
            vary, num_parallel_calls=tf.data.AUTOTUNE
        )
    return batches.prefetch(tf.data.AUTOTUNE)
