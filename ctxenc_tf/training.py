"""Training orchestration behind ``train.py``: data, model, callbacks, ``model.fit``."""

import os
import tempfile
from dataclasses import dataclass

import keras
import numpy as np

from ctxenc_tf import atomic, data
from ctxenc_tf.callbacks import BestCheckpoint, SampleGrid, TimeLimit
from ctxenc_tf.config import Config
from ctxenc_tf.strategy import make_strategy, set_precision
from ctxenc_tf.trainer import ContextEncoder

SAMPLE_COUNT = 8


@dataclass
class RunPaths:
    """Where a run writes its outputs, all below ``Config.output_dir``."""

    root: str

    def __getattr__(self, name):
        files = {"best": "best.keras", "final": "final.keras", "config": "config.json",
                 "csv": "log.csv", "logs": "logs", "samples": "samples", "backup": "backup"}
        if name in files:
            return os.path.join(self.root, files[name])
        raise AttributeError(name)


def check_output_dir(path: str) -> None:
    """Create ``path`` and prove it is writable before any training time is spent.
    Raises ``PermissionError``/``OSError`` naming the directory."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(e.errno, f"output directory is not writable ({e.strerror})", path) from e


def report_skipped(skipped, log=print, show: int = 5) -> None:
    """Log how many files were skipped as unreadable and the first ``show`` of them."""
    if not skipped:
        return
    log(f"skipped {len(skipped)} unreadable image file(s):")
    for path, reason in skipped[:show]:
        log(f"  {path}: {reason}")
    if len(skipped) > show:
        log(f"  ... and {len(skipped) - show} more")


def prepare(config: Config, log=print):
    """Find the data, measure the fill colour if unset, and check the output directory.
    Returns ``(config, split)`` with ``config.fill_value`` filled in."""
    split = data.find_split(config)
    where = config.data_dir or f"the {len(split.train) + len(split.val)} bundled demo faces"
    log(f"data: {where} ({split.source}): {len(split.train)} train / {len(split.val)} val images")
    report_skipped(split.skipped, log)
    if len(split.train) < config.batch_size:
        raise data.DataError(f"{config.data_dir or data.BUNDLED_FACES}: {len(split.train)} training "
                             f"images, fewer than --batch-size={config.batch_size}")
    if not config.fill_value:
        config = config.replace(fill_value=data.estimate_mean(split.train, config.image_size))
    check_output_dir(config.output_dir)
    return config, split


def build_callbacks(config: Config, paths: RunPaths, val_batch, monitor: str, time_limit=None):
    """The standard callback list: resume backup, best checkpoint, TensorBoard, CSV log,
    NaN stop, sample grid (and an optional wall-time limit in seconds)."""
    callbacks = [
        keras.callbacks.BackupAndRestore(paths.backup),
        keras.callbacks.TerminateOnNaN(),
        BestCheckpoint(paths.best, monitor=monitor),
        keras.callbacks.CSVLogger(paths.csv, append=True),
        keras.callbacks.TensorBoard(paths.logs),
        SampleGrid(*val_batch, paths.samples),
    ]
    if time_limit:
        callbacks.append(TimeLimit(time_limit))
    return callbacks


def train(config: Config, time_limit: float | None = None, log=print):
    """Train a context encoder as ``config`` says; returns ``(model, history, paths)``.

    Writes below ``config.output_dir``: ``config.json``, ``best.keras`` (best validation
    reconstruction loss), ``final.keras``, ``log.csv``, ``logs/`` (TensorBoard),
    ``samples/*.png`` (masked / filled / original grids) and ``backup/`` (resume state).
    """
    keras.utils.set_random_seed(config.seed)
    set_precision(config.precision)
    config, split = prepare(config, log)
    paths = RunPaths(config.output_dir)
    config.save_json(paths.config)

    strategy = make_strategy(config.strategy)
    train_ds = data.image_dataset(split.train, config, training=True)
    val_ds = data.image_dataset(split.val, config, training=False) if split.val else None
    sample_files = (split.val or split.train)[:SAMPLE_COUNT]
    images, mask = next(iter(data.image_dataset(sample_files, config, training=False)))
    with strategy.scope():
        model = ContextEncoder(config)
        model.compile(jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    monitor = "val_rec_loss" if val_ds is not None else "rec_loss"
    callbacks = build_callbacks(config, paths, (np.asarray(images), np.asarray(mask)), monitor, time_limit)
    log(f"training on {strategy.num_replicas_in_sync} replica(s), writing to {config.output_dir}")
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks)
    atomic.save_model(model, paths.final)
    return model, history, paths
