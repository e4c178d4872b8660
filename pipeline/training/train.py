"""Train one run end to end: data → cache → split → tf.data → model → evaluate → artifacts.

``run(cfg, store)`` is the only entry point. Artifacts are written to a hidden partial folder,
renamed into ``runs/<run_id>/`` once complete, and only then is the run row marked
``succeeded``; a crash at any point is stored as ``failed`` with its traceback and its folders
are removed, so a half-written run is never shown as a result. While it runs, a background
thread heart-beats, so the queue can tell a live run from one whose process died. Every epoch's
metrics also go to TensorBoard event files in the run's ``tensorboard/`` folder
(:mod:`pipeline.training.events`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import time
import traceback
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np

from db import Run, RunStore
from pipeline import encoder, paths
from pipeline.config import RunConfig
from pipeline.data import overlap
from pipeline.data.scan import DatasetIndex
from pipeline.data.splits import Split, stratified_group_split
from pipeline.evaluation import by_source, calibration, metrics
from pipeline.heartbeat import beating
from pipeline.model import build_model, compile_model
from pipeline.preprocessing import sources
from pipeline.preprocessing.enhance import PCADenoiser
from pipeline.serving import ood
from pipeline.stop import StopRequested
from pipeline.training import externals, inputs
from pipeline.training.callbacks import CancelWatch, RunCancelled, SourceBalancedAUC, StoreLogger
from pipeline.training.events import EVENTS_DIR, EventWriter

_VERSIONED = ("tensorflow", "keras", "numpy", "scikit-learn", "opencv-python-headless", "pillow")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a run's numbers, recorded with the run."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        out[name] = metadata.version(name)
    return out


@dataclass(frozen=True)
class PreparedData:
    """A dataset ready for training: index, uint8 arrays (N, S, S) and the split."""

    index: DatasetIndex
    arrays: np.ndarray
    split: Split
    pca: PCADenoiser | None


def prepare_data(cfg: RunConfig, *, progress: bool = False) -> PreparedData:
    """Scan (cached), preprocess (cached), split; fit PCA on the training split if configured.

    Several ``data.path`` folders are combined by :mod:`pipeline.preprocessing.sources` and the
    split is stratified by source × class; one folder gives exactly the index, arrays and split it
    always did.
    """
    where = ", ".join(cfg.data.sources)
    index = sources.load_index(cfg.data.sources, progress=progress)
    counts = index.counts()
    if min(counts.values()) < 5:
        raise ValueError(
            f"dataset {where} has {counts} images per class; training needs at least 5 "
            "of each class to fill the train, validation and test splits"
        )
    arrays = sources.cached_arrays(index, cfg.data, progress=progress)
    split = stratified_group_split(
        index.labels,
        index.groups,
        val_fraction=cfg.data.val_fraction,
        test_fraction=cfg.data.test_fraction,
        seed=cfg.seed,
        strata=index.sources,
    )
    for part in ("train", "val", "test"):
        present = set(index.labels[split.part(part)].tolist())
        if present != {0, 1}:
            raise ValueError(
                f"the {part} split of {where} holds only "
                f"{'no images' if not present else 'one class'} ({counts} images per class, "
                f"{len(set(index.groups))} near-duplicate groups); add images of the rarer class "
                "or raise data.val_fraction / data.test_fraction"
            )
    pca = None
    if cfg.data.pca_components is not None:
        pca = PCADenoiser().fit(
            np.asarray(arrays[split.train]), cfg.data.pca_components, seed=cfg.seed
        )
        arrays = pca.transform(np.asarray(arrays))
    return PreparedData(index=index, arrays=arrays, split=split, pca=pca)


def _fit(
    cfg: RunConfig,
    data: PreparedData,
    store: RunStore,
    run_id: str,
    progress: bool,
    events_dir: Path,
):
    labels, train = data.index.labels, data.split.train
    # Per-image weights only when there are sources to balance: one source trains as before.
    sample_weights = None
    if cfg.train.balance_sources and len(np.unique(data.index.sources[train])) > 1:
        sample_weights = np.ones(len(labels), dtype=np.float32)
        sample_weights[train] = inputs.source_weights(
            labels[train], data.index.sources[train], cfg.train.imbalance
        )
    train_ds = inputs.make_dataset(
        data.arrays,
        labels,
        train,
        batch_size=cfg.train.batch_size,
        training=True,
        oversample=cfg.train.imbalance == "oversample",
        seed=cfg.seed,
        appearance=cfg.augment,
        weights=sample_weights,
    )
    val_ds = inputs.make_dataset(
        data.arrays, labels, data.split.val, batch_size=cfg.train.batch_size
    )
    model = build_model(cfg)
    # With balanced sources the per-image weights already balance the classes.
    weights = (
        inputs.class_weights(labels[train])
        if cfg.train.imbalance == "class_weight" and sample_weights is None
        else None
    )

    # Several sources in validation: the checkpoint is chosen on their mean AUC, not the pooled
    # one (pipeline.evaluation.by_source); first in the list, so every callback sees it.
    per_source = _per_source(cfg, data, data.split.val)
    monitor = SourceBalancedAUC.KEY if per_source else "val_auc"

    def fit(first: int, last: int, desc: str, stop_early: bool) -> dict[str, list[float]]:
        callbacks: list[keras.callbacks.Callback] = [
            StoreLogger(store, run_id, last - first, progress, desc=desc, shown=("loss", monitor)),
            CancelWatch(store, run_id),
            # `tensorboard --logdir runs`: per-epoch scalars only, a few writes an epoch.
            EventWriter(events_dir),
        ]
        if per_source:
            callbacks.insert(
                0,
                SourceBalancedAUC(
                    val_ds, labels[data.split.val], data.index.sources[data.split.val]
                ),
            )
        if stop_early and cfg.train.early_stopping_patience > 0:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor=monitor,
                    mode="max",
                    patience=cfg.train.early_stopping_patience,
                    restore_best_weights=True,
                )
            )
        return model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=first,
            epochs=last,
            class_weight=weights,
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself every epoch
            verbose=0,
        ).history

    # A pretrained encoder may first stay frozen while the new head learns, so that the head's
    # random start does not wash out what pretraining learned; then everything is fine-tuned.
    frozen = min(cfg.model.freeze_encoder_epochs, cfg.train.epochs)
    history: dict[str, list[float]] = {}
    if frozen:
        encoder.set_trainable(model, cfg, False)
        compile_model(model, cfg)
        history = fit(0, frozen, "train (encoder frozen)", stop_early=False)
        encoder.set_trainable(model, cfg, True)
        compile_model(model, cfg)
    if frozen < cfg.train.epochs:
        tuned = fit(frozen, cfg.train.epochs, "train", stop_early=True)
        history = {k: history.get(k, []) + v for k, v in tuned.items()}
    return model, history


def _per_source(cfg: RunConfig, data: PreparedData, part: np.ndarray) -> bool:
    """Whether ``eval.per_source`` applies: asked for, and ``part`` holds several sources."""
    return cfg.eval.per_source and len(np.unique(data.index.sources[part])) > 1


def _calibrate(
    cfg: RunConfig, labels: np.ndarray, data: PreparedData, scores: dict[str, np.ndarray]
) -> tuple[calibration.Calibrator | None, dict | None]:
    """Fit ``eval.calibration`` on validation and make every score a calibrated P(TB), in place.

    The threshold is then chosen on calibrated validation scores, so the verdict, the metrics and
    the probability the apps show all speak of the same number. Returns the calibrator and the
    test split's calibration measures before it (None without calibration).
    """
    calibrator = calibration.fit_calibrator(
        cfg.eval.calibration, labels[data.split.val], scores["val"]
    )
    if calibrator is None:
        return None, None
    before = metrics.calibration_report(labels[data.split.test], scores["test"])
    for part in scores:
        scores[part] = calibrator(scores[part])
    return calibrator, before


def _scores(model: keras.Model, data: PreparedData, part: np.ndarray, batch: int) -> np.ndarray:
    ds = inputs.make_dataset(data.arrays, data.index.labels, part, batch_size=batch)
    return model.predict(ds, verbose=0).reshape(-1).astype(np.float64)


def _write_artifacts(
    folder: Path,
    cfg: RunConfig,
    data: PreparedData,
    model: keras.Model,
    history: dict,
    scores: dict[str, np.ndarray],
    result: dict,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)  # training wrote its TensorBoard events there
    relpaths = [os.path.relpath(p, data.index.root) for p in data.index.paths]
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(cfg.to_json())
    (folder / "split.json").write_text(data.split.to_json(relpaths, data.index.fingerprint))
    (folder / "history.json").write_text(json.dumps(history, indent=1))
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    if data.pca is not None:
        data.pca.save(folder / "pca.npz")
    with (folder / "predictions.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["split", "path", "label", "score"])
        for part in ("val", "test"):
            for i, score in zip(data.split.part(part), scores[part], strict=True):
                writer.writerow([part, relpaths[i], int(data.index.labels[i]), repr(float(score))])


def heartbeat(store: RunStore, run_id: str, every_s: float) -> AbstractContextManager[None]:
    """Heart-beat the run for as long as the block runs (:func:`~pipeline.heartbeat.beating`)."""
    return beating(lambda: store.heartbeat(run_id), every_s, f"run {run_id}")


def run(
    cfg: RunConfig,
    store: RunStore,
    *,
    run_id: str | None = None,
    progress: bool = False,
    heartbeat_s: float = 10.0,
    trained: keras.Model | None = None,
    notes: dict[str, Any] | None = None,
) -> Run:
    """Train and evaluate ``cfg``, recording everything in ``store``; returns the finished run.

    ``trained``: a model to evaluate and store as this run instead of fitting one (a run's
    model adapted to a site, :mod:`pipeline.runs.adapt`); ``notes`` go into the run's metrics
    beside the evaluation (e.g. what the adaptation was).

    ``run_id``: a run already claimed by a worker (status running) to execute; without it a new
    run is created and started here. Raises :class:`RunCancelled` when the run is cancelled
    meanwhile (checked at batch boundaries), and any other error after the run has been stored
    as failed with its traceback.
    """
    if run_id is None:
        run_id = store.create_run(json.loads(cfg.to_json()), name=cfg.name).id
        store.start_run(run_id, worker=f"cli:{os.getpid()}")
    worker = store.get_run(run_id).worker
    started = time.perf_counter()
    final = paths.run_dir(run_id)
    partial = paths.partial_dir(run_id)
    # A re-queued run may find the folders of the attempt whose worker died.
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    try:
        with heartbeat(store, run_id, heartbeat_s):
            return _train(cfg, store, run_id, (partial, final), started, progress, trained, notes)
    except StopRequested:
        # The stop may land after the run was recorded as succeeded: then its folder stays.
        if store.get_run(run_id).status != "succeeded":
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
        raise
    except BaseException as err:
        now = store.get_run(run_id)
        if now.status == "cancelled":
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            raise RunCancelled(run_id) from err
        # Only the attempt that owns the run records its failure: if the run was reaped and
        # re-queued meanwhile, it belongs to another worker now and its folders are left alone.
        if now.status == "running" and now.worker == worker:
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)
            store.fail_run(run_id, traceback.format_exc(), duration_s=time.perf_counter() - started)
        raise
    finally:
        keras.backend.clear_session()


def _train(
    cfg: RunConfig,
    store: RunStore,
    run_id: str,
    folders: tuple[Path, Path],
    started: float,
    progress: bool,
    trained: keras.Model | None,
    notes: dict[str, Any] | None,
) -> Run:
    """The body of :func:`run`: everything that can fail and must then be cleaned up."""
    partial, final = folders
    keras.utils.set_random_seed(cfg.seed)
    data = prepare_data(cfg, progress=progress)
    # Checked before training: a missing or overlapping external folder fails the run at once.
    external_sets = [
        overlap.load_external(folder, data.index, progress=progress) for folder in cfg.data.external
    ]
    if trained is None:
        model, history = _fit(cfg, data, store, run_id, progress, partial / EVENTS_DIR)
    else:
        model, history = trained, {}
    batch = cfg.train.batch_size
    scores = {part: _scores(model, data, data.split.part(part), batch) for part in ("val", "test")}
    labels = data.index.labels
    calibrator, before = _calibrate(cfg, labels, data, scores)
    val = data.split.val
    per_source = _per_source(cfg, data, val)
    result = metrics.evaluate(
        labels[data.split.val],
        scores["val"],
        labels[data.split.test],
        scores["test"],
        rule=cfg.eval.threshold_rule,
        min_sensitivity=cfg.eval.min_sensitivity,
        n_boot=cfg.eval.bootstrap,
        seed=cfg.seed,
        val_weights=by_source.balanced_weights(labels[val], data.index.sources[val])
        if per_source
        else None,
    )
    result["val"]["by_source"] = _by_source(data, val, scores["val"])
    result["epochs_trained"] = len(history.get("loss", []))
    result.update(notes or {})
    if before is not None:
        result["calibration_before"] = before
    _write_artifacts(partial, cfg, data, model, history, scores, result)
    evaluations = externals.evaluate(
        cfg, data.pca, model, calibrator, result["threshold"], external_sets
    )
    externals.write_predictions(partial, evaluations)
    if calibrator is not None:
        calibrator.save(partial)
    # The public app's "Cannot assess" check: distance to these training features.
    ood.save_reference(partial, model, data.arrays, data.split, seed=cfg.seed)
    partial.replace(final)
    return store.finish_run(
        run_id,
        metrics=result,
        artifacts_dir=str(final.resolve()),
        data_fingerprint=data.index.fingerprint,
        versions=package_versions(),
        duration_s=time.perf_counter() - started,
        external_evals=[(e.index.root, e.index.fingerprint, e.metrics) for e in evaluations],
    )


def _by_source(data: PreparedData, part: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Validation AUC of each source folder that holds both classes, by folder name."""
    aucs = by_source.per_source_auc(data.index.labels[part], scores, data.index.sources[part])
    return {Path(data.index.roots[s]).name: auc for s, auc in aucs.items()}
