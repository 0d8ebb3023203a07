"""What the model needs from Keras' TensorFlow trainer and from TensorFlow beyond their
public APIs: no pre-``fit`` symbolic build, logs that multi-worker strategies can reduce,
and Adam on TensorFlow's fused kernel. Imported under the TensorFlow backend only."""

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
    reads and writes a variable-sized tensor: without XLA, for the generator's 71M
    parameters, the largest cost of a CPU training step after the convolutions. The fused
    kernel reads gradient, variable and both moments once and writes the three back. XLA
    fuses Keras' chain by itself; the kernel has an XLA lowering, so nothing changes there.
    The results differ by rounding only: the kernel forms ``1 - b1`` and ``1 - b2`` in the
    variable's dtype, Keras in float64 and then rounds (for 0.999 in float32 they are
    1.3e-5 apart, relatively; in float64, or for betas such as 0.5, they are equal and so
    is every step). It reads Keras' private slot lists (``_momentums``, ``_velocities``,
    ``_get_variable_index``). ``amsgrad`` and sparse gradients take Keras' own update."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        # Keras' TensorFlow backend hands this the tf.Variable (under a tf.distribute
        # strategy, the copy being updated); the slots' handles resolve to the same
        # device's copy inside the strategy's update.
        index = self._get_variable_index(variable)
        step = ops.cast(self.iterations + 1, dtype)
        # The powers as Keras forms them (its cast goes through float32); the constants
        # straight in the variable's dtype, as Keras' arithmetic with Python floats has them.
        powers = [ops.power(ops.cast(beta, dtype), step) for beta in (self.beta_1, self.beta_2)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=powers[0], beta2_power=powers[1], lr=ops.cast(learning_rate, dtype),
            beta1=ops.convert_to_tensor(self.beta_1, dtype), beta2=ops.convert_to_tensor(self.beta_2, dtype),
            epsilon=ops.convert_to_tensor(self.epsilon, dtype), grad=ops.cast(gradient, dtype))
