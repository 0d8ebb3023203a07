"""Keras callbacks for training: sample grids (PNG files and TensorBoard images), atomic
best checkpoint, the CSV log with partial epochs marked, time limit, and a stop on NaN/inf
losses."""

import os
import time

import keras
import numpy as np
import tensorflow as tf

from ctxenc_tf.errors import TrainingError
from ctxenc_tf.model import masks
from ctxenc_tf.model.checkpoint import save_checkpoint
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.pixels import signed_to_uint8


def scalar(value) -> float:
    """A logged value (Python, NumPy or TF scalar, or the one-element array Keras logs under
    multi-worker training) as a float."""
    return float(np.asarray(value, np.float64).reshape(-1)[0])


def sample_grid(model, images, mask) -> np.ndarray:
    """Grid of rows masked input / completed / original, one column per image.

    ``images`` ``[K, S, S, 3]`` in ``[-1, 1]``, ``mask`` ``[K, S, S, 1]``. Returns uint8
    ``[3*S, K*S, 3]``.
    """
    fill = np.asarray(model.config.fill_value or (0.0, 0.0, 0.0), np.float32)
    hidden = keras.ops.convert_to_numpy(masks.hidden_region(np.asarray(mask, np.float32), model.config.overlap))
    masked = images * (1.0 - hidden) + fill * hidden
    completed = keras.ops.convert_to_numpy(model([images, mask], training=False))
    rows = [np.concatenate(list(signed_to_uint8(r).numpy()), axis=1) for r in (masked, completed, images)]
    return np.concatenate(rows, axis=0)


class SampleGrid(keras.callbacks.Callback):
    """After each epoch, a :func:`sample_grid` of fixed validation images: written to
    ``directory/latest.png``, to TensorBoard's Images tab (``log_dir``, tag ``samples``,
    step = epoch number) and, for the first epoch, every ``every``-th and the run's last,
    kept as ``directory/epoch_NNN.png``."""

    def __init__(self, images, mask, directory: str, log_dir: str | None = None, every: int = 10):
        super().__init__()
        self.images, self.mask, self.directory = np.asarray(images), np.asarray(mask), directory
        self.every, self.writer = every, tf.summary.create_file_writer(log_dir) if log_dir else None
        self.last = None  # (epoch, png) of the newest grid not kept as epoch_NNN.png

    def on_epoch_end(self, epoch, logs=None):
        grid = sample_grid(self.model, self.images, self.mask)
        png = tf.io.encode_png(grid).numpy()
        os.makedirs(self.directory, exist_ok=True)
        atomic.write_bytes(os.path.join(self.directory, "latest.png"), png)
        self.last = (epoch, png)
        if epoch == 0 or (epoch + 1) % self.every == 0:
            self._keep()
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.image("samples", grid[None], step=epoch + 1,
                                 description="rows: masked input, completed, original")
            self.writer.flush()

    def on_train_end(self, logs=None):
        self._keep()  # the last epoch's grid, however the run ended
        if self.writer is not None:
            self.writer.flush()

    def _keep(self):
        if self.last is not None:
            epoch, png = self.last
            atomic.write_bytes(os.path.join(self.directory, f"epoch_{epoch + 1:03d}.png"), png)
            self.last = None


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model as ``.keras`` whenever ``monitor`` improves (lower is better),
    atomically: the previous best stays intact until the new file is complete, and a
    worse epoch never overwrites it. ``best`` can be seeded to continue a resumed run.
    The optimisers' state is left out unless ``optimizer_state`` (see
    :func:`~ctxenc_tf.model.checkpoint.save_checkpoint`)."""

    def __init__(self, filepath: str, monitor: str = "val_rec_loss", best: float = np.inf,
                 optimizer_state: bool = False):
        super().__init__()
        self.filepath, self.monitor, self.best = filepath, monitor, best
        self.optimizer_state = optimizer_state

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(scalar(value)) or scalar(value) >= self.best:
            return
        value = scalar(value)
        try:
            save_checkpoint(self.model, self.filepath, self.optimizer_state)
        except OSError as e:
            raise TrainingError(f"cannot write {self.filepath} ({e.strerror or e}); "
                                "the previous best checkpoint is intact") from e
        self.best = value
        print(f"\nepoch {epoch + 1}: {self.monitor} improved to {value:.5f}, saved {self.filepath}")


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' CSV log of every epoch's metrics, plus a ``partial`` column: 1 for an epoch
    cut short (``--time-limit``, a NaN stop), whose averages cover only its first steps."""

    def on_epoch_begin(self, epoch, logs=None):
        self.steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, {**(logs or {}), "partial": int(self.steps_done < self.params["steps"])})


class TimeLimit(keras.callbacks.Callback):
    """Stop training after the batch that crosses ``seconds`` of wall time
    (``model.stop_training``; the epoch's callbacks still run); ``stopped`` says whether it did."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.stopped = seconds, False

    def on_train_begin(self, logs=None):
        # A resumed run calls fit twice (rest of the interrupted epoch, then the others):
        # the clock starts at the first.
        self.start = getattr(self, "start", None) or time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped = True


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop training after the first batch whose losses (``keys`` of the batch logs) are
    NaN or infinite, and remember where in ``stopped`` (``None`` until then). Keras'
    ``TerminateOnNaN`` only watches a ``loss`` key, which a ContextEncoder does not log."""

    def __init__(self, keys=("g_loss", "d_loss", "rec_loss")):
        super().__init__()
        self.keys, self.stopped, self.epoch = keys, None, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for key in self.keys:
            value = (logs or {}).get(key)
            if value is not None and not np.isfinite(scalar(value)):
                self.stopped = f"{key} became {scalar(value)} in epoch {self.epoch + 1}"
                print(f"\nstopping: {self.stopped}")
                self.model.stop_training = True
                return
