"""Keras callbacks of a run: every epoch to the run store, a stop when the run is cancelled, and
the per-source validation score that several sources are monitored by."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from db import RunStore
from pipeline.evaluation import by_source
from pipeline.progress import bar as progress_bar


class RunCancelled(Exception):  # noqa: N818 - a signal, not an error
    """The run was cancelled while it trained; it stays ``cancelled`` with its epochs kept."""


class StoreLogger(keras.callbacks.Callback):
    """Writes every epoch's train/val metrics to the run store and shows an epoch progress bar."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        epochs: int,
        progress: bool,
        *,
        desc: str = "train",
        shown: tuple[str, ...] = ("loss", "val_auc"),
    ) -> None:
        super().__init__()
        self.store, self.run_id, self.shown = store, run_id, shown
        self.bar = progress_bar(total=epochs, desc=desc, unit="epoch", disable=not progress)
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs["seconds"] = time.perf_counter() - self.t0
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        self.store.log_epoch(self.run_id, epoch + 1, {k: float(v) for k, v in logs.items()})
        self.bar.update(1)
        self.bar.set_postfix({k: f"{logs.get(k, float('nan')):.3f}" for k in self.shown})

    def on_train_end(self, logs: dict | None = None) -> None:
        self.bar.close()


class CancelWatch(keras.callbacks.Callback):
    """Stops training at the first batch boundary after the run is cancelled in the store.

    The store is asked at most every ``every_s`` seconds, not on every batch.
    """

    def __init__(self, store: RunStore, run_id: str, every_s: float = 2.0) -> None:
        super().__init__()
        self.store, self.run_id, self.every_s = store, run_id, every_s
        self.last = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        if self.store.get_run(self.run_id).status == "cancelled":
            raise RunCancelled(self.run_id)


class SourceBalancedAUC(keras.callbacks.Callback):
    """Adds ``val_source_auc`` to every epoch's logs: the mean per-source validation AUC
    (:func:`pipeline.evaluation.by_source.balanced_auc`), for early stopping to monitor.

    Placed before :class:`keras.callbacks.EarlyStopping` in the callback list: Keras hands every
    callback the same logs, so the value is there when the stopper and the store read them.
    """

    KEY = "val_source_auc"

    def __init__(self, dataset: Any, labels: np.ndarray, sources: np.ndarray) -> None:
        super().__init__()
        self.dataset, self.labels, self.sources = dataset, labels, sources

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        scores = self.model.predict(self.dataset, verbose=0).reshape(-1)
        logs[self.KEY] = by_source.balanced_auc(self.labels, scores, self.sources)
