"""One pretraining run: VICReg on unlabelled X-rays, recorded in the store like any run.

The run (kind ``pretrain``) logs its loss terms every epoch, keeps a checkpoint each epoch under
``runs/pretrain-checkpoints/<settings hash>/`` — so the same command after a crash or Ctrl-C
resumes where it stopped — and ends with the encoder (``encoder.keras``) and its card
(``encoder.json``: data, method, epochs, time, device, linear-probe AUCs) in its run folder.
``model.init`` takes that file; ``--install NAME`` also ships it under
``pipeline/pretraining/weights``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from db import Run, RunStore
from pipeline import encoder as encoders
from pipeline import paths
from pipeline.config import RunConfig
from pipeline.model import build_encoder
from pipeline.pretraining import probe
from pipeline.pretraining.images import pretraining_arrays
from pipeline.pretraining.vicreg import VICReg
from pipeline.training.callbacks import CancelWatch, RunCancelled, StoreLogger
from pipeline.training.train import heartbeat, package_versions

METHOD = "VICReg (Bardes et al. 2022), 3 x 256 projector"
CHECKPOINTS = "pretrain-checkpoints"


@dataclass(frozen=True)
class Options:
    """What a pretraining run does besides the encoder's config (data.*, model.*)."""

    folders: tuple[str, ...]
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    view_side: int = 96
    max_images: int | None = None
    seed: int = 0
    name: str = "pretrain"
    probe: tuple[str, ...] = field(default=())
    # Collections kept out, also from folders that mix several (see images.pretraining_arrays).
    without: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be at least {low} (got {value})"
            for name, value, low in (
                ("epochs", self.epochs, 1),
                ("batch size", self.batch_size, 4),
                ("view side", self.view_side, 32),
            )
            if value < low
        ]
        if not self.folders:
            problems.append(
                "no image folders: name them with --data, or put the shared sets "
                "under a data root ($TBXRAY_DATA_DIRS)"
            )
        if not 0 < self.learning_rate <= 1:
            problems.append(f"learning rate must be in (0, 1] (got {self.learning_rate})")
        if problems:
            raise ValueError("pretraining: " + "; ".join(problems))


def device() -> str:
    """The device TensorFlow trains on, in words."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores)"


def run(
    cfg: RunConfig,
    options: Options,
    store: RunStore,
    *,
    progress: bool = False,
    command: str = "",
) -> Run:
    """Pretrain the encoder of ``cfg`` on ``options.folders``; returns the finished run.

    Raises :class:`RunCancelled` when the run is cancelled meanwhile; any other error after the
    run has been stored as failed (its checkpoint stays, so the same command resumes).
    ``command`` is the command line recorded on the encoder's card.
    """
    config = _stored_config(cfg, options)
    run_id = store.create_run(config, name=options.name, kind="pretrain").id
    store.start_run(run_id, worker=f"cli:{os.getpid()}")
    started = time.perf_counter()
    partial, final = paths.partial_dir(run_id), paths.run_dir(run_id)
    try:
        with heartbeat(store, run_id, 10.0):
            return _pretrain(
                cfg, options, store, run_id, config, (partial, final), started, progress, command
            )
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        if store.get_run(run_id).status == "cancelled":
            raise RunCancelled(run_id) from err
        why = (
            "stopped (Ctrl-C or a signal); its checkpoint is kept: the same command resumes it"
            if isinstance(err, KeyboardInterrupt)
            else traceback.format_exc()
        )
        store.fail_run(run_id, why, duration_s=time.perf_counter() - started)
        raise
    finally:
        keras.backend.clear_session()


def _pretrain(
    cfg: RunConfig,
    options: Options,
    store: RunStore,
    run_id: str,
    config: dict[str, Any],
    folders_out: tuple[Path, Path],
    started: float,
    progress: bool,
    command: str,
) -> Run:
    partial, final = folders_out
    keras.utils.set_random_seed(options.seed)
    folders = [Path(f) for f in options.folders]
    arrays, counts = pretraining_arrays(
        folders,
        cfg.data,
        max_images=options.max_images,
        seed=options.seed,
        progress=progress,
        without=options.without,
    )
    if len(arrays) < options.batch_size:
        raise ValueError(
            f"pretraining needs at least one batch of images ({options.batch_size}); the "
            f"folders hold {len(arrays)}: add folders or lower --batch-size"
        )
    used = device()
    if progress:
        print(f"pretraining on {len(arrays):,} images on {used}", file=sys.stderr)
    model = VICReg(build_encoder(cfg), options.view_side, options.seed)
    model.compile(optimizer=keras.optimizers.AdamW(options.learning_rate, weight_decay=1e-4))
    model(np.zeros((2, options.view_side, options.view_side, 1), np.float32))  # build: checkpoints
    checkpoint = checkpoint_dir(config)
    history = model.fit(
        _batches(arrays, options),
        epochs=options.epochs,
        callbacks=[
            # First: an epoch is checkpointed before it is recorded, so a resumed run goes on
            # from the last epoch the store shows.
            keras.callbacks.BackupAndRestore(str(checkpoint), delete_checkpoint=False),
            StoreLogger(
                store,
                run_id,
                options.epochs,
                progress,
                desc="pretrain",
                shown=("loss", "invariance", "variance", "covariance"),
            ),
            CancelWatch(store, run_id),
        ],
        shuffle=False,  # the dataset reshuffles itself every epoch
        verbose=0,
    )
    seconds = time.perf_counter() - started
    partial.mkdir(parents=True, exist_ok=True)
    model.encoder.save(partial / "encoder.keras")
    labelled = [Path(f) for f in options.probe]
    card = {
        "name": options.name,
        "run_id": run_id,
        "method": METHOD,
        "views": "crop 35-100 %, rotation ±10°, gamma 0.7-1.4, contrast ×0.7-1.3, blur (half), "
        "noise; no flips, no colour",
        "config": {"data": config["encoder"]["data"], "model": config["encoder"]["model"]},
        "images": counts,
        "without": list(options.without),
        "n_images": len(arrays),
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "learning_rate": options.learning_rate,
        "view_side": options.view_side,
        "final": {k: float(v[-1]) for k, v in history.history.items()} if history.history else {},
        "seconds": round(seconds, 1),
        "device": used,
        "parameters": int(model.encoder.count_params()),
        "linear_probe": probe.linear_probe(model.encoder, cfg, labelled, seed=options.seed),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
    }
    (partial / "encoder.json").write_text(json.dumps(card, indent=1))
    partial.replace(final)
    shutil.rmtree(checkpoint, ignore_errors=True)  # finished: nothing left to resume
    return store.finish_run(
        run_id,
        # The store's epochs keep the loss; its terms, epoch by epoch, are kept here.
        metrics={
            "pretrain": card,
            "history": {k: list(map(float, v)) for k, v in history.history.items()},
        },
        artifacts_dir=str(final.resolve()),
        data_fingerprint=hashlib.sha256(json.dumps(counts).encode()).hexdigest(),
        versions=package_versions(),
        duration_s=time.perf_counter() - started,
    )


def install(run: Run, name: str) -> Path:
    """Ship a finished pretraining run's encoder as ``model.init=<name>``; returns its path."""
    if not run.artifacts_dir or not (Path(run.artifacts_dir) / "encoder.keras").is_file():
        raise ValueError(f"run {run.id} has no encoder to install (status {run.status})")
    encoders.SHIPPED.mkdir(parents=True, exist_ok=True)
    target = encoders.SHIPPED / f"{name}.keras"
    shutil.copyfile(Path(run.artifacts_dir) / "encoder.keras", target)
    shutil.copyfile(Path(run.artifacts_dir) / "encoder.json", target.with_suffix(".json"))
    return target


def checkpoint_dir(config: dict[str, Any]) -> Path:
    """Where a pretraining with these very settings keeps its checkpoint between attempts."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return paths.runs_dir() / CHECKPOINTS / key


def _stored_config(cfg: RunConfig, options: Options) -> dict[str, Any]:
    encoder = json.loads(cfg.to_json())
    return {
        "kind": "pretrain",
        "pretrain": asdict(options),
        "encoder": {"data": encoder["data"], "model": encoder["model"]},
    }


def _batches(arrays: np.ndarray, options: Options):
    import tensorflow as tf

    images = tf.data.Dataset.from_tensor_slices(arrays)
    return (
        images.shuffle(min(len(arrays), 20_000), seed=options.seed, reshuffle_each_iteration=True)
        .batch(options.batch_size, drop_remainder=True)
        .map(lambda x: tf.cast(x, tf.float32)[..., tf.newaxis], num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
