"""What the model needs from Keras' JAX trainer (``keras.src.backend.jax.trainer.JAXTrainer``)
beyond its public API: a place for two optimisers where it expects one. Imports no TensorFlow."""


class JointOptimizers:
    """The generator's and the discriminator's optimisers (``None`` for a network without
    one) as the one ``model.optimizer`` that Keras' JAX ``fit`` carries: it reads
    ``variables`` (both optimisers' state, the generator's first) as the optimiser part of
    the state it passes to each ``train_step``, writes the state the step returns back to
    them (``jax_state_sync``), shards and frees them between epochs, and checks ``built``
    before the first step. Keras' learning-rate callbacks step each of ``optimizers``.
    ``tests/test_compat.py`` checks that the trainer still does so."""

    def __init__(self, *optimizers):
        self._given = optimizers
        self.optimizers = [o for o in optimizers if o is not None]

    @property
    def built(self) -> bool:
        return all(o.built for o in self.optimizers)

    @property
    def variables(self) -> list:
        return [v for o in self.optimizers for v in o.variables]

    def split(self, values) -> list:
        """``values`` of :attr:`variables` as one list per optimiser given, in their order
        (an empty list for ``None``)."""
        parts, start = [], 0
        for optimizer in self._given:
            count = len(optimizer.variables) if optimizer is not None else 0
            parts.append(list(values[start:start + count]))
            start += count
        return parts
