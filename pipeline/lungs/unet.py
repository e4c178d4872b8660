"""The lung-field segmenter's network: a compact U-Net (Ronneberger et al., MICCAI 2015).

Sized for a CPU: the 256-px input is average-pooled to 128 px, where the U-Net works with
``base`` filters (8 by default) doubling at each of ``depth`` down-steps, two 3×3 conv +
batch-norm + ReLU per level, transposed-conv up-steps with skip connections; its logits are
upsampled bilinearly back to 256 px before one sigmoid per pixel. Working at half resolution costs
4× less than a full-resolution first level and loses little, because lung outlines are smooth
(BENCHMARKS.md, "Lung segmentation"). With base 8 and depth 4 it has about 0.5 M parameters
(a ~2 MB ``.keras`` file). Its input is a float32 (S, S, 1) image that
:func:`pipeline.lungs.segmenter.normalise` standardised; the model itself holds no custom layer,
so it loads in Keras safe mode.
"""

from __future__ import annotations

import keras
from keras import layers

SIZE = 256


def build_unet(size: int = SIZE, base: int = 8, depth: int = 4) -> keras.Model:
    """Build (not compile) the U-Net: (size, size, 1) float32 -> (size, size, 1) P(lung)."""
    if size % 2 ** (depth + 1):
        raise ValueError(f"size {size} must be divisible by 2**(depth + 1) = {2 ** (depth + 1)}")
    inputs = keras.Input((size, size, 1), name="image")
    x = layers.AveragePooling2D(2, name="half")(inputs)
    skips = []
    for level in range(depth):
        x = _block(x, base * 2**level, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _block(x, base * 2**depth, "bottom")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base * 2**level, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _block(x, base * 2**level, f"dec{level}")
    logits = layers.Conv2D(1, 1, name="logits")(x)
    logits = layers.UpSampling2D(2, interpolation="bilinear", name="full")(logits)
    outputs = layers.Activation("sigmoid", name="lung")(logits)
    return keras.Model(inputs, outputs, name="lung_unet")


def _block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def dice_bce(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """Soft Dice loss (per image) plus binary cross-entropy, per batch element.

    BCE gives every pixel a gradient from the first step; Dice keeps the loss about the overlap
    when lungs fill a third of the image, not about the easy background.
    """
    ops = keras.ops
    axes = (1, 2, 3)
    inter = ops.sum(y_true * y_pred, axis=axes)
    total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    soft_dice = (2.0 * inter + 1.0) / (total + 1.0)
    bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    return 1.0 - soft_dice + bce
