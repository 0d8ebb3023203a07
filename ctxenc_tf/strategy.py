"""``tf.distribute`` strategy and dtype policy selection from the config."""

import keras
import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Strategy for ``name``: ``default`` (one device), ``mirrored`` (all local GPUs, or all
    visible devices), ``multiworker`` (reads ``TF_CONFIG``), ``tpu``; ``auto`` picks
    ``mirrored`` when more than one GPU is visible, else ``default``."""
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}")


def set_precision(policy: str) -> None:
    """Set Keras' global dtype policy: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
    Model outputs stay float32 (their last layers say so)."""
    keras.config.set_dtype_policy(policy)


def uses_loss_scaling() -> bool:
    """Whether the current policy needs dynamic loss scaling (float16 compute)."""
    return keras.config.dtype_policy().compute_dtype == "float16"
