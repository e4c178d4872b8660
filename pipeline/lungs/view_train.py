"""Train the view check, score it where it never looked, and write its card.

:func:`fit` trains the view CNN (:mod:`pipeline.lungs.view`) on upright radiographs: each epoch
every image is jittered afresh (a few degrees, zoom, shift, brightness, contrast, blur) and shown
in all five views. :func:`train_and_card` is what ``python -m pipeline lungs view-train`` runs:
one training per source with that source held out, the final model on every source minus a test
part (10 % of each), and, for folders of X-rays it never saw (``--check``), the share of upright
films accepted and of turned or cropped copies refused.
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

from pipeline.data.scan import scan
from pipeline.imaging import decode
from pipeline.lungs.data import Pairs, augment
from pipeline.lungs.segmenter import normalise
from pipeline.lungs.train import test_part
from pipeline.lungs.view import SIZE, UPRIGHT, VIEWS, build, judge, views_of

Log = Callable[[str], None]
BATCH = 40  # eight upright images, each in all five views


def fit(
    upright: np.ndarray, *, epochs: int, seed: int = 0, base: int = 16, log: Log | None = None
) -> keras.Model:
    """The view CNN trained on upright gray images (N, S, S) uint8 of any one side S."""
    keras.utils.set_random_seed(seed)
    model = build(base)
    batches = _Batches(upright, seed)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, epochs * len(batches))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = []
    if log is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda e, logs: log(
                    f"  epoch {e + 1}/{epochs} loss {logs['loss']:.4f} "
                    f"accuracy {logs['accuracy']:.3f} ({time.strftime('%X')})"
                )
            )
        )
    model.fit(batches, epochs=epochs, verbose=0, callbacks=callbacks)
    bare = build(base)  # no optimizer state to ship
    bare.set_weights(model.get_weights())
    return bare


class _Batches(keras.utils.PyDataset):
    """Eight jittered upright images per batch, each in its five views; epoch ``e`` draws from
    generator ``(seed, e)``."""

    def __init__(self, upright: np.ndarray, seed: int) -> None:
        super().__init__()
        self.upright, self.seed = upright, seed
        self.per_batch = BATCH // len(VIEWS)
        self.epoch = -1
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.upright) / self.per_batch)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.upright))

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        examples = []
        for j in self.order[i * self.per_batch : (i + 1) * self.per_batch]:
            image = self.upright[j]
            jittered, _ = augment(rng, image, np.zeros(image.shape, bool))
            examples += views_of(rng, np.round(jittered * 255).astype(np.uint8))
        x = normalise(np.stack([e[0] for e in examples]))
        return x, np.array([e[1] for e in examples])


@dataclass(frozen=True)
class ViewScores:
    """On upright images as they are and on altered copies of them (turned a quarter either
    way, upside down, or cut to a part): the share of upright images accepted, of altered ones
    refused, and of each view recognised as itself."""

    accepted_upright: float
    refused_altered: float
    per_view: dict[str, float]
    n_images: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted_upright": self.accepted_upright,
            "refused_altered": self.refused_altered,
            "recognised": self.per_view,
            "n_images": self.n_images,
        }


def score(model: keras.Model, upright: np.ndarray, seed: int = 0) -> ViewScores:
    """How the model judges ``upright`` images (N, S, S) uint8 as they are, and altered copies
    of each (one fixed draw of :func:`~pipeline.lungs.view.views_of` per image from ``seed``)."""
    rng = np.random.default_rng(seed)
    examples = [(decode.resize(image, SIZE), UPRIGHT) for image in upright]
    examples += [e for image in upright for e in views_of(rng, image) if e[1] != UPRIGHT]
    truth = np.array([e[1] for e in examples])
    probs = np.concatenate(
        [
            np.asarray(model.predict_on_batch(normalise(np.stack([e[0] for e in chunk]))))
            for chunk in (examples[k : k + 200] for k in range(0, len(examples), 200))
        ]
    )
    results = [judge(p) for p in probs]
    ok = np.array([r.ok for r in results])
    guess = np.array([r.view for r in results])
    return ViewScores(
        accepted_upright=float(ok[truth == UPRIGHT].mean()),
        refused_altered=float((~ok[truth != UPRIGHT]).mean()),
        per_view={v: float((guess[truth == k] == k).mean()) for k, v in enumerate(VIEWS)},
        n_images=len(upright),
    )


def read_folder(folder: str | Path, side: int) -> np.ndarray:
    """Every usable image of a dataset folder (any layout the dataset scan knows, one class
    allowed), in the scan's order, as gray uint8 (N, side, side)."""
    index = scan(folder, one_class=True)
    return np.stack([decode.resize(decode.read_image(p), side) for p in index.paths])


def train_and_card(
    pairs: Pairs,
    out: Path,
    *,
    epochs: int,
    holdout_epochs: int,
    seed: int,
    base: int,
    checks: list[str],
    command: str,
    log: Log = print,
) -> dict[str, Any]:
    """Held-out-source trainings, the final model, its scores on ``checks`` folders; writes
    ``out/view.keras`` and ``out/view.json`` and returns the card."""
    start = time.perf_counter()
    sources = sorted(set(pairs.sources))
    held_out: dict[str, Any] = {}
    if len(sources) > 1 and holdout_epochs > 0:
        for s in sources:
            is_s = np.array(pairs.sources) == s
            log(f"held out: {s} (training on {', '.join(x for x in sources if x != s)})")
            model = fit(pairs.images[~is_s], epochs=holdout_epochs, seed=seed, base=base, log=log)
            held_out[s] = score(model, pairs.images[is_s], seed).as_dict()
            log(f"held out {s}: {_line(held_out[s])}")
    test = test_part(pairs, seed)
    log(f"final model: {int((~test).sum())} images, test part {int(test.sum())}")
    t0 = time.perf_counter()
    model = fit(pairs.images[~test], epochs=epochs, seed=seed, base=base, log=log)
    train_seconds = time.perf_counter() - t0
    unseen = {"test part": score(model, pairs.images[test], seed).as_dict()}
    for folder in checks:
        unseen[folder] = score(model, read_folder(folder, pairs.images.shape[1]), seed).as_dict()
        log(f"{folder}: {_line(unseen[folder])}")
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "view.keras")
    card = {
        "model": "view CNN (pipeline/lungs/view.py): upright, turned right, upside down, "
        "turned left, part of an X-ray",
        "input_size": SIZE,
        "base_filters": base,
        "parameters": int(model.count_params()),
        "decision": "accepted when 'upright' is the likeliest of the five views",
        "seed": seed,
        "epochs": epochs,
        "holdout_epochs": holdout_epochs,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "training_data": {
            "manifest_sha256": pairs.manifest_sha256,
            "n_images": int((~test).sum()),
            "sources": {s: pairs.sources.count(s) for s in sources},
            "labels": "none needed: every upright image is turned and cropped into its views",
        },
        "held_out_source": held_out,
        "unseen": unseen,
        "test_part_names": [n for n, t in zip(pairs.names, test, strict=True) if t],
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    (out / "view.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def _line(s: dict[str, Any]) -> str:
    return (
        f"upright accepted {s['accepted_upright']:.1%}, turned or cropped refused "
        f"{s['refused_altered']:.1%} (n={s['n_images']})"
    )
