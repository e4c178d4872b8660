"""Train the lung segmenter, score it one held-out source at a time, and write its card.

:func:`fit` trains one U-Net on image / mask pairs (Dice + BCE, Adam with a cosine-decayed
learning rate, fresh random augmentation every epoch). :func:`train_and_card` is what
``python -m pipeline lungs train`` runs: one shorter training per source with that source held
out (how well the segmenter transfers to a hospital it never saw), then the final model on every
source minus a fixed test part (10 % of each source), scored on that test part. The card records
both, so a reader of the shipped model knows what to expect on new X-rays.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline.config import AugmentConfig
from pipeline.imaging import appearance as appearance_aug
from pipeline.lungs.data import Pairs, add_opacities, augment
from pipeline.lungs.masks import dice, iou, postprocess
from pipeline.lungs.segmenter import normalise
from pipeline.lungs.unet import build_unet, dice_bce

TEST_SHARE = 0.1
Log = Callable[[str], None]

_STRONG = AugmentConfig(gamma=0.5, contrast=0.3, blur=1.5, noise=0.04, resample=2.5, jpeg=30)


@dataclass(frozen=True)
class Recipe:
    """How a segmenter is trained beyond its geometric jitter and mild brightness / contrast /
    blur: the appearance augmentation (:mod:`pipeline.imaging.appearance`, what another machine
    or hospital does to the same chest), opacities drawn into the lungs
    (:func:`pipeline.lungs.data.add_opacities`, what disease does) and the input standardisation
    (:func:`pipeline.lungs.segmenter.normalise`), which the card records so the shipped model
    is fed as it was trained."""

    appearance: AugmentConfig | None
    standardisation: str = "zscore"
    opacities: float = 0.0  # share of training images given opacities (data.add_opacities)


# "strong" is the classifier's generalisation-suite appearance setting, widened: segmenting must
# survive any film a classifier is given. bench/lungs_loso.py compares them held out by source.
RECIPES = {
    "basic": Recipe(None),
    "strong": Recipe(_STRONG),
    "opacities": Recipe(_STRONG, opacities=0.5),
    "equalised": Recipe(_STRONG, "equalise"),
}


@dataclass(frozen=True)
class Scores:
    """Mean Dice and IoU per source (and over all pairs, key ``all``), with pair counts."""

    dice: dict[str, float]
    iou: dict[str, float]
    n: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"dice": self.dice, "iou": self.iou, "n": self.n}


def fit(
    pairs: Pairs,
    *,
    epochs: int,
    seed: int = 0,
    base: int = 8,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    recipe: str = "basic",
    log: Log | None = None,
) -> keras.Model:
    """A U-Net trained on ``pairs`` with the named :data:`RECIPES` entry; the images' side is
    the model's input."""
    keras.utils.set_random_seed(seed)
    model = build_unet(pairs.images.shape[1], base=base)
    batches = _Batches(pairs, batch_size, seed, recipe_named(recipe))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * len(batches))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=dice_bce)
    callbacks = []
    if log is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: log(
                    f"  epoch {e + 1}/{epochs} loss {logs['loss']:.4f} ({time.strftime('%X')})"
                )
            )
        )
    model.fit(batches, epochs=epochs, verbose=0, callbacks=callbacks)
    # Ship the bare network: no optimizer state, no custom loss to resolve when loading.
    bare = build_unet(pairs.images.shape[1], base=base)
    bare.set_weights(model.get_weights())
    return bare


def recipe_named(name: str) -> Recipe:
    """The :data:`RECIPES` entry called ``name``; a ValueError naming the choices otherwise."""
    if name not in RECIPES:
        raise ValueError(f"--recipe {name!r} is not a recipe; use one of {', '.join(RECIPES)}")
    return RECIPES[name]


class _Batches(keras.utils.PyDataset):
    """Shuffled, freshly augmented batches; epoch ``e`` draws from generator ``(seed, e)``, and
    the appearance transforms (when any) of batch ``i`` from the stateless seed
    ``(seed, e * len + i)``."""

    def __init__(self, pairs: Pairs, batch_size: int, seed: int, recipe: Recipe) -> None:
        super().__init__()
        self.pairs, self.batch_size, self.seed = pairs, batch_size, seed
        self.recipe = recipe
        self.epoch = -1
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.pairs.names) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        rng = np.random.default_rng((self.seed, self.epoch))
        self.order = rng.permutation(len(self.pairs.names))

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        pairs = [augment(rng, self.pairs.images[j], self.pairs.masks[j]) for j in idx]
        x = np.stack(
            [
                add_opacities(rng, img, m) if rng.random() < self.recipe.opacities else img
                for img, m in pairs
            ]
        )
        if self.recipe.appearance is not None:
            import tensorflow as tf

            key = tf.constant([self.seed, self.epoch * len(self) + i], tf.int64)
            batch = tf.constant(x[..., np.newaxis] * 255.0, tf.float32)
            x = appearance_aug.augment(batch, self.recipe.appearance, key).numpy()[..., 0] / 255.0
        y = np.stack([p[1] for p in pairs])[..., np.newaxis]
        return normalise(x, self.recipe.standardisation), y


def predict_masks(
    model: keras.Model, images: np.ndarray, standardisation: str = "zscore", batch_size: int = 16
) -> np.ndarray:
    """Post-processed lung masks (N, S, S) bool of images already at the model's side."""
    out = np.empty(images.shape, bool)
    for start in range(0, len(images), batch_size):
        x = normalise(images[start : start + batch_size], standardisation)
        prob = np.asarray(model.predict_on_batch(x))
        for k, p in enumerate(prob[..., 0]):
            out[start + k] = postprocess(p >= 0.5)
    return out


def score(model: keras.Model, pairs: Pairs, standardisation: str = "zscore") -> Scores:
    """Dice and IoU of the model's post-processed masks, per source and over all pairs."""
    pred = predict_masks(model, pairs.images, standardisation)
    d = np.array([dice(p, t) for p, t in zip(pred, pairs.masks, strict=True)])
    j = np.array([iou(p, t) for p, t in zip(pred, pairs.masks, strict=True)])
    sources = np.array(pairs.sources)
    groups = {s: sources == s for s in sorted(set(pairs.sources))} | {"all": sources == sources}
    return Scores(
        {s: float(d[m].mean()) for s, m in groups.items()},
        {s: float(j[m].mean()) for s, m in groups.items()},
        {s: int(m.sum()) for s, m in groups.items()},
    )


def test_part(pairs: Pairs, seed: int) -> np.ndarray:
    """Boolean mask of the fixed test part: ``TEST_SHARE`` of each source (at least one pair)."""
    rng = np.random.default_rng(seed)
    sources = np.array(pairs.sources)
    keep = np.zeros(len(sources), bool)
    for s in sorted(set(pairs.sources)):
        idx = np.flatnonzero(sources == s)
        keep[rng.choice(idx, max(1, round(TEST_SHARE * idx.size)), replace=False)] = True
    return keep


def train_and_card(
    pairs: Pairs,
    out: Path,
    *,
    epochs: int,
    holdout_epochs: int,
    seed: int,
    base: int,
    command: str,
    recipe: str = "basic",
    log: Log = print,
) -> dict[str, Any]:
    """Held-out-source trainings (when there are 2+ sources and ``holdout_epochs`` > 0), then
    the final model; writes ``out/lungs.keras`` and ``out/lungs.json`` and returns the card."""
    start = time.perf_counter()
    how = recipe_named(recipe)
    held_out: dict[str, Any] = {}
    sources = sorted(set(pairs.sources))
    if len(sources) > 1 and holdout_epochs > 0:
        for s in sources:
            log(f"held out: {s} (training on {', '.join(x for x in sources if x != s)})")
            is_s = np.array(pairs.sources) == s
            t0 = time.perf_counter()
            model = fit(
                pairs.subset(~is_s),
                epochs=holdout_epochs,
                seed=seed,
                base=base,
                recipe=recipe,
                log=log,
            )
            sc = score(model, pairs.subset(is_s), how.standardisation)
            held_out[s] = {
                "dice": sc.dice[s],
                "iou": sc.iou[s],
                "n": sc.n[s],
                "train_seconds": round(time.perf_counter() - t0, 1),
            }
            log(f"held out {s}: Dice {sc.dice[s]:.4f} IoU {sc.iou[s]:.4f} (n={sc.n[s]})")
    test = test_part(pairs, seed)
    log(f"final model: {int((~test).sum())} pairs, test part {int(test.sum())} pairs")
    t0 = time.perf_counter()
    model = fit(pairs.subset(~test), epochs=epochs, seed=seed, base=base, recipe=recipe, log=log)
    final_seconds = time.perf_counter() - t0
    sc = score(model, pairs.subset(test), how.standardisation)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "lungs.keras")
    card = {
        "model": "compact U-Net (pipeline/lungs/unet.py)",
        "input_size": int(pairs.images.shape[1]),
        "base_filters": base,
        "parameters": int(model.count_params()),
        "seed": seed,
        "epochs": epochs,
        "holdout_epochs": holdout_epochs,
        "recipe": recipe,
        "appearance_augmentation": None if how.appearance is None else how.appearance.model_dump(),
        "input_standardisation": how.standardisation,
        "opacities": how.opacities,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "training_data": {
            "manifest_sha256": pairs.manifest_sha256,
            "n_pairs": len(pairs.names),
            "sources": {s: pairs.sources.count(s) for s in sources},
        },
        "held_out_source": held_out,
        "test_part": {"names": [n for n, t in zip(pairs.names, test, strict=True) if t]}
        | sc.as_dict(),
        "train_seconds": round(final_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "note": (
            "The montgomery pairs are the same radiographs as the montgomery external TB set; "
            "the segmenter never sees TB labels, so this is no classification leak."
        ),
    }
    (out / "lungs.json").write_text(json.dumps(card, indent=1) + "\n")
    log(f"final test part: Dice {sc.dice['all']:.4f} IoU {sc.iou['all']:.4f}")
    return card
