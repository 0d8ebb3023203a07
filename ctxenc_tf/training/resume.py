"""Resumable training state in ``output_dir/backup``: generator and discriminator weights
(with batch-norm statistics), both Adam optimisers, the epoch and the step inside it,
the best monitored value and the running epoch metrics.

Written atomically after every epoch (and every ``backup_steps`` steps): the weights go
to a new ``state-eEEEE-sSSSSSS.weights.h5`` (temp file + rename), then ``state.json``,
which names it with the weights' SHA-256, is replaced (temp file + rename); the state it
replaces stays as ``state.prev.json`` with its weights, older weight files are removed. A
kill at any moment leaves a ``state.json`` that names a complete weights file; a weights
file damaged later (its hash differs) is noticed, and the previous state used. Together
with the input pipeline, whose batches are a pure function of ``(seed, epoch, step)``
(:func:`ctxenc_tf.data.pipeline.training_batches`), rerunning the same command continues exactly
where the last state was written.

A rerun resumes only a run of the same model (:class:`~ctxenc_tf.config.ModelConfig`) on
the same data (:func:`~ctxenc_tf.data.fingerprint.data_fingerprint`); run settings may
change, except :data:`FIXED_RUN_SETTINGS`.
"""

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import warnings

import keras
import numpy as np

from ctxenc_tf import schemas
from ctxenc_tf.config import AUTO_PRECISION, ModelConfig, RunConfig
from ctxenc_tf.errors import ConfigError, TrainingError, one_line
from ctxenc_tf.training.callbacks import scalar
from ctxenc_tf.utils import atomic

STATE_FILE = "state.json"

PREVIOUS_STATE_FILE = "state.prev.json"  # the state before the newest, kept with its weights

# Run settings a resumed run cannot honour: the saved step counts batches of this size in
# this seeded order, the optimiser state's layout depends on the precision policy, and
# the resize rule and validation holes define the images and the best-so-far metric.
# Any other run setting (epochs, learning rates, paths, cache, strategy, XLA, ...) may change.
FIXED_RUN_SETTINGS = ("batch_size", "seed", "precision", "resize", "val_mask")


@dataclasses.dataclass
class TrainingState:
    """Where a run stands: ``epoch`` epochs completed plus ``step`` steps of the next one."""

    epoch: int
    step: int
    weights: str  # file name inside the backup directory
    best: float  # best monitored value so far (``inf`` if none)
    trackers: dict  # metric name -> variable values of the running epoch mean
    config: dict  # the RunConfig, as a dict
    data: str  # fingerprint of the training data (ctxenc_tf.data.fingerprint)
    sha256: str = ""  # of the weights file, set when it is written

    def describe(self) -> str:
        """Human-readable position, e.g. ``epoch 3, step 40`` (1-based epoch)."""
        return f"epoch {self.epoch + 1}, step {self.step}" if self.step else f"the end of epoch {self.epoch}"


def optimizers(model) -> list:
    """The model's optimisers (``g_optimizer`` and, with a discriminator, ``d_optimizer``)."""
    return [opt for opt in (model.g_optimizer, model.d_optimizer) if opt is not None]


def state_variables(model) -> list:
    """Every variable a saved state holds: weights, batch-norm statistics, optimiser slots."""
    return list(model.weights) + [v for opt in optimizers(model) for v in opt.variables]


def state_bytes(model) -> int:
    """Bytes of one saved state: every model and optimiser variable."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in state_variables(model))


def all_finite(model) -> bool:
    """Whether every weight, batch-norm statistic and optimiser slot is finite."""
    return all(np.isfinite(np.asarray(v)).all() for v in state_variables(model)
               if np.dtype(v.dtype).kind == "f")


def _changes(old: dict, new: dict, keys) -> list:
    """``'--flag old -> new'`` for each of ``keys`` whose value differs between ``old`` and ``new``."""
    return [f"--{k.replace('_', '-')} {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def model_differences(old: dict, model: ModelConfig) -> list:
    """The model settings (see :meth:`ModelConfig.identity`) in which ``model`` differs from
    the model config dict ``old`` of an earlier run, as ``'--flag old -> new'``."""
    new = model.identity()
    return _changes(ModelConfig.from_dict(old).identity(), new, new)


def _read_state(directory: str, name: str, steps_per_epoch: int):
    """``(state, None)`` for the state file ``name`` in ``directory`` when it passes its
    schema (:func:`~ctxenc_tf.schemas.read_training_state`) and its weights file is whole
    (the weights' content hash matches), else ``(None, what is wrong)``."""
    path = os.path.join(directory, name)
    try:
        state = TrainingState(**schemas.read_training_state(path, steps_per_epoch))
    except FileNotFoundError:
        return None, f"{name} is missing"
    except ConfigError as e:  # its line names the file by its path: by its name here
        return None, str(e).replace(path, name, 1)
    weights = os.path.join(directory, state.weights)
    if not os.path.isfile(weights):
        return None, f"{name} names {state.weights}, which is missing"
    if not state.sha256:
        return None, f"{name} was written by an older version (no content hash)"
    if file_sha256(weights) != state.sha256:
        return None, f"{state.weights} does not match its content hash"
    return state, None


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state(directory: str, config: RunConfig, data: str, steps_per_epoch: int,
               accept_changed_data: bool = False, log=print):
    """The saved :class:`TrainingState` in ``directory``, or ``None`` if there is none.
    ``steps_per_epoch``: the steps of an epoch of this rerun (a saved step lies below it).

    A state whose file fails its schema or whose weights are damaged (their content hash
    differs) is replaced by
    the state before it when that one is whole (said with ``log``). Raises
    :class:`ConfigError` (one line) if no whole state is left, or the rerun cannot continue
    it: other model settings, a change of a
    :data:`FIXED_RUN_SETTINGS` setting, or training data whose fingerprint ``data``
    differs from the state's (unless ``accept_changed_data``).
    """
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None
    state, damage = _read_state(directory, STATE_FILE, steps_per_epoch)
    if damage:
        state, earlier = _read_state(directory, PREVIOUS_STATE_FILE, steps_per_epoch)
        if earlier:
            raise ConfigError(f"{path}: the resume state is damaged ({damage}) and no earlier good "
                              "state is kept; use a new --output-dir")
        log(f"{path}: the newest resume state is damaged ({damage}); resuming from the one "
            f"before it ({state.describe()})")
    old = RunConfig.from_dict(state.config).to_dict()
    # The fill colour is measured from the data (equal for equal data); the run keeps the
    # one it was trained with, so it is not compared here but restored by the caller.
    model = config.model.replace(fill_value=old["model"]["fill_value"])
    # Without --precision the rerun takes the run's own (fit.choose_precision).
    fixed = [k for k in FIXED_RUN_SETTINGS if not (k == "precision" and config.precision == AUTO_PRECISION)]
    differ = model_differences(old["model"], model) + _changes(old, config.to_dict(), fixed)
    if differ:
        raise ConfigError(f"{config.output_dir} holds a run with other settings ({', '.join(differ)}); "
                          "rerun with the same flags to resume it, or use a new --output-dir")
    if state.data != data and not accept_changed_data:
        raise ConfigError(f"{config.output_dir}: the training data changed since this run started "
                          "(files added, removed or modified, or other --train-limit/--val-limit/"
                          "--val-fraction); restore it, use a new --output-dir, or pass "
                          "--accept-changed-data to continue on the new data")
    return state


def changed_settings(state: TrainingState, config: RunConfig) -> list:
    """The run settings changed since ``state`` was saved (see :func:`_changes`), to report."""
    new = config.to_dict()
    return _changes(state.config, new, [k for k in new if k not in ("model", "output_dir")])


def restore(model, directory: str, state: TrainingState, config: RunConfig) -> None:
    """Load ``state``'s weights and optimiser state into the compiled ``model``, then set
    the learning rates from ``config`` (they may have changed). Raises
    :class:`ConfigError` if any of it does not fit (nothing is skipped silently)."""
    path = os.path.join(directory, state.weights)
    layout = {name: len(tracker.variables) for name, tracker in model.trackers.items()}
    if state.step and {name: len(values) for name, values in state.trackers.items()} != layout:
        raise ConfigError(f"{os.path.join(directory, STATE_FILE)}: field 'trackers': expected "
                          f"{', '.join(sorted(layout))} (this model's metrics), got "
                          f"{', '.join(sorted(state.trackers)) or 'none'}; use a new --output-dir")
    try:
        with warnings.catch_warnings():  # Keras only warns when it skips an optimiser's state
            warnings.filterwarnings("error", "Skipping variable loading", UserWarning)
            model.load_weights(path)
    except (UserWarning, ValueError) as e:
        raise ConfigError(f"{path}: the resume state does not fit this model ({one_line(e)}); "
                          "use a new --output-dir") from e
    model.g_optimizer.learning_rate.assign(config.g_learning_rate)
    if model.d_optimizer is not None:
        model.d_optimizer.learning_rate.assign(config.learning_rate)


def save_state(model, directory: str, state: TrainingState, previous: TrainingState | None = None) -> TrainingState:
    """Write ``state`` (with ``model``'s weights and their content hash) atomically; see the
    module docstring. ``previous``, the state it replaces (as written, its weights whole),
    is kept as :data:`PREVIOUS_STATE_FILE` with its weights; older weights are removed.
    Returns the state as written. Raises
    :class:`TrainingError` naming the folder if it cannot be written (the previous state
    stays intact)."""
    os.makedirs(directory, exist_ok=True)
    weights = os.path.join(directory, state.weights)
    current = os.path.join(directory, STATE_FILE)
    try:
        with atomic.atomic_path(weights, suffix=".weights.h5") as tmp:
            model.save_weights(tmp)
            state = dataclasses.replace(state, sha256=file_sha256(tmp))
        if previous is not None and previous.weights != state.weights:
            atomic.write_bytes(os.path.join(directory, PREVIOUS_STATE_FILE),
                               json.dumps(dataclasses.asdict(previous), indent=1).encode())
        atomic.write_bytes(current, json.dumps(dataclasses.asdict(state), indent=1).encode())
    except OSError as e:
        raise TrainingError(f"cannot write the resume state to {directory} ({e.strerror or e}); "
                            "the previous state is intact") from e
    named = {state.weights}
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # no usable previous state
        with open(os.path.join(directory, PREVIOUS_STATE_FILE)) as f:
            named.add(json.load(f)["weights"])
    for old in glob.glob(os.path.join(directory, "state-*.weights.h5")):
        if os.path.basename(old) not in named:
            os.remove(old)
    return state


class TrainingBackup(keras.callbacks.Callback):
    """Save the :class:`TrainingState` after every completed epoch and, when ``every_steps``
    > 0, every ``every_steps`` steps inside an epoch. An epoch cut short (time limit) is
    saved as a mid-epoch state. Nothing is saved once a loss or a weight is NaN/inf, so the
    last state on disk is always a good one.

    ``resumed``: the state the run continues from; its epoch's running metrics are put back
    so that epoch's logged averages match an uninterrupted run. ``best_checkpoint``: the
    :class:`~ctxenc_tf.training.callbacks.BestCheckpoint` whose ``best`` is recorded in the state
    (place this callback after it).
    """

    def __init__(self, directory: str, config: RunConfig, data: str, steps_per_epoch: int,
                 every_steps: int = 0, best_checkpoint=None, resumed: TrainingState | None = None):
        super().__init__()
        self.directory, self.config, self.data = directory, config, data
        self.steps_per_epoch, self.every_steps = steps_per_epoch, every_steps
        self.best_checkpoint, self.resumed = best_checkpoint, resumed
        self.epoch, self.offset, self.steps_done = 0, 0, 0
        self.last_saved = resumed

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.offset = epoch, 0
        r = self.resumed
        if r is not None and r.step and epoch == r.epoch:
            self.offset = r.step
            for name, values in r.trackers.items():
                for variable, value in zip(self.model.trackers[name].variables, values):
                    variable.assign(value)
        self.steps_done = self.offset
        self.train_trackers = None

    def on_test_begin(self, logs=None):
        # fit's validation pass runs before on_epoch_end and resets the shared metric
        # trackers: keep the training epoch's running means for a mid-epoch save.
        self.train_trackers = self._tracker_values()

    def _tracker_values(self):
        return {name: [scalar(v) for v in t.variables] for name, t in self.model.trackers.items()}

    def on_train_batch_end(self, batch, logs=None):
        before, self.steps_done = self.steps_done, self.offset + batch + 1
        every = self.every_steps
        if every and self.steps_done < self.steps_per_epoch and self.steps_done // every > before // every:
            self._save(self.epoch, self.steps_done, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.steps_done >= self.steps_per_epoch:
            self._save(epoch + 1, 0, logs)
        elif self.steps_done > 0:
            self._save(epoch, self.steps_done, logs)

    def _save(self, epoch, step, logs):
        losses = [v for k, v in (logs or {}).items() if k.endswith("loss")]
        if not all(np.isfinite(scalar(v)) for v in losses) or not all_finite(self.model):
            return
        best = self.best_checkpoint.best if self.best_checkpoint is not None else float("inf")
        trackers = self.train_trackers or self._tracker_values()
        state = TrainingState(epoch, step, schemas.WEIGHTS_NAME.format(epoch=epoch, step=step),
                              float(best), trackers, self.config.to_dict(), self.data)
        self.last_saved = save_state(self.model, self.directory, state, self.last_saved)
