"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): the pretraining objective, and why it is this one.

Two views of an image (:mod:`pipeline.pretraining.views`) go through the encoder and a small
projector; the loss pulls the two embeddings together (invariance), keeps every embedding
dimension's spread across the batch above 1 (variance) and decorrelates the dimensions
(covariance). Chosen for a 2-core CPU and small CNNs because it needs no negatives (SimCLR's
large batches), no momentum encoder (BYOL, MoCo: a second network to run) and no predictor or
stop-gradient whose balance a short run can tip into collapse (SimSiam): the variance term
prevents collapse outright, and its value says whether it is happening. A masked-image objective
needs a decoder and many more epochs than a CPU affords.

The projector is 3 × 256 units, not the paper's 3 × 8192: the encoder here gives 128 features,
and the covariance term's cost grows with the square of the width.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from pipeline.pretraining.views import Views

# The paper's weights of invariance, variance and covariance.
INVARIANCE, VARIANCE, COVARIANCE = 25.0, 25.0, 1.0
PROJECTOR = (256, 256, 256)


def terms(z1: tf.Tensor, z2: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(invariance, variance, covariance) of two batches of embeddings (B, D)."""
    invariance = tf.reduce_mean(tf.square(z1 - z2))

    def variance(z: tf.Tensor) -> tf.Tensor:
        std = tf.sqrt(tf.math.reduce_variance(z, axis=0) + 1e-4)
        return tf.reduce_mean(tf.nn.relu(1.0 - std))

    def covariance(z: tf.Tensor) -> tf.Tensor:
        n = tf.cast(tf.shape(z)[0], z.dtype)
        d = tf.cast(tf.shape(z)[1], z.dtype)
        z = z - tf.reduce_mean(z, axis=0)
        cov = tf.matmul(z, z, transpose_a=True) / (n - 1.0)
        off = cov - tf.linalg.diag(tf.linalg.diag_part(cov))
        return tf.reduce_sum(tf.square(off)) / d

    return (
        invariance,
        variance(z1) + variance(z2),
        covariance(z1) + covariance(z2),
    )


def projector(width: tuple[int, ...] = PROJECTOR) -> keras.Sequential:
    """Dense-BN-ReLU blocks, then a plain Dense: the embedding VICReg regularises."""
    stack: list[layers.Layer] = []
    for units in width[:-1]:
        stack += [layers.Dense(units), layers.BatchNormalization(), layers.ReLU()]
    stack.append(layers.Dense(width[-1]))
    return keras.Sequential(stack, name="projector")


class VICReg(keras.Model):
    """The encoder trained by VICReg; ``fit`` on batches of images (B, S, S, 1), 0-255."""

    def __init__(self, encoder: keras.Model, side: int, seed: int = 0) -> None:
        super().__init__(name="vicreg")
        self.encoder = encoder
        self.projector = projector()
        self.views = Views(side, seed)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "invariance", "variance", "covariance")
        }

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.projector(self.encoder(x, training=training), training=training)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self.trackers.values())

    def train_step(self, data: tf.Tensor) -> dict[str, tf.Tensor]:
        v1, v2 = self.views(data), self.views(data)
        with tf.GradientTape() as tape:
            inv, var, cov = terms(self(v1, training=True), self(v2, training=True))
            loss = INVARIANCE * inv + VARIANCE * var + COVARIANCE * cov
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        for name, value in zip(self.trackers, (loss, inv, var, cov), strict=True):
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}
