"""The private Keras and TensorFlow behaviour ``ctxenc_tf/compat/`` relies on is still there:
if an upgrade renames a hook or changes what a trainer reads, a workaround silently stops
working, so these tests fail first."""

import importlib.util
import inspect
import os
import subprocess
import sys

import keras
import numpy as np

from helpers import REPO, not_installed


def test_tensorflow_trainer_hooks_still_exist():
    """``compat.tensorflow_trainer`` overrides ``Model._maybe_symbolic_build``, reads
    Adam's slot lists and asks a multi-worker strategy whether it spans workers."""
    import tensorflow as tf
    from tensorflow.python.distribute.collective_all_reduce_strategy import CollectiveAllReduceExtended

    assert callable(getattr(keras.Model, "_maybe_symbolic_build", None))
    adam = keras.optimizers.Adam()
    adam.build([keras.Variable(np.zeros(3))])
    assert len(adam._momentums) == len(adam._velocities) == 1 and callable(adam._get_variable_index)
    assert issubclass(tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.Strategy)
    assert callable(getattr(CollectiveAllReduceExtended, "_in_multi_worker_mode", None))


def test_tensorflow_profiler_trace_still_reads_as_ops(tmp_path):
    """``compat.tensorflow_profiler`` reads the trace's ``XSpace`` protocol buffer and takes
    the ``scope/op:Type`` events on the executor's ``tf_Compute`` threads as the ops run: a
    profiled ``tf.function`` with a named matmul shows up there, with its duration."""
    import tensorflow as tf

    from ctxenc_tf.compat.tensorflow_profiler import executor_op_events

    @tf.function
    def product(a):
        return tf.linalg.matmul(a, a, name="profiled_product")

    x = tf.ones((256, 256))
    product(x)
    tf.profiler.experimental.start(str(tmp_path))
    try:
        product(x).numpy()
    finally:
        tf.profiler.experimental.stop()
    ops = [(name, kind, end - start) for start, end, name, kind in executor_op_events(str(tmp_path))]
    assert [kind for name, kind, _ in ops if name.endswith("profiled_product")] in (["MatMul"], ["_MklMatMul"])
    assert all(duration > 0 for _, _, duration in ops)


def _jax_trainer():
    if importlib.util.find_spec("jax") is None:
        not_installed("jax", "pip install -r requirements-jax.txt (docs/testing.md)")
    from keras.src.backend.jax.trainer import JAXTrainer

    return JAXTrainer


def test_jax_trainer_carries_the_state_of_model_optimizer_variables():
    """``compat.jax_trainer.JointOptimizers`` stands in for ``model.optimizer`` because
    Keras' JAX trainer takes the optimiser part of each step's state from
    ``model.optimizer.variables``, writes it back there, and checks ``built`` first."""
    trainer = _jax_trainer()
    reads = "self.optimizer.variables"
    assert reads in inspect.getsource(trainer._get_jax_state)  # the state passed to train_step
    assert reads in inspect.getsource(trainer.jax_state_sync)  # the step's state written back
    assert "self.optimizer.built" in inspect.getsource(keras.Model._symbolic_build)


FIT_UNDER_JAX = r"""
import sys
sys.modules["tensorflow"] = None  # the model must not need TensorFlow under JAX
sys.path.insert(0, "tests")
import keras, numpy as np
from helpers import tiny_config
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.training.optimizers import compile_for_run

run = tiny_config(jit_compile=True)
model = ContextEncoder(run.model)
compile_for_run(model, run)
before = {v.path: np.asarray(v) for v in model.g_optimizer.variables + model.d_optimizer.variables}
s = run.model.image_size
mask = np.zeros((8, s, s, 1), "float32")
mask[:, 8:24, 8:24] = 1
images = np.random.default_rng(0).uniform(-1, 1, (8, s, s, 3)).astype("float32")
model.fit(images[None].repeat(3, 0).reshape(-1, s, s, 3), mask[None].repeat(3, 0).reshape(-1, s, s, 1),
          batch_size=8, epochs=1, verbose=0)
for name, optimizer in (("g", model.g_optimizer), ("d", model.d_optimizer)):
    moved = [v.path for v in optimizer.variables[2:] if np.abs(np.asarray(v) - before[v.path]).max() > 0]
    print(name, int(optimizer.iterations), len(moved), len(optimizer.variables) - 2)
"""


def test_a_jax_fit_advances_both_optimisers():
    """Three JAX ``fit`` steps (TensorFlow unimportable): each optimiser's step counter
    reaches 3 and every one of its Adam moments moved, i.e. Keras' JAX trainer passed both
    optimisers' state through the steps and wrote it back."""
    _jax_trainer()
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", FIT_UNDER_JAX], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line[:2] in ("g ", "d ")]
    assert [r[0] for r in rows] == ["g", "d"], done.stdout
    for name, iterations, moved, moments in rows:
        assert int(iterations) == 3 and int(moved) == int(moments) > 0, (name, iterations, moved, moments)
