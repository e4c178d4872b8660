"""The configurable CNN: ``build_model(cfg)`` builds and compiles a Keras model, nothing else.

The model takes the cached preprocessing output as it is — uint8 values 0..255 in a float tensor of
shape (batch, S, S, 1) — and does the rest inside the graph: rescaling, training-time augmentation
(Keras preprocessing layers, inactive at inference), per-image z-scoring if configured, and the
gray-to-3-channel copy. Serving therefore cannot apply a different normalisation than training.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from pipeline import encoder
from pipeline.config import RunConfig

# Grad-CAM reads this layer: the activation of the last conv block.
LAST_CONV = "last_conv"
OUTPUT = "tb_probability"


@keras.saving.register_keras_serializable(package="tbxray")
class PerImageStandardization(layers.Layer):
    """Z-score each image over its pixels and channels (mean 0, std 1; constant images -> 0)."""

    def call(self, x):  # noqa: ANN001, ANN201 - Keras layer signature
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.maximum(std, 1e-6)


def _augmentation(cfg: RunConfig) -> list[layers.Layer]:
    aug = cfg.augment
    seed = cfg.seed
    out: list[layers.Layer] = []
    if aug.rotation_deg > 0:
        out.append(layers.RandomRotation(aug.rotation_deg / 360.0, fill_mode="nearest", seed=seed))
    if aug.zoom > 0:
        out.append(layers.RandomZoom((-aug.zoom, aug.zoom), fill_mode="nearest", seed=seed + 1))
    if aug.horizontal_flip:
        out.append(layers.RandomFlip("horizontal", seed=seed + 2))
    if aug.brightness > 0:
        out.append(layers.RandomBrightness(aug.brightness, value_range=(0.0, 1.0), seed=seed + 3))
    return out


def _optimizer(cfg: RunConfig) -> keras.optimizers.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        return keras.optimizers.Adam(learning_rate=o.learning_rate, epsilon=o.epsilon)
    if o.name == "sgd":
        return keras.optimizers.SGD(learning_rate=o.learning_rate, momentum=o.momentum)
    return keras.optimizers.RMSprop(learning_rate=o.learning_rate, epsilon=o.epsilon)


def _inputs_to_features(x, cfg: RunConfig, augment: bool):  # noqa: ANN001 - Keras tensors
    """Rescaling, (augmentation), normalisation, channels and the conv blocks: the encoder."""
    m = cfg.model
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    for layer in _augmentation(cfg) if augment else ():
        x = layer(x)
    if cfg.data.normalisation == "zscore":
        x = PerImageStandardization(name="zscore")(x)
    if cfg.data.channels == 3:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])

    pool = layers.MaxPooling2D if m.pooling == "max" else layers.AveragePooling2D
    for i, filters in enumerate(m.filters, start=1):
        last = i == len(m.filters)
        x = layers.Conv2D(
            filters,
            m.kernel_size,
            strides=m.stride,
            padding=m.padding,
            use_bias=not m.batch_norm,
            name=f"block{i}_conv",
        )(x)
        if m.batch_norm:
            # Momentum 0.9, not Keras' 0.99: with ~20 steps per epoch on a few hundred images the
            # running statistics would otherwise still be near their initial values at
            # evaluation, and the model would score chance in inference mode.
            x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = layers.Activation("relu", name=LAST_CONV if last else f"block{i}_relu")(x)
        if not last:
            x = pool(2, name=f"block{i}_pool")(x)
    return layers.GlobalAveragePooling2D(name="gap")(x)


def build_encoder(cfg: RunConfig, side: int | None = None) -> keras.Model:
    """The classifier's encoder alone: image (``side`` px, default any size) -> pooled features.

    The same layers, names and normalisation as :func:`build_model` up to global pooling, so
    weights learned here (``python -m pipeline pretrain``) load into a classifier by name.
    """
    inputs = keras.Input((side, side, 1), name="image")
    return keras.Model(inputs, _inputs_to_features(inputs, cfg, augment=False), name="encoder")


def build_model(cfg: RunConfig) -> keras.Model:
    """A compiled binary classifier for ``cfg``; output: P(TB) from one sigmoid unit.

    With ``model.init`` naming a pretrained encoder, its conv blocks start from that encoder's
    weights (:func:`pipeline.encoder.load_into`).
    """
    size, m = cfg.data.image_size, cfg.model
    inputs = keras.Input((size, size, 1), name="image")
    x = _inputs_to_features(inputs, cfg, augment=True)
    x = layers.Dropout(m.dropout, seed=cfg.seed, name="dropout")(x)
    for j, units in enumerate(m.dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{j}")(x)
        x = layers.Dropout(m.dropout, seed=cfg.seed + j, name=f"dense{j}_dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name=OUTPUT)(x)

    model = keras.Model(inputs, outputs, name="tb_cnn")
    if m.init != "scratch":
        encoder.load_into(model, cfg)
    compile_model(model, cfg)
    return model


def compile_model(model: keras.Model, cfg: RunConfig) -> None:
    """Compile ``model`` with the run's optimiser, loss and metrics (again after (un)freezing)."""
    model.compile(
        optimizer=_optimizer(cfg),
        loss="binary_crossentropy",
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
