"""tf.distribute, mixed precision and XLA: a MirroredStrategy fit over two logical CPU
devices follows the same loss trajectory as one device with the same global batch, and
the mixed-precision and XLA paths train with float32 outputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, tiny_config, write_images
from ctxenc_tf import strategy
from ctxenc_tf.config import ConfigError

# Runs in a fresh interpreter: logical devices must be configured before TF starts them.
MIRRORED_VS_DEFAULT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
sys.path.insert(0, "tests")
from conftest import tiny_config
from ctxenc_tf import data
from ctxenc_tf.strategy import make_strategy
from ctxenc_tf.trainer import ContextEncoder

folder = sys.argv[1]
config = tiny_config(data_dir=folder, fill_value=(0.1, 0.0, -0.1), mask_type="random_square",
                     batch_size=8, train_limit=32, val_fraction=0.2)
# Fixed batches (random-square masks drawn once), so both runs see identical global batches.
fixed = data.image_dataset(data.find_split(config).train, config, training=False)
images, masks = (np.concatenate(t) for t in zip(*[(i.numpy(), m.numpy()) for i, m in fixed]))
out = {}
for optimizer, name in [(o, n) for o in ("sgd", "adam") for n in ("default", "mirrored")]:
    keras.utils.set_random_seed(0)
    strat = make_strategy(name)
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(config.batch_size)
    with strat.scope():
        model = ContextEncoder(config)
        opts = {"sgd": lambda: keras.optimizers.SGD(0.05), "adam": lambda: None}[optimizer]
        model.compile(g_optimizer=opts(), d_optimizer=opts(), jit_compile=False)
    initial = [float(np.abs(w).sum()) for w in model.generator.get_weights()]
    steps = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(
        [float(logs[k]) for k in ("g_loss", "d_loss", "rec_loss")]))
    model.fit(ds, epochs=2, verbose=0, callbacks=[cb])
    out[f"{optimizer}/{name}"] = {
        "replicas": strat.num_replicas_in_sync,
        "synchronized_bn": bool(model.generator.get_layer("enc1_bn").synchronized),
        "steps": steps,
        "initial": initial,
        "weights": [float(np.abs(w).sum()) for w in model.generator.get_weights()],
        "kernel": model.generator.get_layer("dec1_deconv").get_weights()[0].ravel()[:50].tolist(),
    }
print("RESULT" + json.dumps(out))
"""


def test_mirrored_two_cpus_matches_default(tmp_path):
    folder = str(tmp_path / "images")
    write_images(folder, 40, size=(36, 40))
    proc = subprocess.run([sys.executable, "-c", MIRRORED_VS_DEFAULT, folder],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT"):])
    # SGD makes the update proportional to the gradient, so a wrong per-replica loss scale
    # (e.g. forgetting to divide by the replica count) would change every step; Adam is the
    # real optimiser (its slots are mirrored variables; it divides by the gradient's RMS, so
    # parameters with near-zero gradients amplify summation-order noise: looser weights).
    for optimizer, weights_rtol, kernel_atol in (("sgd", 1e-4, 1e-6), ("adam", 5e-3, 1e-4)):
        one, two = out[f"{optimizer}/default"], out[f"{optimizer}/mirrored"]
        assert one["replicas"] == 1 and two["replicas"] == 2
        assert two["synchronized_bn"] and not one["synchronized_bn"]
        assert len(one["steps"]) == len(two["steps"]) == 8  # 2 epochs x 32 train images / 8
        np.testing.assert_allclose(two["initial"], one["initial"], rtol=1e-6)
        np.testing.assert_allclose(two["steps"], one["steps"], rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(two["weights"], one["weights"], rtol=weights_rtol, atol=1e-5)
        # Adam moves each weight by up to lr = 2e-3 per step: 1e-4 is 5% of one step.
        np.testing.assert_allclose(two["kernel"], one["kernel"], rtol=weights_rtol, atol=kernel_atol)
        # The loss actually moved, so agreement is not trivial.
        assert abs(one["steps"][-1][2] - one["steps"][0][2]) > 1e-3


# One worker of a two-process MultiWorkerMirroredStrategy cluster on localhost.
WORKER = r"""
import json, sys
sys.path.insert(0, "tests")
from conftest import tiny_config
from ctxenc_tf.training import train
folder, out = sys.argv[1], sys.argv[2]
model, history, _ = train(tiny_config(data_dir=folder, output_dir=out, epochs=2, train_limit=32),
                          log=lambda *a: print(*a))
print("RESULT" + json.dumps({"g_loss": history.history["g_loss"], "val": history.history["val_rec_loss"],
                             "replicas": model.distribute_strategy.num_replicas_in_sync}))
"""


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_worker_cluster_matches_one_process(tmp_path, image_folder):
    import os

    from ctxenc_tf.training import train

    workers = [f"localhost:{_free_port()}" for _ in range(2)]
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
    _, single, _ = train(tiny_config(data_dir=image_folder, output_dir=str(tmp_path / "one"), epochs=2,
                                     train_limit=32, strategy="default"), log=lambda *a: None)
    for worker in results:  # strategy "auto" picked the cluster from TF_CONFIG
        assert worker["replicas"] == 2
        np.testing.assert_allclose(worker["g_loss"], single.history["g_loss"], rtol=2e-4)
        np.testing.assert_allclose(worker["val"], single.history["val_rec_loss"], rtol=2e-4)


def _train(tmp_path, image_folder, **overrides):
    from ctxenc_tf.training import train

    config = tiny_config(data_dir=image_folder, output_dir=str(tmp_path / "run"), **overrides)
    try:
        return train(config, log=lambda *a: None)
    finally:
        strategy.set_precision("float32")


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


def test_mixed_float16_wraps_optimizers_in_loss_scaling(tiny):
    import keras
    import tensorflow as tf

    from ctxenc_tf.trainer import ContextEncoder

    strategy.set_precision("mixed_float16")
    try:
        model = ContextEncoder(tiny.replace(fill_value=(0.0, 0.0, 0.0)))
        model.compile()
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
    assert strategy.check_global_batch(default, 64) == 64
    three = type("ThreeReplicas", (), {"num_replicas_in_sync": 3})()
    assert strategy.check_global_batch(three, 63) == 21
    with pytest.raises(ConfigError, match="--batch-size=64: must be a multiple of the 3"):
        strategy.check_global_batch(three, 64)
    with pytest.raises(ConfigError, match="--tpu|no TPU"):
        strategy.make_strategy("tpu")


def test_mixed_precision_flag_picks_the_policy_for_the_hardware():
    import importlib.util

    import tensorflow as tf

    expected = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    assert strategy.mixed_precision_policy() == expected
    spec = importlib.util.spec_from_file_location("train_cli", f"{REPO}/train.py")
    train_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_cli)
    with pytest.raises(ConfigError, match="--mixed-precision: give either it or --precision"):
        train_cli.main(["--mixed-precision", "--precision", "float32"])
