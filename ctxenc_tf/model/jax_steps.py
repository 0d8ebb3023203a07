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
    for Keras' JAX trainer (``data`` = ``(images, masks)`` arrays), which supplies the
    forward pass (``_generator_pass``, ``_generator_values``, ``_discriminator_values``;
    ``_step_values`` for evaluation), ``_update_trackers`` and the optimisers."""

    adam_class = keras.optimizers.Adam  # XLA fuses its element-wise update

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Keras' JAX trainer carries the optimiser state as the state of one model.optimizer.
        self.optimizer = JointOptimizers(self.g_optimizer, self.d_optimizer)
        for kind in ("trainable_variables", "non_trainable_variables"):
            networks = [v for net in (self.generator, self.discriminator) if net is not None
                        for v in getattr(net, kind)]
            if [id(v) for v in getattr(self, kind)] != [id(v) for v in networks]:
                raise RuntimeError(f"ContextEncoder: {kind} are not the generator's then the "
                                   "discriminator's; JaxSteps._by_network cannot split them")

    def _by_network(self, values, kind) -> tuple:
        """``values`` of the model's ``kind`` variables (``"trainable_variables"`` or
        ``"non_trainable_variables"``: the generator's, then the discriminator's, as
        ``compile`` checks) as ``(generator's, discriminator's)``."""
        count = len(getattr(self.generator, kind))
        return list(values[:count]), list(values[count:])

    def _stateless(self, trainable, non_trainable, optimizer=None, optimizer_variables=()):
        """A ``StatelessScope`` in which the model's variables (and ``optimizer``'s, when
        given) read as the given values; what the code inside assigns stays in the scope."""
        mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable)]
        if optimizer is not None:
            mapping += zip(optimizer.variables, optimizer_variables)
        return keras.StatelessScope(state_mapping=mapping)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        images, mask = data
        g_weights, d_weights = self._by_network(trainable, "trainable_variables")
        g_statistics, d_statistics = self._by_network(non_trainable, "non_trainable_variables")
        g_slots, d_slots = self.optimizer.split(optimizer_variables)

        # 1. The generator's loss and its gradient with respect to the generator's weights:
        # the generator's forward pass, then the discriminator (its weights constant here)
        # on the prediction for the adversarial term. Loss scaling as Keras' own JAX step
        # does it (by the dynamic loss scale under float16, none otherwise).
        def generator_loss(g_weights):
            with self._stateless(g_weights + d_weights, non_trainable, self.g_optimizer, g_slots) as scope:
                prediction, target, region = self._generator_pass(images, mask, training=True)
                fake_logits = (None if self.discriminator is None
                               else self.discriminator(prediction, training=True))
                values = self._generator_values(prediction, target, region, fake_logits)
                scaled = self.g_optimizer.scale_loss(ops.mean(values["g_loss"]))
            return scaled, (values, prediction, target,
                            _current(scope, self.generator.non_trainable_variables, g_statistics))

        (_, (values, prediction, target, g_statistics)), g_grads = jax.value_and_grad(
            generator_loss, has_aux=True)(g_weights)

        # 2. The discriminator's loss and its gradient with respect to the discriminator's
        # weights, on the real target, then on step 1's prediction (an array here: no
        # gradient flows back into the generator). Both gradients are taken at the weights
        # before the step, as the TensorFlow step's two tapes over one forward pass have
        # them (the original Torch code pulls the generator's back through the updated
        # discriminator; docs/training.md measures it). Steps 1 and 2 both run the
        # discriminator on the prediction with the same weights, and XLA computes it once: by
        # XLA's cost analysis the step costs what one forward pass pulled back twice did
        # (51.3 GFLOP for 16 images at the paper's size; 63.7 when each gradient
        # differentiated the whole forward pass; docs/training.md).
        def discriminator_loss(d_weights):
            with self._stateless(g_weights + d_weights, non_trainable, self.d_optimizer, d_slots) as scope:
                d_loss, _ = self._discriminator_values(target, prediction, training=True)
                scaled = self.d_optimizer.scale_loss(ops.mean(d_loss))
            return scaled, (d_loss, _current(scope, self.discriminator.non_trainable_variables, d_statistics))

        if self.discriminator is not None:
            (_, (d_loss, d_statistics)), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(d_weights)
            values = {**values, "d_loss": d_loss}

        # 3. Each optimiser steps its own network.
        g_weights, g_slots = self.g_optimizer.stateless_apply(g_slots, g_grads, g_weights)
        if self.discriminator is not None:
            d_weights, d_slots = self.d_optimizer.stateless_apply(d_slots, d_grads, d_weights)

        # 4. The batch-norm statistics: the generator's from step 1, the discriminator's
        # from step 2, which moved them on the real batch, then on the prediction, as
        # ``_step_values`` does (step 1's discriminator call on the prediction alone is
        # dropped), so that they are those of one forward pass of both networks.
        non_trainable = g_statistics + d_statistics

        # 5. The trackers.
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (g_weights + d_weights, non_trainable, g_slots + d_slots, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        images, mask = data
        with self._stateless(trainable, non_trainable) as scope:
            values = self._step_values(images, mask, training=False)
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (trainable, _current(scope, self.non_trainable_variables, non_trainable), metrics_variables)

    def _tracked(self, metrics_variables, values):
        """Logs and new metric-variable values after the trackers see ``values``."""
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self._update_trackers(values)
        return logs, _current(scope, self.metrics_variables, metrics_variables)
