"""TensorBoard event files for every run: per-epoch scalars, so ``tensorboard --logdir runs``
shows the learning curves of all runs side by side.

Keras's own ``TensorBoard`` callback needs the ``tensorboard`` package for ``tf.summary.scalar``;
this callback writes the same scalar summaries with TensorFlow's low-level ``tf.summary.write``
and the metadata TensorBoard's scalars plugin reads, so training does not depend on that
package. The layout is Keras's: ``<log_dir>/train`` and ``<log_dir>/validation``, tags
``epoch_loss``, ``epoch_accuracy``, ``epoch_auc`` (validation values under the same tags, so
TensorBoard draws them on one chart) and ``epoch_learning_rate``. Nothing per batch, no
histograms, no graph, no profiling: one small write per metric and epoch.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalars plugin finds a summary by this plugin name (its content may be empty).
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)
TRAIN, VALIDATION = "train", "validation"
EVENTS_DIR = "tensorboard"  # inside each run's folder: runs/<id>/tensorboard


class EventWriter(keras.callbacks.Callback):
    """Writes each epoch's metrics as TensorBoard scalars under ``log_dir`` (created lazily)."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def _writer(self, part: str) -> tf.summary.SummaryWriter:
        if part not in self._writers:
            self._writers[part] = tf.summary.create_file_writer(str(self.log_dir / part))
        return self._writers[part]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs["learning_rate"] = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        for key, value in logs.items():
            part = VALIDATION if key.startswith("val_") else TRAIN
            tag = "epoch_" + key.removeprefix("val_")
            with self._writer(part).as_default():
                tf.summary.write(tag, tf.constant(float(value), tf.float32), epoch, _SCALAR)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
