"""The model's view of the hardware it trains on: the kind of device, and whether batch
statistics must be synchronised across replicas."""

import keras


def devices() -> list:
    """The devices Keras computes on by default, ``"kind:index"`` (``"gpu:0"``, ...): the
    accelerators when there are any, else the CPU."""
    if keras.backend.backend() == "torch":  # keras.distribution lists no devices for PyTorch
        import torch  # only here, under the PyTorch backend, where Keras has imported it

        return [f"gpu:{i}" for i in range(torch.cuda.device_count())] or ["cpu:0"]
    return keras.distribution.list_devices()


def device_kind() -> str:
    """``"gpu"``, ``"tpu"`` or ``"cpu"``: the kind of device training runs on by default."""
    return devices()[0].split(":")[0]


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
