"""Data parallelism under JAX: ``keras.distribution.DataParallel``.

Each batch, at the global ``batch_size``, becomes one array sharded along the batch over
the devices; the jit-compiled step computes on it as on one device (the mean loss and the
batch-norm statistics are over the global batch), with the weights replicated. The
TensorFlow counterpart is :mod:`ctxenc_tf.training.strategy`'s ``tf.distribute``.
"""

import contextlib

import keras

from ctxenc_tf.errors import ConfigError

STRATEGIES = ("auto", "default", "mirrored")  # the --strategy values that mean something here


class DataParallel(keras.distribution.DataParallel):
    """``keras.distribution.DataParallel`` that also answers what training asks of a
    ``tf.distribute`` strategy: ``scope()`` (Keras') and ``num_replicas_in_sync``."""

    @property
    def num_replicas_in_sync(self) -> int:
        return int(self.device_mesh.devices.size)


class OneDevice:
    """Training on one device: no distribution at all, as Keras trains without one (a
    one-device mesh would only add sharding, and recompile the step when ``fit`` resets the
    metrics). Answers what training asks of a strategy."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def data_parallel(name: str) -> DataParallel | OneDevice:
    """Data parallelism for ``--strategy`` ``name``: ``default`` one device (the first GPU
    or TPU if there is one, else the CPU), ``auto`` and ``mirrored`` every device of the
    default kind. Several devices are set as Keras' distribution for the process (models
    built and fitted from now on use it). Raises :class:`ConfigError` for strategies that
    only TensorFlow has."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy={name}: not available under KERAS_BACKEND=jax "
                          f"(one of {', '.join(STRATEGIES)})")
    devices = keras.distribution.list_devices()
    if name == "default" or len(devices) == 1:
        return OneDevice()
    distribution = DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    return distribution


def check_global_batch(strategy, batch_size: int) -> int:
    """Per-replica batch size for a global ``batch_size`` under ``strategy`` (a
    ``tf.distribute`` strategy, :class:`DataParallel` or :class:`OneDevice`); raises :class:`ConfigError` unless
    it divides evenly (uneven shares would weight examples unequally in the mean loss)."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"--batch-size={batch_size}: must be a multiple of the "
                          f"{replicas} replicas of the distribution strategy")
    return batch_size // replicas
