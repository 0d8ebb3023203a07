"""Data parallelism under JAX: ``keras.distribution.DataParallel``.

Each batch, at the global ``batch_size``, becomes one array sharded along the batch over
the devices; the jit-compiled step computes on it as on one device (the mean loss and the
batch-norm statistics are over the global batch), with the weights replicated. The
TensorFlow counterpart is :mod:`ctxenc_tf.training.strategy`'s ``tf.distribute``.
"""

import keras

from ctxenc_tf.errors import ConfigError

STRATEGIES = ("auto", "default", "mirrored")  # the --strategy values that mean something here


class DataParallel(keras.distribution.DataParallel):
    """``keras.distribution.DataParallel`` that also answers what training asks of a
    ``tf.distribute`` strategy: ``scope()`` (Keras') and ``num_replicas_in_sync``."""

    @property
    def num_replicas_in_sync(self) -> int:
        return int(self.device_mesh.devices.size)


def data_parallel(name: str) -> DataParallel:
    """Data parallelism for ``--strategy`` ``name``, set as Keras' distribution for the
    process (models built and fitted from now on use it): ``default`` one device (the first
    GPU or TPU if there is one, else the CPU), ``auto`` and ``mirrored`` every device of the
    default kind. Raises :class:`ConfigError` for strategies that only TensorFlow has."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy={name}: not available under KERAS_BACKEND=jax "
                          f"(one of {', '.join(STRATEGIES)})")
    devices = keras.distribution.list_devices()
    distribution = DataParallel(devices=devices[:1] if name == "default" else devices)
    keras.distribution.set_distribution(distribution)
    return distribution
