"""The training and evaluation steps under the JAX backend, stateless as Keras' JAX trainer
runs them (keras.io, "Customizing what happens in fit() with JAX"): each step takes the
model's state as arrays and returns the new state; ``fit`` writes it back to the variables.

The same algorithm as :mod:`ctxenc_tf.model.tensorflow_steps`: one forward pass of both
networks, the generator's loss differentiated with respect to the generator's weights and
the discriminator's loss with respect to the discriminator's, each network updated by its
own optimiser. Under ``keras.distribution.DataParallel`` the batch is one array sharded
across devices, so the mean over it is already the global-batch mean (TensorFlow's steps
divide a per-replica mean by the replica count instead).
"""

import jax
import keras
from keras import ops


class JointOptimizers:
    """The generator's and the discriminator's optimisers as the one ``model.optimizer``
    that Keras' JAX ``fit`` carries through its steps: it passes ``variables`` (both
    optimisers' state, the generator's first) to each step, syncs them back, and checks
    ``built``; Keras' learning-rate callbacks look for ``optimizers``."""

    def __init__(self, *optimizers):
        self.optimizers = [o for o in optimizers if o is not None]

    @property
    def built(self) -> bool:
        return all(o.built for o in self.optimizers)

    @property
    def variables(self) -> list:
        return [v for o in self.optimizers for v in o.variables]


def _current(scope, variables, values):
    """The values of ``variables`` after a ``StatelessScope``: assigned inside it, or as given."""
    return [value if (new := scope.get_current_value(v)) is None else new for v, value in zip(variables, values)]


class JaxSteps:
    """``train_step`` / ``test_step`` of :class:`~ctxenc_tf.model.context_encoder.ContextEncoder`
    for Keras' JAX trainer (``data`` = ``(images, masks)`` arrays), which supplies
    ``_step_values``, ``_update_trackers`` and the optimisers."""

    adam_class = keras.optimizers.Adam  # XLA fuses its element-wise update

    def compile(self, **kwargs):
        super().compile(**kwargs)
        self.optimizer = JointOptimizers(self.g_optimizer, self.d_optimizer)

    def _positions(self, network) -> list:
        """Where ``network``'s trainable variables are in the model's ``trainable_variables``."""
        index = {id(v): i for i, v in enumerate(self.trainable_variables)}
        return [index[id(v)] for v in network.trainable_variables]

    def _forward(self, trainable, non_trainable, images, mask, training, optimizer_variables=None):
        """``_step_values`` on the given variable values: ``(values, new non-trainable
        values, scaled losses)``, the last (the mean generator and discriminator losses,
        each scaled by its optimiser for float16) only when ``optimizer_variables`` is given."""
        mapping = [*zip(self.trainable_variables, trainable), *zip(self.non_trainable_variables, non_trainable)]
        if optimizer_variables is not None:
            mapping += zip(self.optimizer.variables, optimizer_variables)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            values = self._step_values(images, mask, training=training)
            scaled = [] if optimizer_variables is None else [
                optimizer.scale_loss(ops.mean(values[name]))
                for name, optimizer in (("g_loss", self.g_optimizer), ("d_loss", self.d_optimizer))
                if optimizer is not None]
        return values, _current(scope, self.non_trainable_variables, non_trainable), scaled

    def _tracked(self, metrics_variables, values):
        """Logs and new metric-variable values after the trackers see ``values``."""
        with keras.StatelessScope(state_mapping=list(zip(self.metrics_variables, metrics_variables))) as scope:
            logs = self._update_trackers(values)
        return logs, _current(scope, self.metrics_variables, metrics_variables)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        images, mask = data
        optimizers = self.optimizer.optimizers

        # 1. One forward pass (BN statistics updated), the optimisers' loss scaling applied.
        def losses(trainable):
            values, new_non_trainable, scaled = self._forward(
                trainable, non_trainable, images, mask, True, optimizer_variables)
            return tuple(scaled), (values, new_non_trainable)

        scaled, backward, (values, non_trainable) = jax.vjp(losses, trainable, has_aux=True)
        # 2. Each network steps on the gradient of its own loss (both from that pass),
        # as in the original Torch code and the TensorFlow steps.
        trainable = list(trainable)
        new_optimizer_variables = []
        for k, (optimizer, network) in enumerate(zip(optimizers, (self.generator, self.discriminator))):
            (grads,) = backward(tuple(ops.ones_like(s) if i == k else ops.zeros_like(s) for i, s in enumerate(scaled)))
            positions = self._positions(network)
            start = len(new_optimizer_variables)
            weights, slots = optimizer.stateless_apply(
                optimizer_variables[start:start + len(optimizer.variables)],
                [grads[i] for i in positions], [trainable[i] for i in positions])
            for i, w in zip(positions, weights):
                trainable[i] = w
            new_optimizer_variables += slots
        # 3. The trackers.
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (trainable, non_trainable, new_optimizer_variables, metrics_variables)

    def test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        images, mask = data
        values, non_trainable, _ = self._forward(trainable, non_trainable, images, mask, False)
        logs, metrics_variables = self._tracked(metrics_variables, values)
        return logs, (trainable, non_trainable, metrics_variables)
