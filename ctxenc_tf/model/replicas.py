"""The model's view of data-parallel training: whether batch statistics must be synchronised."""

import keras


def synchronized_batch_norm() -> bool:
    """Whether batch normalisation built now should use global-batch statistics: under
    TensorFlow, true inside a ``tf.distribute`` strategy with more than one replica (each
    replica sees its own slice of the batch), so that the model computes the same function
    of the global batch as on one device. Under JAX, false: ``keras.distribution`` shards
    one global batch array, so the statistics are global already (and Keras reads the flag
    under TensorFlow only)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf  # only here, under the TensorFlow backend, where Keras has imported it

    return tf.distribute.get_strategy().num_replicas_in_sync > 1
