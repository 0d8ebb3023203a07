"""One model definition on three Keras backends: the same ``.keras`` checkpoint gives the
same generator, discriminator and whole-model outputs under TensorFlow, JAX and PyTorch,
and a checkpoint saved under JAX loads under the others. Each backend runs
``tests/backend_worker.py`` in its own subprocess (on CPU; JAX and PyTorch with TensorFlow
made unimportable); a backend whose package is not installed is skipped, saying so."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO, tiny_model
from ctxenc_tf.model.checkpoint import save_checkpoint
from ctxenc_tf.model.context_encoder import ContextEncoder

pytestmark = pytest.mark.slow
WORKER = os.path.join(REPO, "tests", "backend_worker.py")
EPS32 = float(np.finfo(np.float32).eps)


def _run(backend, directory, *args):
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, WORKER, str(directory), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, f"{backend}: {done.stderr[-3000:]}"


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


def _tolerance(network, reference):
    """Float32 outputs of one network under two backends differ by rounding only: each
    convolution sums its fan-in ``n`` in a backend-specific order (blocking, threads,
    XLA fusions). Rounding errors of a length-``n`` float32 inner product have a relative
    size ``lambda * sqrt(n) * eps`` with overwhelming probability (Higham & Mary, 2019,
    "A new approach to probabilistic rounding error analysis"; ``lambda`` of a few), and
    with unit-gain layers (:func:`_unit_gain_weights`) the layers' errors add: the bound is
    ``eps * sum(sqrt(n))`` per layer of ``network``, times ``lambda = 8`` for the
    differences of two such errors plus the few-ulp differences of tanh and rsqrt between
    math libraries, times the outputs' scale. Not tuned to this machine: it is hundreds
    of times what a typical CPU shows, and far below the ~0.1 a wrong weight gives."""
    fan_ins = [int(np.prod(w.shape[:-1])) for w in network.weights if w.path.endswith("kernel")]
    return 8 * EPS32 * sum(np.sqrt(n) for n in fan_ins) * max(1.0, float(np.abs(reference).max()))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A random-square model (the masks' geometry runs inside it) saved under TensorFlow
    as ``tensorflow.keras``, and its inputs: images, masks (holes at the border too) and
    discriminator patches."""
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
    return directory, model


def _installed(backend):
    if backend != "tensorflow" and importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (pip install 'jax[cpu]' / the torch CPU wheel, docs/testing.md)")


def test_same_outputs_and_checkpoints_across_backends(checkpoints):
    """The TensorFlow-saved checkpoint under JAX, the JAX-saved one under TensorFlow and
    PyTorch: every output within :func:`_tolerance` of TensorFlow's on the original."""
    directory, model = checkpoints
    _installed("jax")
    _run("jax", directory, "tensorflow.keras", "--save", "jax")
    _run("tensorflow", directory, "tensorflow.keras", "jax.keras")
    runs = ["tensorflow_jax", "jax_tensorflow"]
    if importlib.util.find_spec("torch") is not None:
        _run("torch", directory, "tensorflow.keras", "jax.keras")
        runs += ["torch_tensorflow", "torch_jax"]
    reference = np.load(directory / "tensorflow_tensorflow.npz")
    networks = {"generator": model.generator, "discriminator": model.discriminator, "completed": model.generator}
    for run in runs:
        got = np.load(directory / f"{run}.npz")
        assert set(got) == set(reference) == set(networks)
        for name, network in networks.items():
            np.testing.assert_allclose(got[name], reference[name], rtol=0,
                                       atol=_tolerance(network, reference[name]), err_msg=f"{run}: {name}")
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: TensorFlow and JAX compared only")
