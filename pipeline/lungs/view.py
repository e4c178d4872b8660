"""The view check: is this a whole frontal chest X-ray, the right way up?

A small CNN (64 px) sorts an image into five views: upright, turned a quarter to the right,
upside down, turned a quarter to the left, or only part of an X-ray (a quadrant, a half, a
zoomed region). It needs no labels to learn: every upright radiograph of the lung-mask folder
gives all five views by turning and cropping it (:func:`views_of`). It complements the lung
check, which cannot tell an upside-down film (two plausible lungs) from an upright one.

The weights ship as ``pipeline/lungs/weights/view.keras`` with a card (``view.json``: command,
seed, date, accuracy per held-out source and on X-ray folders it never saw); ``python -m
pipeline lungs view-train --install`` replaces both (:mod:`pipeline.lungs.view_train`).
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.imaging import decode
from pipeline.lungs.segmenter import WEIGHTS_DIR, load_shipped, normalise

VIEW_WEIGHTS = WEIGHTS_DIR / "view.keras"
VIEW_CARD = WEIGHTS_DIR / "view.json"
VIEW_RETRAIN = (
    "python -m pipeline lungs view-train --data ../shared/data/lung-masks --install "
    "--check ../shared/data/tb-cxr --check ../shared/data/nlm-224"
)
SIZE = 64
UPRIGHT, RIGHT, UPSIDE_DOWN, LEFT, PART = range(5)
VIEWS = ("upright", "turned right", "upside down", "turned left", "part of an X-ray")
# What a lay reader is told for each view that cannot be assessed.
ADVICE = {
    RIGHT: "the X-ray seems turned on its side; turn it so the neck is at the top and upload "
    "it again",
    UPSIDE_DOWN: "the X-ray seems upside down; turn it so the neck is at the top and upload "
    "it again",
    LEFT: "the X-ray seems turned on its side; turn it so the neck is at the top and upload "
    "it again",
    PART: "this seems to be only part of a chest X-ray; upload the whole frontal film, "
    "uncropped, with both lungs",
}


def turn(image: np.ndarray, view: int) -> np.ndarray:
    """An upright image shown as ``view`` (one of the four turns; ``PART`` is :func:`crop`)."""
    # np.rot90 turns anticlockwise: k=3 turns a quarter to the right.
    k = {UPRIGHT: 0, RIGHT: 3, UPSIDE_DOWN: 2, LEFT: 1}[view]
    return np.ascontiguousarray(np.rot90(image, k))


def crop(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A part of an upright image, resized back to its side: a region about a quadrant's size
    anywhere, or a top, bottom, left or right half (35-55 % of the side)."""
    s = image.shape[0]
    if rng.random() < 0.5:
        h, w = (rng.uniform(0.35, 0.55, 2) * s).astype(int)
    else:
        share = rng.uniform(0.35, 0.55)
        h, w = (int(share * s), s) if rng.random() < 0.5 else (s, int(share * s))
    top = int(rng.integers(0, s - h + 1))
    left = int(rng.integers(0, s - w + 1))
    return decode.resize(image[top : top + h, left : left + w], s)


def reframe(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """The same film framed as collections frame it: as it is (half the time), cut tight around
    the chest (75-95 % of the side kept), or shrunk into a black, white or gray surround."""
    s = image.shape[0]
    draw = rng.random()
    if draw < 0.5:
        return image
    if draw < 0.8:
        side = int(rng.uniform(0.75, 0.95) * s)
        top, left = rng.integers(0, s - side + 1, 2)
        return decode.resize(image[top : top + side, left : left + side], s)
    h, w = (rng.uniform(0.6, 0.9, 2) * s).astype(int)
    canvas = np.full((s, s), rng.choice([0, 255, int(image.mean())]), np.uint8)
    top, left = int(rng.integers(0, s - h + 1)), int(rng.integers(0, s - w + 1))
    canvas[top : top + h, left : left + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def views_of(rng: np.random.Generator, image: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """All five views of one upright image (uint8 S×S) at ``SIZE`` px, as ``(image, view)``.

    Each is mirrored left-right half the time (a mirrored film is still upright); the four
    turns are of a :func:`reframe`-d film, so a tight or padded frame says nothing of the view.
    """
    out = []
    for v in (UPRIGHT, RIGHT, UPSIDE_DOWN, LEFT, PART):
        src = image[:, ::-1] if rng.random() < 0.5 else image
        shown = crop(rng, src) if v == PART else turn(reframe(rng, src), v)
        out.append((decode.resize(shown, SIZE), v))
    return out


def build(base: int = 16) -> Any:
    """The view CNN: four conv blocks (``base`` … 4×``base`` filters), global pooling, softmax."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 1))
    x = inputs
    for filters in (base, 2 * base, 4 * base, 4 * base):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    # Flatten keeps where things are (4×4 cells): orientation is a matter of position.
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(len(VIEWS), activation="softmax")(x)
    return keras.Model(inputs, outputs, name="view")


@dataclass(frozen=True)
class ViewResult:
    """The likeliest view, its probability, P(upright), and whether the image can be assessed."""

    view: int
    probability: float
    upright: float
    ok: bool

    @property
    def name(self) -> str:
        return VIEWS[self.view]

    @property
    def advice(self) -> str:
        return "" if self.ok else ADVICE[self.view]


class ViewChecker:
    """The shipped view CNN and its card; :meth:`check` judges a gray image of any size."""

    def __init__(self, weights: str | Path = VIEW_WEIGHTS) -> None:
        self.weights = Path(weights)
        self.model, self.card = load_shipped(self.weights, "the view check", VIEW_RETRAIN)
        self._lock = threading.Lock()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """P(view) float32 (N, 5) of gray uint8 images (N, SIZE, SIZE)."""
        with self._lock:
            return np.asarray(self.model.predict_on_batch(normalise(batch)))

    def check(self, image: np.ndarray) -> ViewResult:
        """The view of one gray uint8 image of any size; ``ok`` when the likeliest is upright."""
        small = cv2.resize(np.asarray(image), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        return judge(self.probabilities(small[np.newaxis])[0])


def judge(probs: np.ndarray) -> ViewResult:
    """The decision for one image's five view probabilities: upright when it is the likeliest."""
    view = int(np.argmax(probs))
    return ViewResult(view, float(probs[view]), float(probs[UPRIGHT]), view == UPRIGHT)


@functools.cache
def shipped() -> ViewChecker:
    """The view checker shipped in the repository, loaded once per process."""
    return ViewChecker(VIEW_WEIGHTS)
