"""The only place that touches private Keras or TensorFlow APIs. Each workaround names
the upstream behaviour it depends on; ``tests/test_architecture.py`` fails when that
behaviour's hook disappears, so an upgrade that changes it is noticed, not silently broken.
"""

import tensorflow as tf


class NoSymbolicBuild:
    """Mixin for a ``keras.Model`` whose parts are built at construction: skips Keras'
    private pre-``fit`` symbolic build (``keras.Model._maybe_symbolic_build``, Keras 3).

    That build has nothing to do for a model whose networks are built functional models
    and whose optimisers are its own attributes, and under ``MultiWorkerMirroredStrategy``
    its ``strategy.reduce`` of an ``(images, masks)`` batch fails."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return


def logs_for_workers(logs: dict) -> dict:
    """Metric logs as Keras can average them across workers: one-element vectors under a
    multi-worker ``MultiWorkerMirroredStrategy``, else unchanged.

    Keras reduces logs with ``strategy.reduce(MEAN, axis=0)``, which needs an axis (scalars
    fail: tensorflow/tensorflow#72388). Whether the strategy spans several workers is only
    exposed privately (``strategy.extended._in_multi_worker_mode()``)."""
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode():
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs
