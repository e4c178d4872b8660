"""Label-free site adaptation: a run's model with its batch-norm statistics re-estimated on a
site's unlabelled X-rays (AdaBN, Li et al. 2018), stored as a new run.

A CNN normalises each feature map by the mean and variance it saw in training; on another
machine's films those statistics shift, and every layer after the first reads its inputs off
scale. AdaBN replaces them, layer by layer in order, with the statistics of the site's own images
through the run's own preprocessing — no label, no gradient, no weight changed. The adapted run
is evaluated like any run (internal test set, its external sets, at a threshold chosen on its
validation split) and names its parent and the site folder; ``calibrate`` can then choose the
site's threshold on it.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from db import Run, RunStore
from pipeline.config import make_config
from pipeline.data.unlabelled import folder_index
from pipeline.preprocessing.cache import cached_arrays
from pipeline.serving.predictor import Predictor
from pipeline.training import train

METHOD = "AdaBN (Li et al. 2018): batch-norm statistics re-estimated on the site's images"
MIN_IMAGES = 16


def batch_norm_statistics(model: keras.Model, images: np.ndarray, batch: int = 64) -> int:
    """Set every BatchNormalization layer's moving mean and variance of ``model`` to those of
    ``images`` (uint8 (N, S, S), as the model takes them), first layer first; returns how many
    layers were adapted."""
    layers = [la for la in model.layers if isinstance(la, keras.layers.BatchNormalization)]
    x = np.asarray(images, dtype=np.float32)[..., np.newaxis]
    for layer in layers:
        upstream = keras.Model(model.inputs, layer.input)
        total = squares = 0.0
        count = 0
        for i in range(0, len(x), batch):
            a = np.asarray(upstream(x[i : i + batch], training=False), dtype=np.float64)
            axes = tuple(range(a.ndim - 1))
            total = total + a.sum(axes)
            squares = squares + np.square(a).sum(axes)
            count += int(np.prod([a.shape[k] for k in axes]))
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / count - mean**2, 0).astype(np.float32))
    return len(layers)


def adapt(store: RunStore, run_id: str, site: str | Path, *, progress: bool = False) -> Run:
    """Adapt run ``run_id`` to the X-rays in ``site`` and store the result as a new run."""
    parent = store.get_run(run_id)
    if parent.kind != "train" or parent.status != "succeeded" or not parent.artifacts_dir:
        raise ValueError(
            f"run {parent.id} is a {parent.kind} run that is {parent.status}: only a succeeded "
            "classifier run can be adapted to a site"
        )
    folder = Path(site).expanduser().resolve()
    if not folder.is_dir():
        raise ValueError(f"--data {site}: no such folder; pass the site's folder of X-rays")
    predictor = Predictor(parent.artifacts_dir)
    cfg = make_config(parent.config)
    images = predictor.scorer.denoise(
        cached_arrays(folder_index(folder, progress=progress), cfg.data, progress=progress)
    )
    if len(images) < MIN_IMAGES:
        raise ValueError(
            f"{folder} holds {len(images)} usable X-rays; adapting needs at least {MIN_IMAGES} "
            "to estimate the statistics"
        )
    model = keras.saving.load_model(Path(parent.artifacts_dir) / "model.keras", safe_mode=True)
    layers = batch_norm_statistics(model, images)
    if layers == 0:
        raise ValueError(
            f"run {parent.id}'s model has no batch normalisation (model.batch_norm false): "
            "there are no statistics to adapt"
        )
    name = f"{parent.name}+adabn-{folder.name}"
    notes = {
        "adaptation": {
            "method": METHOD,
            "parent": parent.id,
            "site": str(folder),
            "n_images": len(images),
            "layers": layers,
        }
    }
    return train.run(
        cfg.model_copy(update={"name": name}), store, progress=progress, trained=model, notes=notes
    )
