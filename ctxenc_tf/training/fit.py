"""Training orchestration behind ``train.py``: data, model, callbacks, ``model.fit``.

:func:`train` holds the output directory; :func:`_train` is the run's story, one phase per
call: the runtime, the data, the resume state, the model built or restored, the callbacks,
``fit``, the end."""

import contextlib
import json
import os
import warnings
from dataclasses import dataclass, fields

import keras
import numpy as np

from ctxenc_tf.config import AUTO_PRECISION, RunConfig
from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.cache import cache_prefix, held_cache
from ctxenc_tf.data.fingerprint import data_fingerprint, split_names, split_record
from ctxenc_tf.data.image_source import ImageSource
from ctxenc_tf.errors import ConfigError, DataError, TrainingError
from ctxenc_tf.model.checkpoint import load_context_encoder, save_checkpoint
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.model.precision import dtype_policy
from ctxenc_tf.run_files import BACKUP, SAMPLES, RunPaths
from ctxenc_tf.training import resume
from ctxenc_tf.training.callbacks import (
    BestCheckpoint,
    EpochLog,
    SampleGrid,
    StopOnNonFinite,
    TimeLimit,
)
from ctxenc_tf.training.data_parallel import check_global_batch
from ctxenc_tf.training.optimizers import compile_for_run, run_jit_compile
from ctxenc_tf.training.strategy import default_precision, make_strategy, set_precision
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import (
    check_disk_space,
    check_output_path,
    exclusive_output,
)

SAMPLE_COUNT = 8  # images in the sample grid


@dataclass
class RunData:
    """What ``fit`` and the callbacks read of the data.

    ``train``: the training images, ``steps`` full batches per epoch;
    ``val``: the validation ``tf.data.Dataset`` (``None`` without validation images);
    ``sample``: the fixed grid batch as NumPy, images ``[K, S, S, 3]`` in ``[-1, 1]`` and
    masks ``[K, S, S, 1]``, ``K <= SAMPLE_COUNT``; ``monitor``: the metric the best
    checkpoint follows (``val_rec_loss``, or ``rec_loss`` without validation images).
    """

    train: ImageSource
    steps: int
    val: object
    sample: tuple
    monitor: str


@dataclass
class RunCallbacks:
    """The run's callbacks by name; the field order is the order ``fit`` calls them in (the
    backup after the best checkpoint whose ``best`` it records)."""

    non_finite: StopOnNonFinite
    best: BestCheckpoint
    csv: EpochLog
    tensorboard: keras.callbacks.TensorBoard
    samples: SampleGrid
    backup: resume.TrainingBackup
    time_limit: TimeLimit | None  # only with a time limit

    def as_list(self) -> list:
        """The callbacks for ``model.fit``, in field order, leaving out the absent ones."""
        return [getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None]


def train(config: RunConfig, time_limit: float | None = None, accept_changed_data: bool = False,
          log=print, verbose="auto"):
    """Train a context encoder as ``config`` says; returns ``(model, history, paths)``.

    Writes below ``config.output_dir`` (:class:`~ctxenc_tf.run_files.RunPaths`):
    ``config.json``, ``split.json`` (the file names of the split), ``best.keras`` (best
    validation reconstruction loss), ``final.keras``,
    ``log.csv``, ``logs/`` (TensorBoard), ``samples/*.png`` (masked / filled / original
    grids) and ``backup/`` (resume state).
    Rerunning with the same model settings and data resumes from ``backup/`` (see
    :mod:`ctxenc_tf.training.resume`; ``accept_changed_data`` continues on data that changed).
    Only one process trains into an output directory at a time (a second one is refused with
    :class:`~ctxenc_tf.utils.output_dir.OutputBusyError`); temporary files left there by a
    killed run are removed first. The run trains in its own precision (:func:`choose_precision`)
    and leaves the caller's Keras dtype policy as it found it. ``verbose`` is ``model.fit``'s:
    1 (or ``"auto"``) a progress bar redrawn in place, 2 one line per epoch, 0 none. Raises
    :class:`~ctxenc_tf.errors.TrainingError` if a loss becomes NaN/inf.
    """
    check_output_path(config.output_dir, "--output-dir")  # first: its error names the folder
    # The run's precision is its own (choose_precision), not the caller's from then on.
    with dtype_policy(), exclusive_output(config.output_dir, "train.py", subdirs=(BACKUP, SAMPLES)), \
            contextlib.ExitStack() as held:
        return _train(config, time_limit, accept_changed_data, log, verbose, held)


def _train(config: RunConfig, time_limit, accept_changed_data, log, verbose, held: contextlib.ExitStack):
    """The run, phase by phase; ``held`` keeps the cache file ours until the run ends."""
    strategy = start_runtime(config)
    config, split = find_training_data(config, log)
    paths = RunPaths(config.output_dir)
    fingerprint = data_fingerprint(split.train, split.val)
    config = hold_cache(config, fingerprint, held)
    steps = pipeline.steps_per_epoch(len(split.train), config.batch_size)
    state = resume.load_state(paths.backup, config, fingerprint, steps, accept_changed_data, log)
    config = choose_precision(config, state, log)
    config = choose_fill(config, state, split.train)
    data = run_data(config, split, steps)
    model = build_or_restore(config, strategy, state, paths, log)
    best = state.best if state is not None else existing_best(paths.best, config, data.val, data.monitor)
    config.save_json(paths.config)  # only now: a refused run leaves the old run's files alone
    if "split" in config.model.trained_on:  # a run on prepared records has none (find_training_data)
        write_split(paths.split, split, data_root(config))
    callbacks = build_callbacks(config, fingerprint, paths, data, best, state, time_limit)
    log(f"training on {strategy.num_replicas_in_sync} replica(s), {data.steps} steps per epoch, "
        f"writing to {config.output_dir}")
    history = fit_remaining(model, data.train, config, data.val, callbacks.as_list(), data.steps, state,
                            verbose)
    finish(model, config, paths, callbacks, log)
    return model, history, paths


def start_runtime(config: RunConfig):
    """The ``tf.distribute`` strategy of ``config.strategy``, with the global batch checked
    against it and the seed set. First in a run: multi-worker collectives must be
    configured before TensorFlow starts its runtime."""
    strategy = make_strategy(config.strategy)
    check_global_batch(strategy, config.batch_size)
    keras.utils.set_random_seed(config.seed)
    return strategy


def choose_precision(config: RunConfig, state, log=print) -> RunConfig:
    """``config`` with its dtype policy settled and set, said with ``log``: the one given
    (``--precision``), else the resumed run's (``state``'s: its optimiser state is laid out
    for it), else this machine's default (:func:`~ctxenc_tf.training.strategy.default_precision`).
    Before any model is built."""
    if config.precision != AUTO_PRECISION:
        precision, why = config.precision, "as asked: --precision or --mixed-precision"
    elif state is not None:
        precision, why = state.config["precision"], "the run being resumed trains in it"
    else:
        precision, why = default_precision(run_jit_compile(config))
    set_precision(precision)
    log(f"precision: {precision} ({why})")
    return config.replace(precision=precision)


def report_skipped(skipped, log=print, show: int = 5) -> None:
    """Log how many files were skipped as unreadable and the first ``show`` of them."""
    if not skipped:
        return
    log(f"skipped {len(skipped)} unreadable image file(s):")
    for path, reason in skipped[:show]:
        log(f"  {path}: {reason}")
    if len(skipped) > show:
        log(f"  ... and {len(skipped) - show} more")


def find_training_data(config: RunConfig, log=print):
    """Find the data (and check a ``--cache`` file's folder). Returns ``(config, split)``
    with the model's ``trained_on`` saying which data trains it. Raises :class:`ConfigError`
    or :class:`DataError` (one line) when there is not enough of it to train on."""
    if config.cache and config.cache != "memory":
        cache_dir = os.path.dirname(os.path.abspath(config.cache))
        if not os.path.isdir(cache_dir) or not os.access(cache_dir, os.W_OK):
            raise ConfigError(f"--cache={config.cache}: {cache_dir} is not a writable directory")
    split = sources.find_sources(config)
    where = config.data_dir or f"the {len(split.train) + len(split.val)} bundled demo faces"
    log(f"data: {where} ({split.source}): {len(split.train)} train / {len(split.val)} val images")
    report_skipped(split.skipped, log)
    if len(split.train) < config.batch_size:
        raise DataError(f"{config.data_dir or sources.BUNDLED_FACES}: {len(split.train)} training "
                        f"images, fewer than --batch-size={config.batch_size}")
    trained_on = {"data_dir": os.path.abspath(config.data_dir) if config.data_dir else "",
                  "seed": config.seed, "val_fraction": config.val_fraction, "resize": config.resize,
                  "exclude": config.exclude, "train_limit": config.train_limit, "val_limit": config.val_limit}
    if split.source != "tfrecord":
        # Prepared records were split when prepared (prepared.json has its settings and names),
        # not by this run's seed and limits: evaluate cannot rebuild that split from the run's.
        trained_on["split"] = split_record(split.train.names, split.val.names, data_root(config))
    return config.replace(trained_on=trained_on), split


def data_root(config: RunConfig) -> str:
    """The folder the run's image paths are below: ``config.data_dir``, or the bundled faces."""
    return config.data_dir or sources.BUNDLED_FACES


def write_split(path: str, split, root: str) -> None:
    """Write the file names of the run's ``split`` (``train`` and ``val``, in order, relative
    to the data folder ``root``: :func:`~ctxenc_tf.data.fingerprint.split_names`) to
    ``path`` atomically: what ``evaluate`` names when a folder's files changed since
    (:func:`~ctxenc_tf.schemas.read_split`)."""
    names = {part: split_names(getattr(split, part).names, root) for part in ("train", "val")}
    atomic.write_bytes(path, json.dumps(names, indent=0).encode())


def hold_cache(config: RunConfig, fingerprint: str, held: contextlib.ExitStack) -> RunConfig:
    """``config`` with a ``--cache`` file replaced by the cache file of exactly this data
    (``fingerprint``), held for this run alone until ``held`` closes; no cache or an
    in-memory one is left as it is."""
    if config.cache in ("", "memory"):
        return config
    prefix = cache_prefix(config.cache, fingerprint, config.model.image_size, config.resize == "stretch")
    return config.replace(cache=held.enter_context(held_cache(prefix)))


def with_dataset_fill(config: RunConfig, train: ImageSource) -> RunConfig:
    """``config`` with the hole's fill (``config.model.fill_value``, three floats in
    ``[-1, 1]``): the given one, else the mean colour of the training images ``train``
    (:meth:`~ctxenc_tf.data.image_source.ImageSource.mean_colour`, seeded by
    ``config.seed``; it decodes up to 512 images). Build the model from the returned
    config: one built without a fill fills the hole with mid-grey."""
    if config.model.fill_value:
        return config
    return config.replace(fill_value=train.mean_colour(config.seed))


def choose_fill(config: RunConfig, state, train: ImageSource) -> RunConfig:
    """``config`` with the hole's fill: the one the resumed run (``state``) was trained with,
    else :func:`with_dataset_fill`'s."""
    if state is not None:
        return config.replace(fill_value=state.config["model"]["fill_value"])
    return with_dataset_fill(config, train)


def run_data(config: RunConfig, split, steps: int) -> RunData:
    """The :class:`RunData` of ``split`` as ``config`` batches it, ``steps`` batches an epoch. Raises :class:`DataError`
    if none of the sample images decodes."""
    val = pipeline.image_dataset(split.val, config, training=False) if split.val else None
    sample_files = (split.val or split.train).prefix(SAMPLE_COUNT)
    sample = next(iter(pipeline.image_dataset(sample_files, config, training=False)), None)
    if sample is None:
        raise DataError(f"{sample_files.names[0]}: none of the {len(sample_files)} sample images decodes")
    return RunData(split.train, steps, val,
                   tuple(np.asarray(part) for part in sample), "val_rec_loss" if val is not None else "rec_loss")


def build_or_restore(config: RunConfig, strategy, state, paths: RunPaths, log=print):
    """The compiled model under ``strategy``: new, or with the resume ``state``'s weights and
    optimisers (said with ``log``). Raises an error naming the folder when the disk is too
    small for the run's checkpoints and resume states, and :class:`ConfigError` when the
    state does not fit."""
    with strategy.scope():
        model = ContextEncoder(config.model)
        compile_for_run(model, config)
        # best, final, the resume state, the one before it and a temporary file: 4 states'
        # worth, 5 when the checkpoints carry the optimisers too.
        check_disk_space(config.output_dir, resume.state_bytes(model), 5 if config.checkpoint_optimizer else 4)
        if state is not None:
            resume.restore(model, paths.backup, state, config)
    if state is not None:
        changed = resume.changed_settings(state, config)
        log(f"resuming from {state.describe()} ({config.epochs} epochs in all; state in {paths.backup})"
            + (f"; changed settings: {', '.join(changed)}" if changed else ""))
        if state.epoch >= config.epochs:
            log(f"all {config.epochs} epochs are already done; raise --epochs to train longer")
    return model


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


def build_callbacks(config: RunConfig, fingerprint: str, paths: RunPaths, data: RunData,
                    best: float = np.inf, resumed=None, time_limit=None) -> RunCallbacks:
    """The standard callbacks: NaN/inf stop, best checkpoint of ``data.monitor`` (seeded
    with ``best``), CSV log, TensorBoard, grids of ``data.sample``, the resume state (after
    every epoch and every ``config.backup_steps`` steps, with the data ``fingerprint``;
    ``resumed`` is the state this run continues) and an optional wall-time limit in seconds."""
    best_checkpoint = BestCheckpoint(paths.best, monitor=data.monitor, best=best,
                                     optimizer_state=config.checkpoint_optimizer)
    return RunCallbacks(
        non_finite=StopOnNonFinite(),
        best=best_checkpoint,
        csv=EpochLog(paths.csv, append=True),
        tensorboard=keras.callbacks.TensorBoard(paths.logs),
        samples=SampleGrid(*data.sample, paths.samples, os.path.join(paths.logs, "samples"), config.sample_every),
        backup=resume.TrainingBackup(paths.backup, config, fingerprint, data.steps, config.backup_steps,
                                     best_checkpoint, resumed),
        time_limit=TimeLimit(time_limit) if time_limit else None,
    )


def fit_remaining(model, train: ImageSource, config: RunConfig, val_ds, callbacks, steps: int, state=None,
                  verbose="auto"):
    """``model.fit`` (with its ``verbose``) on the training images ``train`` over what is
    left of the run: the rest of ``state``'s interrupted epoch (its own ``fit``,
    ``steps - state.step`` steps), then the remaining epochs. Returns one ``History`` for both."""
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
            part = model.fit(pipeline.training_batches(train, config, start, skip, end), shuffle=False,
                             steps_per_epoch=steps - skip, initial_epoch=start, epochs=end,
                             validation_data=val_ds, callbacks=callbacks, verbose=verbose)
        history.epoch += part.epoch
        for key, values in part.history.items():
            history.history.setdefault(key, []).extend(values)
        if model.stop_training:
            break
    return history


def finish(model, config: RunConfig, paths: RunPaths, callbacks: RunCallbacks, log=print) -> None:
    """End the run as its callbacks left it: raise :class:`TrainingError` after a NaN/inf
    stop (``final.keras`` not written), say where a time limit stopped an unfinished run,
    and write ``final.keras``."""
    backup, timer = callbacks.backup, callbacks.time_limit
    if callbacks.non_finite.stopped:
        raise TrainingError(non_finite_message(callbacks.non_finite.stopped, paths, backup))
    finished = backup.last_saved is not None and backup.last_saved.epoch >= config.epochs
    if timer is not None and timer.stopped and not finished:
        done = backup.last_saved.describe() if backup.last_saved else "its first step"
        log(f"stopped at the time limit ({timer.seconds / 60:g} min) after {done}, of {config.epochs} "
            f"epochs asked for; rerun the same command to continue from there")
    save_checkpoint(model, paths.final, config.checkpoint_optimizer)


def non_finite_message(stopped: str, paths: RunPaths, backup) -> str:
    """One line for a run stopped by NaN/inf: what happened and which good files were kept."""
    kept = [f"{paths.best}" if os.path.exists(paths.best) else "",
            f"the resume state from {backup.last_saved.describe()}" if backup.last_saved else ""]
    kept = " and ".join(k for k in kept if k)
    then = "continue from the resume state" if backup.last_saved else "start again"
    return (f"training stopped: {stopped}. Kept the last good files: {kept or 'none yet'}; {paths.final} "
            f"was not written. Lower --learning-rate and rerun the same command to {then}")
