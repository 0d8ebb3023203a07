"""The training and evaluation steps under the TensorFlow backend: both networks' gradients
from ``tf.GradientTape`` on one forward pass, inside the caller's ``tf.distribute`` strategy."""

import tensorflow as tf
from keras import ops

from ctxenc_tf.compat.tensorflow_trainer import FusedAdam, NoSymbolicBuild, logs_for_workers


def _global_mean(per_example):
    """Mean over the *global* batch of per-example values, for gradients: the per-replica
    mean divided by the number of replicas (the optimiser sums across replicas)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return ops.mean(per_example) / float(replicas)


class TensorFlowSteps(NoSymbolicBuild):
    """``train_step`` / ``test_step`` of :class:`~ctxenc_tf.model.context_encoder.ContextEncoder`
    (``data`` = ``(images, masks)``), which supplies ``_step_values``, ``_update_trackers`` and the optimisers."""

    # Without XLA, TensorFlow runs Keras' Adam as a chain of element-wise kernels; its
    # fused kernel does the same update in one pass (see FusedAdam).
    adam_class = FusedAdam

    def train_step(self, data):
        images, mask = data
        g_vars = self.generator.trainable_variables
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            values = self._step_values(images, mask, training=True)
            g_scaled = self.g_optimizer.scale_loss(_global_mean(values["g_loss"]))
            if self.discriminator is not None:
                d_scaled = self.d_optimizer.scale_loss(_global_mean(values["d_loss"]))
        # Both networks step on the same forward pass, both gradients at the weights before
        # the step. The original Torch code reuses the discriminator's output of the D step
        # too, but pulls the generator's gradient back through the discriminator's updated
        # weights (docs/training.md, "Differences from the original code", measures it).
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)
        if self.discriminator is not None:
            d_vars = self.discriminator.trainable_variables
            self.d_optimizer.apply(d_tape.gradient(d_scaled, d_vars), d_vars)
        return logs_for_workers(self._update_trackers(values))

    def test_step(self, data):
        images, mask = data
        return logs_for_workers(self._update_trackers(self._step_values(images, mask, training=False)))
