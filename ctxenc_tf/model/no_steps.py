"""The steps under a backend the model cannot train on (PyTorch): the networks build, run
and load there; training needs TensorFlow or JAX."""

import keras


class NoSteps:
    """Refuses ``fit`` / ``evaluate`` with the reason instead of Keras' default steps."""

    adam_class = keras.optimizers.Adam  # training.optimizers.compile_for_run still builds them

    def train_step(self, *args, **kwargs):
        raise NotImplementedError("ContextEncoder trains under KERAS_BACKEND=tensorflow or jax only")

    test_step = train_step
