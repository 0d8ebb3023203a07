"""tf.distribute, mixed precision and XLA: a MirroredStrategy fit over two logical CPU
devices follows the same loss trajectory as one device with the same global batch, and
the mixed-precision and XLA paths train with float32 outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ctxenc_tf.errors import ConfigError
from ctxenc_tf.training import data_parallel, strategy
from helpers import REPO, free_port, tiny_config, write_images

# Why float64: the one-device and the two-replica runs add the same numbers in another
# order (each replica sums half the batch, then the all-reduce adds the halves), and which
# order oneDNN uses depends on the CPU's instruction set. In float32 that reassociation
# noise (~1e-7 relative) is amplified by Adam, which divides by the gradient's RMS, to
# ~0.4 % after 8 steps on some CPUs: no tolerance separates it from a bug. In float64 the
# same noise starts at ~1e-16. Keras' synchronised batch norm also takes the variance as
# E[x^2] - E[x]^2 of the all-reduced sums where the one-device layer uses two passes; on
# the nearly constant features an untrained generator's output gives the discriminator,
# that cancellation costs ~8 digits, so the two runs end ~1e-8 of the distance the weights
# moved apart (measured: 9e-8 after one SGD step, 1e-8 after 8 Adam steps). The test
# allows 1e-5 of that distance; a wrong replica scaling (not dividing by the replica
# count, per-replica batch statistics) is off by O(1) of it. Losses are logged by Keras'
# float32 Mean trackers, so they are compared at float32 resolution (1e-6).

# Runs in a fresh interpreter: logical devices must be configured before TF starts them.
MIRRORED_VS_DEFAULT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
sys.path.insert(0, "tests")
from helpers import tiny_config
from ctxenc_tf.data import pipeline, screening, sources
from ctxenc_tf.training.strategy import make_strategy, set_precision
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.training.optimizers import compile_for_run

folder = sys.argv[1]
config = tiny_config(data_dir=folder, fill_value=(0.1, 0.0, -0.1), mask_type="random_square",
                     batch_size=8, train_limit=32, val_fraction=0.2)
# Fixed batches (random-square masks drawn once), so both runs see identical global batches.
fixed = pipeline.image_dataset(sources.find_sources(config).train, config, training=False)
images, masks = (np.concatenate(t).astype(np.float64) for t in zip(*[(i.numpy(), m.numpy()) for i, m in fixed]))
set_precision("float64")
out = {}
for optimizer, name in [(o, n) for o in ("sgd", "adam") for n in ("default", "mirrored")]:
    keras.utils.set_random_seed(0)
    strat = make_strategy(name)
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(config.batch_size)
    with strat.scope():
        model = ContextEncoder(config.model)
        if optimizer == "sgd":
            model.compile(keras.optimizers.SGD(0.05), keras.optimizers.SGD(0.05), jit_compile=False)
        else:
            compile_for_run(model, config)  # train.py's Adam; tiny_config has XLA off
    initial = [np.asarray(w).tolist() for w in model.generator.get_weights() + model.discriminator.get_weights()]
    steps = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(
        [float(logs[k]) for k in ("g_loss", "d_loss", "rec_loss")]))
    # SGD: one step, where the update is exactly -lr * the global-batch gradient; Adam: 8.
    model.fit(ds.take(1) if optimizer == "sgd" else ds, epochs=1 if optimizer == "sgd" else 2,
              verbose=0, callbacks=[cb])
    out[f"{optimizer}/{name}"] = {
        "replicas": strat.num_replicas_in_sync,
        "dtype": str(model.generator.get_layer("dec1_deconv").kernel.dtype),
        "synchronized_bn": bool(model.generator.get_layer("enc1_bn").synchronized),
        "steps": steps,
        "initial": initial,
        "weights": [np.asarray(w).ravel().tolist() for w in model.generator.get_weights()
                    + model.discriminator.get_weights()],
    }
print("RESULT" + json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_two_cpus_matches_default(tmp_path):
    folder = str(tmp_path / "images")
    write_images(folder, 40, size=(36, 40))
    proc = subprocess.run([sys.executable, "-c", MIRRORED_VS_DEFAULT, folder],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    # SGD makes the update proportional to the gradient, so a wrong per-replica loss scale
    # would change every step; Adam is the real optimiser (its slots are mirrored variables).
    for optimizer in ("sgd", "adam"):
        one, two = out[f"{optimizer}/default"], out[f"{optimizer}/mirrored"]
        assert one["replicas"] == 1 and two["replicas"] == 2
        assert one["dtype"] == two["dtype"] == "float64"
        assert two["synchronized_bn"] and not one["synchronized_bn"]
        assert len(one["steps"]) == len(two["steps"]) == (1 if optimizer == "sgd" else 8)
        for a, b in zip(two["initial"], one["initial"]):  # same seed, same draws
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(two["steps"], one["steps"], rtol=1e-6, atol=0)
        # Training moved the weights, so agreement is not trivial, and both runs moved
        # them to the same place (see the note above for the 1e-5).
        moved = max(np.abs(np.asarray(w) - np.ravel(w0)).max()
                    for w, w0 in zip(one["weights"], one["initial"]))
        assert moved > 1e-2
        apart = max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(two["weights"], one["weights"]))
        assert apart <= 1e-5 * moved, (optimizer, apart, moved)
    assert abs(one["steps"][-1][2] - one["steps"][0][2]) > 1e-3  # Adam's loss moved too


# One worker of a two-process MultiWorkerMirroredStrategy cluster on localhost.
WORKER = r"""
import json, sys
sys.path.insert(0, "tests")
from helpers import tiny_config
from ctxenc_tf.training.fit import train
folder, out = sys.argv[1], sys.argv[2]
model, history, _ = train(tiny_config(data_dir=folder, output_dir=out, epochs=2, train_limit=32,
                                      precision="float64"), log=lambda *a: print(*a))
print("RESULT" + json.dumps({"g_loss": history.history["g_loss"], "val": history.history["val_rec_loss"],
                             "replicas": model.distribute_strategy.num_replicas_in_sync}))
"""


@pytest.mark.slow
def test_two_worker_cluster_matches_one_process(tmp_path, image_folder):
    """Both workers and one process train in float64 (see the note at the top): the epoch
    means of the losses, logged in float32, agree to float32 resolution."""
    import os

    from ctxenc_tf.training.fit import train

    workers = [f"localhost:{free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        command = [sys.executable, "-c", WORKER, image_folder, str(tmp_path / f"w{index}")]
        procs.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
        results.append(json.loads([ln for ln in stdout.splitlines() if ln.startswith("RESULT")][-1][6:]))
    try:
        _, single, _ = train(tiny_config(data_dir=image_folder, output_dir=str(tmp_path / "one"), epochs=2,
                                         train_limit=32, strategy="default", precision="float64"),
                             log=lambda *a: None)
    finally:
        strategy.set_precision("float32")
    for worker in results:  # strategy "auto" picked the cluster from TF_CONFIG
        assert worker["replicas"] == 2
        np.testing.assert_allclose(worker["g_loss"], single.history["g_loss"], rtol=1e-6)
        np.testing.assert_allclose(worker["val"], single.history["val_rec_loss"], rtol=1e-6)


def _train(tmp_path, image_folder, **overrides):
    from ctxenc_tf.training.fit import train

    config = tiny_config(data_dir=image_folder, output_dir=str(tmp_path / "run"), **overrides)
    return train(config, log=lambda *a: None)  # it leaves the caller's dtype policy as it was


@pytest.mark.slow
def test_mixed_bfloat16_trains_with_float32_outputs(tmp_path, image_folder):
    import keras
    import tensorflow as tf

    model, history, _ = _train(tmp_path, image_folder, precision="mixed_bfloat16")
    conv = model.generator.get_layer("enc1_conv")
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert all(v.dtype == "float32" for v in model.generator.weights)
    assert not isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
    images = tf.random.uniform([2, 32, 32, 3], -1, 1)
    mask = tf.ones([2, 32, 32, 1])
    assert model.generator([images, mask]).dtype == tf.float32
    assert model([images, mask]).dtype == tf.float32
    assert np.isfinite(history.history["g_loss"]).all()
    # Its export computes in float32 (the generator's float32 copy), the context untouched.
    from ctxenc_tf.data.hole_masks import center_mask
    from ctxenc_tf.export.saved_model import export_saved_model
    from ctxenc_tf.model.precision import float32_generator

    path = export_saved_model(model, str(tmp_path / "export"))
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    hole = np.broadcast_to(center_mask(32, model.config.hole_size).numpy()[None], (2, 32, 32, 1)).astype(np.float32)
    out = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(x))
    float32_copy = float32_generator(model)
    assert all(layer.compute_dtype == "float32" for layer in float32_copy.layers)
    reference = (float32_copy([x * 2 - 1, hole]).numpy() + 1) / 2
    assert np.abs(out["prediction"].numpy() - reference).max() <= 1e-5  # test_export's float32 graph bound
    outside = hole[..., 0] == 0
    np.testing.assert_array_equal(out["completed"].numpy()[outside], x[outside])


@pytest.mark.slow
def test_mixed_float16_wraps_optimizers_in_loss_scaling(tiny):
    import keras
    import tensorflow as tf

    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.training.optimizers import compile_for_run

    strategy.set_precision("mixed_float16")
    try:
        model = ContextEncoder(tiny.replace(fill_value=(0.0, 0.0, 0.0)).model)
        compile_for_run(model, tiny)
        assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
        images = tf.random.uniform([2, 32, 32, 3], -1, 1)
        mask = tf.ones([2, 32, 32, 1])
        history = model.fit(tf.data.Dataset.from_tensors((images, mask)), verbose=0)
        assert np.isfinite(history.history["g_loss"]).all()
        assert float(model.g_optimizer.dynamic_scale) > 1  # dynamic loss scale in use
        assert model.generator([images, mask]).dtype == tf.float32
        assert model.generator.get_layer("enc1_conv").compute_dtype == "float16"
    finally:
        strategy.set_precision("float32")


@pytest.mark.slow
def test_jit_compile_trains(tmp_path, image_folder):
    model, history, _ = _train(tmp_path, image_folder, jit_compile=True, steps_per_execution=2)
    assert model.jit_compile
    assert np.isfinite(history.history["g_loss"]).all() and "val_rec_loss" in history.history


def test_strategy_selection_and_errors(monkeypatch, tiny):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy.resolve_strategy_name("auto") in ("default", "mirrored")
    assert strategy.resolve_strategy_name("tpu") == "tpu"
    with pytest.raises(ConfigError, match="TF_CONFIG is not set"):
        strategy.make_strategy("multiworker")
    two = json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})
    assert strategy.cluster_workers(two) == 2
    monkeypatch.setenv("TF_CONFIG", two)
    assert strategy.resolve_strategy_name("auto") == "multiworker"
    for bad in ("{", '{"cluster": {"worker": ["a:1"]}}',
                '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'):
        with pytest.raises(ConfigError, match="TF_CONFIG"):
            strategy.cluster_workers(bad)
    default = tf.distribute.get_strategy()
    assert data_parallel.check_global_batch(default, 64) == 64
    three = type("ThreeReplicas", (), {"num_replicas_in_sync": 3})()
    assert data_parallel.check_global_batch(three, 63) == 21
    with pytest.raises(ConfigError, match="--batch-size=64: must be a multiple of the 3"):
        data_parallel.check_global_batch(three, 64)
    with pytest.raises(ConfigError, match="--tpu|no TPU"):
        strategy.make_strategy("tpu")


def test_default_precision_is_bfloat16_only_where_the_cpu_computes_it(tmp_path, monkeypatch):
    import keras

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert strategy.cpu_bfloat16_units(str(cpuinfo)) == ["AVX512_BF16", "AMX"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert strategy.cpu_bfloat16_units(str(cpuinfo)) == []
    assert strategy.cpu_bfloat16_units(str(tmp_path / "missing")) == []  # not Linux
    monkeypatch.setattr(strategy, "device_kind", lambda: "cpu")
    monkeypatch.setattr(strategy, "cpu_bfloat16_units", lambda: ["AVX512_BF16"])
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)  # one process
    policy, why = strategy.default_precision(jit_compile=False)
    assert policy == "mixed_bfloat16" and "AVX512_BF16" in why and "--precision float32" in why
    assert strategy.default_precision(jit_compile=True)[0] == "float32"  # XLA's CPU kernels: not measured
    with monkeypatch.context() as m:
        m.setattr(keras.backend, "backend", lambda: "jax")  # XLA too
        assert strategy.default_precision(jit_compile=False)[0] == "float32"
    with monkeypatch.context() as m:
        m.setenv("TF_ENABLE_ONEDNN_OPTS", "false")
        assert strategy.default_precision(jit_compile=False) == (
            "float32", "the default with oneDNN off (TF_ENABLE_ONEDNN_OPTS): its kernels use the bfloat16 units")
    with monkeypatch.context() as m:
        m.setattr(strategy, "cluster_workers", lambda: 2)  # every worker must take the same
        assert strategy.default_precision(jit_compile=False)[0] == "float32"
    monkeypatch.setattr(strategy, "cpu_bfloat16_units", lambda: [])
    assert strategy.default_precision(jit_compile=False) == (
        "float32", "the default on a CPU without bfloat16 units (AVX512_BF16 or AMX)")
    monkeypatch.setattr(strategy, "device_kind", lambda: "gpu")
    assert strategy.default_precision(jit_compile=False)[0] == "float32"


def test_mixed_precision_flag_picks_the_policy_for_the_hardware():
    import tensorflow as tf

    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    assert strategy.mixed_precision_policy() == expected
    from ctxenc_tf.cli import train as train_cli

    with pytest.raises(ConfigError, match="--mixed-precision: give either it or --precision"):
        train_cli.main(["--mixed-precision", "--precision", "float32"])
