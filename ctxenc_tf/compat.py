"""The only place that touches private Keras or TensorFlow APIs. Each workaround names
the upstream behaviour it depends on; ``tests/test_architecture.py`` fails when that
behaviour's hook disappears, so an upgrade that changes it is noticed, not silently broken.
"""

import keras
import tensorflow as tf
from keras import ops


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


@keras.saving.register_keras_serializable(package="ctxenc_tf")
class FusedAdam(keras.optimizers.Adam):
    """``keras.optimizers.Adam`` (same arguments, slots, config and checkpoints) whose
    update under TensorFlow is its fused kernel, ``tf.raw_ops.ResourceApplyAdam``: ``m +=
    (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)``, ``var -= lr sqrt(1 - b2^t) / (1 - b1^t)
    m / (sqrt(v) + eps)``, the formula and order of operations of Keras' own update.

    Keras' ``Adam.update_step`` is a chain of element-wise ops, each its own kernel that
    reads and writes a variable-sized tensor. For the generator's 71M parameters, without
    XLA, that took 0.27 s of a 1.5 s training step at batch 64 on a 2-core Xeon
    (TensorFlow's profiler); the fused kernel reads gradient, variable and both moments
    once and writes the three back, in 0.08 s. XLA fuses Keras' chain by itself; the
    kernel has an XLA lowering, so nothing changes there.
    The results differ by rounding only: the kernel forms ``1 - b2`` in float32, Keras in
    float64 (for 0.999 they are 1.3e-5 apart, relatively), and its vector code may round
    sqrt and division otherwise (float64 here: within 2e-12 of an update). It reads Keras'
    private slot lists (``_momentums``, ``_velocities``, ``_get_variable_index``).
    ``amsgrad`` and sparse gradients take Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        # Keras hands its TensorFlow backend the tf.Variable (under a tf.distribute
        # strategy, the copy being updated); the slots' handles resolve to the same
        # device's copy inside the strategy's update.
        variable = variable.value if isinstance(variable, keras.Variable) else variable
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=ops.power(beta_1, step), beta2_power=ops.power(beta_2, step),
            lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype), grad=ops.cast(gradient, dtype))
