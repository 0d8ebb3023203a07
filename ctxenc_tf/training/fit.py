"""Training orchestration behind ``train.py``: data, model, callbacks, ``model.fit``."""

import contextlib
import os
import warnings
from dataclasses import dataclass

import keras
import numpy as np

from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.cache import cache_prefix, held_cache
from ctxenc_tf.data.fingerprint import data_fingerprint
from ctxenc_tf.errors import ConfigError, DataError, TrainingError
from ctxenc_tf.model.checkpoint import load_context_encoder, save_checkpoint
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.training import resume
from ctxenc_tf.training.callbacks import (
    BestCheckpoint,
    EpochLog,
    SampleGrid,
    StopOnNonFinite,
    TimeLimit,
)
from ctxenc_tf.training.data_parallel import check_global_batch
from ctxenc_tf.training.strategy import make_strategy, set_precision
from ctxenc_tf.utils.output_dir import (
    check_disk_space,
    check_output_dir,
    exclusive_output,
)

SAMPLE_COUNT = 8


RUN_FILES = {"best": "best.keras", "final": "final.keras", "config": "config.json",
             "csv": "log.csv", "logs": "logs", "samples": "samples", "backup": "backup"}


@dataclass
class RunPaths:
    """Where a run writes its outputs (:data:`RUN_FILES`), all below ``RunConfig.output_dir``."""

    root: str

    def __getattr__(self, name):
        if name in RUN_FILES:
            return os.path.join(self.root, RUN_FILES[name])
        raise AttributeError(name)


def report_skipped(skipped, log=print, show: int = 5) -> None:
    """Log how many files were skipped as unreadable and the first ``show`` of them."""
    if not skipped:
        return
    log(f"skipped {len(skipped)} unreadable image file(s):")
    for path, reason in skipped[:show]:
        log(f"  {path}: {reason}")
    if len(skipped) > show:
        log(f"  ... and {len(skipped) - show} more")


def prepare(config: RunConfig, log=print):
    """Find the data (and check a ``--cache`` file's folder). Returns ``(config, split)``
    with the model's ``trained_on`` saying which data trains it."""
    if config.cache and config.cache != "memory":
        cache_dir = os.path.dirname(os.path.abspath(config.cache))
        if not os.path.isdir(cache_dir) or not os.access(cache_dir, os.W_OK):
            raise ConfigError(f"--cache={config.cache}: {cache_dir} is not a writable directory")
    split = sources.find_prepared(config) or sources.find_split(config)
    where = config.data_dir or f"the {len(split.train) + len(split.val)} bundled demo faces"
    log(f"data: {where} ({split.source}): {len(split.train)} train / {len(split.val)} val images")
    report_skipped(split.skipped, log)
    if len(split.train) < config.batch_size:
        raise DataError(f"{config.data_dir or sources.BUNDLED_FACES}: {len(split.train)} training "
                             f"images, fewer than --batch-size={config.batch_size}")
    trained_on = {"data_dir": os.path.abspath(config.data_dir) if config.data_dir else "",
                  "seed": config.seed, "val_fraction": config.val_fraction, "resize": config.resize, "exclude": config.exclude}
    return config.replace(trained_on=trained_on), split


def build_callbacks(config: RunConfig, data: str, paths: RunPaths, val_batch, monitor: str,
                    steps_per_epoch: int, best: float = np.inf, resumed=None, time_limit=None):
    """The standard callback list: NaN/inf stop, best checkpoint (seeded with ``best``),
    CSV log, TensorBoard, sample grid, the resume state (after every epoch and every
    ``config.backup_steps`` steps, with the data fingerprint ``data``; ``resumed`` is the
    state this run continues) and an
    optional wall-time limit in seconds."""
    best_checkpoint = BestCheckpoint(paths.best, monitor=monitor, best=best,
                                     optimizer_state=config.checkpoint_optimizer)
    callbacks = [
        StopOnNonFinite(),
        best_checkpoint,
        EpochLog(paths.csv, append=True),
        keras.callbacks.TensorBoard(paths.logs),
        SampleGrid(*val_batch, paths.samples, os.path.join(paths.logs, "samples"), config.sample_every),
        resume.TrainingBackup(paths.backup, config, data, steps_per_epoch, config.backup_steps,
                              best_checkpoint, resumed),
    ]
    if time_limit:
        callbacks.append(TimeLimit(time_limit))
    return callbacks


def existing_best(path: str, config: RunConfig, val_ds, monitor: str) -> float:
    """``monitor`` of a ``best.keras`` left in the output directory by a run that has no
    resume state, measured on ``val_ds``, so that a worse model never replaces it; ``inf``
    when there is none (or no validation data to measure it on). Raises
    :class:`~ctxenc_tf.errors.CheckpointError` if the file cannot be loaded and
    :class:`ConfigError` if it is a model with other settings than ``config``."""
    if not os.path.exists(path) or val_ds is None:
        return np.inf
    model = load_context_encoder(path)
    differ = resume.model_differences(model.config.to_dict(), config.model)
    if differ:
        raise ConfigError(f"{path} is a checkpoint of another run ({', '.join(differ)}); "
                          "use a new --output-dir (or move it away)")
    # One evaluation: XLA's compile time does not pay off under TensorFlow; JAX without it
    # would run op by op.
    model.compile(jit_compile=keras.backend.backend() == "jax")
    return float(model.evaluate(val_ds, verbose=0, return_dict=True)[monitor.removeprefix("val_")])


def fit_remaining(model, files, config: RunConfig, val_ds, callbacks, steps: int, state=None):
    """``model.fit`` over what is left of the run: the rest of ``state``'s interrupted
    epoch (its own ``fit``, ``steps - state.step`` steps), then the remaining epochs.
    Returns one ``History`` for both."""
    epoch, step = (state.epoch, state.step) if state else (0, 0)
    parts = [(epoch, step, min(epoch + 1, config.epochs))] if step else []
    parts += [(epoch + bool(step), 0, config.epochs)]
    history = keras.callbacks.History()
    history.epoch = []
    for start, skip, end in parts:
        if start >= end:
            continue
        with warnings.catch_warnings():
            # Keras warns at the end of every validation pass over a dataset of unknown length.
            warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
            part = model.fit(pipeline.training_batches(files, config, start, skip, end), shuffle=False,
                             steps_per_epoch=steps - skip, initial_epoch=start, epochs=end,
                             validation_data=val_ds, callbacks=callbacks)
        history.epoch += part.epoch
        for key, values in part.history.items():
            history.history.setdefault(key, []).extend(values)
        if model.stop_training:
            break
    return history


def non_finite_message(stopped: str, paths: RunPaths, backup) -> str:
    """One line for a run stopped by NaN/inf: what happened and which good files were kept."""
    kept = [f"{paths.best}" if os.path.exists(paths.best) else "",
            f"the resume state from {backup.last_saved.describe()}" if backup.last_saved else ""]
    kept = " and ".join(k for k in kept if k)
    then = "continue from the resume state" if backup.last_saved else "start again"
    return (f"training stopped: {stopped}. Kept the last good files: {kept or 'none yet'}; {paths.final} "
            f"was not written. Lower --learning-rate and rerun the same command to {then}")


def train(config: RunConfig, time_limit: float | None = None, accept_changed_data: bool = False,
          log=print):
    """Train a context encoder as ``config`` says; returns ``(model, history, paths)``.

    Writes below ``config.output_dir``: ``config.json``, ``best.keras`` (best validation
    reconstruction loss), ``final.keras``, ``log.csv``, ``logs/`` (TensorBoard),
    ``samples/*.png`` (masked / filled / original grids) and ``backup/`` (resume state).
    Rerunning with the same model settings and data resumes from ``backup/`` (see
    :mod:`ctxenc_tf.training.resume`; ``accept_changed_data`` continues on data that changed).
    Only one process trains into an output directory at a time (a second one is refused with
    :class:`~ctxenc_tf.utils.output_dir.OutputBusyError`); temporary files left there by a
    killed run are removed first. Raises :class:`~ctxenc_tf.errors.TrainingError` if a loss
    becomes NaN/inf.
    """
    check_output_dir(config.output_dir)  # first: its error names the folder
    with exclusive_output(config.output_dir, "train.py", subdirs=("backup", "samples")), \
            contextlib.ExitStack() as held:
        return _train(config, time_limit, accept_changed_data, log, held)


def _train(config: RunConfig, time_limit, accept_changed_data, log, held: contextlib.ExitStack):
    # First: multi-worker collectives must be configured before TF starts its runtime.
    strategy = make_strategy(config.strategy)
    check_global_batch(strategy, config.batch_size)
    keras.utils.set_random_seed(config.seed)
    set_precision(config.precision)
    config, split = prepare(config, log)
    paths = RunPaths(config.output_dir)
    data = data_fingerprint(split.train, split.val)
    if config.cache not in ("", "memory"):  # a cache file of exactly this data, ours alone
        prefix = cache_prefix(config.cache, data, config.model.image_size, config.resize == "stretch")
        config = config.replace(cache=held.enter_context(held_cache(prefix)))
    steps = pipeline.steps_per_epoch(len(split.train), config.batch_size)
    state = resume.load_state(paths.backup, config, data, steps, accept_changed_data, log)
    # The hole's fill: the one the resumed run was trained with, else the given or the
    # measured dataset mean (measured only when needed: it decodes up to 512 images).
    if state is not None:
        config = config.replace(fill_value=state.config["model"]["fill_value"])
    elif not config.model.fill_value:
        config = config.replace(fill_value=pipeline.estimate_mean(split.train, config.model.image_size))

    val_ds = pipeline.image_dataset(split.val, config, training=False) if split.val else None
    sample_files = (split.val or split.train)[:SAMPLE_COUNT]
    sample = next(iter(pipeline.image_dataset(sample_files, config, training=False)), None)
    if sample is None:
        raise DataError(f"{sample_files[0]}: none of the {len(sample_files)} sample images decodes")
    images, mask = sample
    monitor = "val_rec_loss" if val_ds is not None else "rec_loss"
    with strategy.scope():
        model = ContextEncoder(config.model)
        model.compile(run=config)
        # best, final, the resume state, the one before it and a temporary file: 4 states'
        # worth, 5 when the checkpoints carry the optimisers too.
        check_disk_space(config.output_dir, resume.state_bytes(model), 5 if config.checkpoint_optimizer else 4)
        if state is not None:
            resume.restore(model, paths.backup, state, config)
    if state is None:
        best = existing_best(paths.best, config, val_ds, monitor)
    else:
        best = state.best
        changed = resume.changed_settings(state, config)
        log(f"resuming from {state.describe()} ({config.epochs} epochs in all; state in {paths.backup})"
            + (f"; changed settings: {', '.join(changed)}" if changed else ""))
        if state.epoch >= config.epochs:
            log(f"all {config.epochs} epochs are already done; raise --epochs to train longer")
    config.save_json(paths.config)  # only now: a refused run leaves the old run's files alone
    callbacks = build_callbacks(config, data, paths, (np.asarray(images), np.asarray(mask)), monitor, steps,
                                best, state, time_limit)
    log(f"training on {strategy.num_replicas_in_sync} replica(s), {steps} steps per epoch, "
        f"writing to {config.output_dir}")
    history = fit_remaining(model, split.train, config, val_ds, callbacks, steps, state)
    stopper, backup = (next(c for c in callbacks if isinstance(c, kind))
                       for kind in (StopOnNonFinite, resume.TrainingBackup))
    if stopper.stopped:
        raise TrainingError(non_finite_message(stopper.stopped, paths, backup))
    timer = next((c for c in callbacks if isinstance(c, TimeLimit)), None)
    finished = backup.last_saved is not None and backup.last_saved.epoch >= config.epochs
    if timer is not None and timer.stopped and not finished:
        done = backup.last_saved.describe() if backup.last_saved else "its first step"
        log(f"stopped at the time limit ({time_limit / 60:g} min) after {done}, of {config.epochs} "
            f"epochs asked for; rerun the same command to continue from there")
    save_checkpoint(model, paths.final, config.checkpoint_optimizer)
    return model, history, paths
