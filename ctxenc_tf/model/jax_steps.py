"""The training and evaluation steps under the JAX backend, stateless as Keras' JAX trainer
runs them (keras.io, "Customizing what happens in fit() with JAX"): each step takes the
model's state as arrays and returns the new state; ``fit`` writes it back to the variables.

The same algorithm as :mod:`ctxenc_tf.model.tensorflow_steps`: the generator's loss
differentiated with respect to the generator's weights and the discriminator's loss with
respect to the discriminator's, both at the weights before the step, each network updated
by its own optimiser. Under ``keras.distribution.DataParallel`` the batch is one array
sharded across devices, so the mean over it is already the global-batch mean (TensorFlow's
steps divide a per-replica mean by the replica count instead).
"""

import jax
import keras
from keras import ops

from ctxenc_tf.compat.jax_trainer import JointOptimizers


def _current(scope, variables, values):
    """The values of ``variables`` after a ``StatelessScope``: assigned inside it, or as given."""
    return [value if (new := scope.get_current_value(v)) is None else new for v, value in zip(variables, values)]


class JaxSteps:
    """``train_step`` / ``test_step`` of :class:`~ctxenc_tf.model.context_encoder.ContextEncoder`
    for Keras' JAX trainer (``data`` = ``(images, masks)`` arrays), which supplies
    ``_step_values``, ``_update_trackers`` and the optimisers."""

    adam_class = keras.optimizers.Adam  # XLA fuses its element-wise update

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Keras' JAX trainer carries the optimiser state as the state of one model.optimizer.
        self.optimizer = JointOptimizers(self.g_optimizer, self.d_optimizer)
        networks = [v for net in (self.generator, self.discriminator) if net is not None
                    for v in net.trainable_variables]
        if [id(v) for v in self.trainable_variables] != [id(v) for v in networks]:
            raise RuntimeError("ContextEncoder: trainable_variables are not the generator's then the "
                               "discriminator's; JaxSteps._by_network cannot split them")

    def _by_network(self, trainable) -> tuple:
        """``trainable`` (values of the model's ``trainable_variables``: the generator's, then
        the discriminator's, as ``compile`` checks) as ``(generator's, discriminator's)``."""
        count = len(self.generator.trainable_variables)
        return list(trainable[:count]), list(trainable[count:])

    def _stateless_values(self, trainable, non_trainable, images, mask, training):
        """``_step_values`` (one forward pass of both networks) on the given variable values:
        ``(values, new non-trainable values)`` (batch-norm statistics move when ``training``)."""
        mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            values = self._step_values(images, mask, training=training)
        return values, _current(scope, self.non_trainable_variables, non_trainable)

    def _scaled_loss(self, name, optimizer, optimizer_variables, trainable, non_trainable, images, mask):
        """The batch mean of the loss ``name`` after a training forward pass, scaled by
        ``optimizer`` (by its dynamic loss scale, one of ``optimizer_variables``, under
        float16; unchanged otherwise), as Keras' own JAX step scales its loss:
        ``(scaled loss, (values, new non-trainable values))``, for ``jax.value_and_grad``."""
        values, non_trainable = self._stateless_values(trainable, non_trainable, images, mask, training=True)
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_variables))):
            scaled = optimizer.scale_loss(ops.mean(values[name]))
        return scaled, (values, non_trainable)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        images, mask = data
        g_weights, d_weights = self._by_network(trainable)
        g_slots, d_slots = self.optimizer.split(optimizer_variables)

        def g_loss(g_weights):  # the discriminator's weights held constant
            return self._scaled_loss("g_loss", self.g_optimizer, g_slots, g_weights + d_weights,
                                     non_trainable, images, mask)

        def d_loss(d_weights):  # the generator's weights held constant
            return self._scaled_loss("d_loss", self.d_optimizer, d_slots, g_weights + d_weights,
                                     non_trainable, images, mask)

        # Both gradients first, at the weights before the step, as the TensorFlow step's two
        # tapes over one forward pass (and the original Torch code) have them; then each
        # optimiser steps its own network. Each gradient traces its own forward pass, and XLA
        # merges only part of the two: by its cost analysis the step has about a quarter more
        # FLOPs than one pass would (Keras 3.15, JAX 0.10.2, CPU; docs/training.md).
        (_, (values, new_non_trainable)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(g_weights)
        if self.discriminator is not None:
            d_grads, _ = jax.grad(d_loss, has_aux=True)(d_weights)
            d_weights, d_slots = self.d_optimizer.stateless_apply(d_slots, d_grads, d_weights)
        g_weights, g_slots = self.g_optimizer.stateless_apply(g_slots, g_grads, g_weights)
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (g_weights + d_weights, new_non_trainable, g_slots + d_slots, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        images, mask = data
        values, non_trainable = self._stateless_values(trainable, non_trainable, images, mask, training=False)
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (trainable, non_trainable, metrics_variables)

    def _tracked(self, metrics_variables, values):
        """Logs and new metric-variable values after the trackers see ``values``."""
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self._update_trackers(values)
        return logs, _current(scope, self.metrics_variables, metrics_variables)
