"""One model definition on three Keras backends, trained on two.

The same ``.keras`` checkpoint gives the same generator, discriminator and whole-model
outputs under TensorFlow, JAX and PyTorch, and one saved under JAX loads under the others;
one training step from the same weights and batch gives the same losses and updated
weights under TensorFlow and JAX, on one JAX device and data-parallel on two, and the
JAX-trained model exports (under TensorFlow); ``train.py`` under JAX writes the run that
TensorFlow's writes, and TensorFlow resumes it. Each backend
runs ``tests/backend_worker.py`` once, in its own subprocess (CPU; JAX with two host
devices; TensorFlow unimportable under JAX and PyTorch); a backend whose package is not
installed is skipped, saying so."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctxenc_tf.cli import train as train_cli
from ctxenc_tf.export.saved_model import export_saved_model
from ctxenc_tf.model.checkpoint import load_context_encoder, save_checkpoint
from ctxenc_tf.model.context_encoder import ContextEncoder
from helpers import REPO, exit_code, not_installed, tiny_model

pytestmark = pytest.mark.slow
WORKER = os.path.join(REPO, "tests", "backend_worker.py")
EPS32 = float(np.finfo(np.float32).eps)
LEARNING_RATE = 0.1
# What each backend's worker does, in this order: tensorflow.keras is written by the
# fixture, jax.keras and torch.keras by the JAX and PyTorch workers.
RUNS = {
    "jax": ["--outputs", "tensorflow.keras", "--save", "jax",
            "--step", "tensorflow.keras", "--strategy", "default", "mirrored"],
    "torch": ["--outputs", "tensorflow.keras", "jax.keras", "--save", "torch"],
    "tensorflow": ["--outputs", "tensorflow.keras", "jax.keras", "torch.keras", "--step", "tensorflow.keras"],
}


def _installed(backend) -> bool:
    return backend == "tensorflow" or importlib.util.find_spec(backend) is not None


def _environment(backend) -> dict:
    """A subprocess' environment for ``backend`` on CPU, JAX with two host devices."""
    return {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": "",
            "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def _unit_gain_weights(model, rng):
    """Weights under which every layer keeps activations of order 1, so that float32
    rounding errors are relative to values of order 1 everywhere (a random N(0, 0.02)
    network shrinks them towards 0, where a tolerance says nothing): kernels uniform with
    variance 1/fan-in, batch-norm statistics and affine terms away from their defaults (a
    mean/variance swap on loading would show)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for w in layer.weights:
            name = w.path.rsplit("/", 1)[-1]
            shape = tuple(w.shape)
            if name == "kernel":
                fan_in = int(np.prod(shape[:2])) * shape[3 if isinstance(layer, keras.layers.Conv2DTranspose) else 2]
                value = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / fan_in)
            elif name == "moving_variance":
                value = rng.uniform(0.5, 2.0, shape)
            elif name == "gamma":
                value = rng.uniform(0.5, 1.5, shape)
            else:  # moving_mean, beta
                value = rng.uniform(-0.2, 0.2, shape)
            w.assign(value.astype(np.float32))


def _relative_tolerance(*networks) -> float:
    """How far two backends' float32 results of ``networks`` may differ, relative to their
    scale. They differ by rounding only: each convolution sums its fan-in ``n`` in a
    backend-specific order (blocking, threads, XLA fusions). The rounding error of a
    length-``n`` float32 inner product has a relative size ``lambda * sqrt(n) * eps`` with
    overwhelming probability (Higham & Mary, 2019, "A new approach to probabilistic
    rounding error analysis", ``lambda`` of a few), and with unit-gain layers
    (:func:`_unit_gain_weights`) the layers' errors add: ``eps * sum(sqrt(n))`` over the
    layers, times ``lambda = 8`` to cover the difference of two such errors and the
    few-ulp differences of tanh and rsqrt between math libraries. Not tuned to this
    machine: it is hundreds of times what a CPU shows, and far below the ~0.1 that a wrong
    weight or a wrong gradient gives."""
    fan_ins = [int(np.prod(w.shape[:-1])) for net in networks for w in net.weights if w.path.endswith("kernel")]
    return 8 * EPS32 * sum(np.sqrt(n) for n in fan_ins)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A random-square model (the masks' geometry runs inside it) saved under TensorFlow as
    ``tensorflow.keras``, its inputs (images, masks with holes at the border, discriminator
    patches) and every installed backend's worker run on them: ``(directory, model)``."""
    directory = tmp_path_factory.mktemp("backends")
    rng = np.random.default_rng(0)
    config = tiny_model(mask_type="random_square")
    model = ContextEncoder(config)
    _unit_gain_weights(model, rng)
    s, h = config.image_size, config.hole_size
    masks = np.zeros((4, s, s, 1), np.float32)
    for i, (top, left) in enumerate([(0, 0), (3, 11), (s - h, s - h), (s - h - 2, 1)]):
        masks[i, top:top + h, left:left + h] = 1
    np.savez(directory / "inputs.npz", images=rng.uniform(-1, 1, (4, s, s, 3)).astype(np.float32), masks=masks,
             patches=rng.uniform(-1, 1, (4, h, h, 3)).astype(np.float32))
    save_checkpoint(model, str(directory / "tensorflow.keras"))
    if not _installed("jax"):
        not_installed("jax", "pip install -r requirements-jax.txt (docs/testing.md)")
    for backend, args in RUNS.items():
        if not _installed(backend):
            continue
        args = [a for a in args if a != "torch.keras" or _installed("torch")]
        done = subprocess.run([sys.executable, WORKER, str(directory), *args], cwd=REPO,
                              env=_environment(backend), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{backend}: {done.stderr[-3000:]}"
    return directory, model


def test_same_outputs_and_checkpoints_across_backends(runs):
    """The TensorFlow-saved checkpoint under JAX (and PyTorch), the JAX-saved one under
    TensorFlow (and PyTorch), the PyTorch-saved one under TensorFlow: every output within
    :func:`_relative_tolerance` of TensorFlow's on the original, times the output's scale."""
    directory, model = runs
    reference = np.load(directory / "tensorflow_tensorflow.npz")
    networks = {"generator": [model.generator], "discriminator": [model.discriminator],
                "completed": [model.generator]}
    compared = ["tensorflow_jax", "jax_tensorflow"] + (
        ["torch_tensorflow", "torch_jax", "tensorflow_torch"] if _installed("torch") else [])
    for run in compared:
        got = np.load(directory / f"{run}.npz")
        assert set(got) == set(reference) == set(networks)
        for name, nets in networks.items():
            scale = max(1.0, float(np.abs(reference[name]).max()))
            np.testing.assert_allclose(got[name], reference[name], rtol=0,
                                       atol=_relative_tolerance(*nets) * scale, err_msg=f"{run}: {name}")
    if not _installed("torch"):
        not_installed("torch", "pip install torch==2.13.0, the CPU wheel (docs/testing.md)")


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_one_training_step_is_the_same_under_tensorflow_and_jax(runs, strategy):
    """One ``fit`` step from the same weights and batch: the same losses, and the same
    weights after it (both networks' and the batch-norm statistics), under JAX on one
    device (``default``) and data-parallel on two (``mirrored``) as under TensorFlow.

    SGD, not Adam, so that an update is the gradient times the learning rate: Adam's first
    step is ``lr * g / (|g| + eps)``, about ``lr * sign(g)``, which turns a rounding-level
    difference of a near-zero gradient into a difference of up to ``2 * lr``. Losses
    compare within :func:`_relative_tolerance` of both networks (their forward pass); a
    gradient passes through the network forward and back, twice as many sums, so the
    updated weights compare within twice that, relative to the variable's largest update,
    plus the rounding of ``w - lr * g`` itself."""
    directory, model = runs
    tf_step = np.load(directory / "tensorflow_step_default.npz")
    jax_step = np.load(directory / f"jax_step_{strategy}.npz")
    assert set(tf_step) == set(jax_step)
    rel = _relative_tolerance(model.generator, model.discriminator)
    before = {f"weight/{w.path}": np.asarray(w) for w in model.weights}
    for key in tf_step:
        expected, got = tf_step[key], jax_step[key]
        if key.startswith("loss/"):
            np.testing.assert_allclose(got, expected, rtol=rel, err_msg=key)
            continue
        change = np.abs(expected - before[key]).max()
        assert change > 0, f"{key} did not change"  # the step happened
        np.testing.assert_allclose(got, expected, rtol=0, err_msg=key,
                                   atol=2 * rel * change + 2 * EPS32 * np.abs(expected).max())


def test_a_model_trained_under_jax_exports(runs, tmp_path):
    """Export needs TensorFlow, not the backend a checkpoint was trained under: the
    SavedModel of the JAX-trained checkpoint completes images as the checkpoint does
    (1e-5 on outputs in [-1, 1], the export tests' bound)."""
    directory, _ = runs
    model = load_context_encoder(str(directory / "jax_step_default.keras"))
    path = export_saved_model(model, str(tmp_path / "export"))
    inputs = np.load(directory / "inputs.npz")
    got = tf.saved_model.load(path).signatures["inpaint"](
        images=tf.constant((inputs["images"] + 1) / 2), masks=tf.constant(inputs["masks"]))
    expected = (model([inputs["images"], inputs["masks"]]).numpy() + 1) / 2
    np.testing.assert_allclose(got["completed"].numpy(), expected, rtol=0, atol=1e-5)


def test_train_py_under_jax_writes_a_run_that_tensorflow_resumes(tmp_path):
    """``KERAS_BACKEND=jax python train.py`` (data-parallel over two host devices) writes
    what it writes under TensorFlow (checkpoints, CSV log, sample grids, TensorBoard logs,
    resume state), and rerunning the command for one more epoch under TensorFlow resumes
    it: the resume state is the same file under both backends."""
    if not _installed("jax"):
        not_installed("jax", "pip install -r requirements-jax.txt (docs/testing.md)")
    flags = ["--image-size", "32", "--bottleneck", "16", "--gen-filters", "8", "--disc-filters", "8",
             "--batch-size", "8", "--train-limit", "16", "--val-limit", "8", "--output-dir", str(tmp_path)]
    done = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *flags, "--epochs", "1"], cwd=REPO,
                          env=_environment("jax"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 replica(s)" in done.stdout
    for name in ("best.keras", "final.keras", "log.csv", "samples/epoch_001.png", "backup/state.json"):
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "logs").rglob("events.out.tfevents*"))
    assert exit_code(train_cli.main, [*flags, "--epochs", "2", "--no-jit-compile"]) == 0
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
