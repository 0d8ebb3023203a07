"""How a run compiles its model: the paper's Adam for each network and the XLA rule, from a
:class:`~ctxenc_tf.config.RunConfig`. ``train.py``, the benchmarks and the Python API
(docs/training.md) all compile through :func:`compile_for_run`."""

import keras

from ctxenc_tf.config import RunConfig
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.model.precision import uses_loss_scaling
from ctxenc_tf.model.replicas import device_kind


def default_jit_compile() -> bool:
    """XLA for training under JAX (its only compiler: without it JAX runs op by op) and,
    under TensorFlow, when a GPU or TPU is present. On CPUs TensorFlow's own (oneDNN)
    kernels trained the default model faster than XLA's once the bottleneck became matrix
    products: 1.4x on a 2-core Intel Xeon, 1.6x on a 2-core AMD EPYC (Zen 4)
    (``python -m ctxenc_tf bench``, docs/performance.md)."""
    if keras.backend.backend() == "jax":
        return True
    return device_kind() != "cpu"


def run_jit_compile(run: RunConfig) -> bool:
    """Whether ``run`` trains with XLA: ``run.jit_compile`` (``--jit-compile`` /
    ``--no-jit-compile``) if set, else :func:`default_jit_compile`."""
    return default_jit_compile() if run.jit_compile is None else run.jit_compile


def compile_for_run(model: ContextEncoder, run: RunConfig) -> None:
    """``model.compile`` as ``run`` trains it; call it in the strategy scope the model was
    built in (``compile`` creates the optimisers' slots there).

    Each network gets Adam with ``run.beta_1`` and Torch's epsilon, 1e-8 (the original
    code's; Keras' default is 1e-7): the generator at ``run.g_learning_rate`` (the learning
    rate, x10 when mixing losses), the discriminator at ``run.learning_rate``. The Adam is
    the backend steps' ``adam_class`` (:class:`~ctxenc_tf.compat.tensorflow_trainer.FusedAdam`
    under TensorFlow, ``keras.optimizers.Adam`` under JAX), in a ``LossScaleOptimizer``
    under a float16 policy. XLA as :func:`run_jit_compile` says; ``run.steps_per_execution``."""

    def adam(learning_rate):
        optimizer = model.adam_class(learning_rate, beta_1=run.beta_1, epsilon=1e-8)
        return keras.optimizers.LossScaleOptimizer(optimizer) if uses_loss_scaling() else optimizer

    model.compile(adam(run.g_learning_rate), adam(run.learning_rate) if model.discriminator is not None else None,
                  jit_compile=run_jit_compile(run),
                  steps_per_execution=run.steps_per_execution)
