"""The model's view of ``tf.distribute``: how many replicas share the global batch."""

import tensorflow as tf


def synchronized_batch_norm() -> bool:
    """Whether batch normalisation built now should use global-batch statistics: true
    under a strategy with more than one replica, so that the model computes the same
    function of the global batch as on one device."""
    return tf.distribute.get_strategy().num_replicas_in_sync > 1
