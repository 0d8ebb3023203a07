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
from ctxenc_tf import data, resume
from ctxenc_tf.strategy import make_strategy
from ctxenc_tf.trainer import ContextEncoder

folder, optimizer = sys.argv[1], sys.argv[2]
config = tiny_config(data_dir=folder, fill_value=(0.1, 0.0, -0.1), mask_type="random_square",
                     batch_size=8, train_limit=32, val_fraction=0.2)
# Fixed batches (random-square masks drawn once), so both runs see identical global batches.
fixed = data.image_dataset(data.find_split(config).train, config, training=False)
images, masks = (np.concatenate(t) for t in zip(*[(i.numpy(), m.numpy()) for i, m in fixed]))
out = {}
for name in ("default", "mirrored"):
    keras.utils.set_random_seed(0)
    strat = make_strategy(name)
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(config.batch_size)
    with strat.scope():
        model = ContextEncoder(config)
        opts = {"sgd": lambda: keras.optimizers.SGD(0.05), "adam": lambda: None}[optimizer]
        model.compile(g_optimizer=opts(), d_optimizer=opts(), jit_compile=False)
        resume.build_optimizers(model)  # slot variables created in the scope, as train() does
    initial = [float(np.abs(w).sum()) for w in model.generator.get_weights()]
    steps = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: steps.append(
        [float(logs[k]) for k in ("g_loss", "d_loss", "rec_loss")]))
    model.fit(ds, epochs=2, verbose=0, callbacks=[cb])
    out[name] = {
        "replicas": strat.num_replicas_in_sync,
        "synchronized_bn": bool(model.generator.get_layer("enc1_bn").synchronized),
        "steps": steps,
        "initial": initial,
        "weights": [float(np.abs(w).sum()) for w in model.generator.get_weights()],
        "kernel": model.generator.get_layer("dec1_deconv").get_weights()[0].ravel()[:50].tolist(),
    }
print("RESULT" + json.dumps(out))
"""


def _run_pair(folder, optimizer):
    proc = subprocess.run([sys.executable, "-c", MIRRORED_VS_DEFAULT, folder, optimizer],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mirrored_two_cpus_matches_default(tmp_path, optimizer):
    # SGD makes the update proportional to the gradient, so a wrong per-replica loss scale
    # (e.g. forgetting to divide by the replica count) would double every step; Adam is the
    # real optimiser (its slots are mirrored variables).
    folder = str(tmp_path / "images")
    write_images(folder, 40, size=(36, 40))
    out = _run_pair(folder, optimizer)
    one, two = out["default"], out["mirrored"]
    assert one["replicas"] == 1 and two["replicas"] == 2
    assert two["synchronized_bn"] and not one["synchronized_bn"]
    assert len(one["steps"]) == len(two["steps"]) == 8  # 2 epochs x 32 train images / 8
    np.testing.assert_allclose(two["initial"], one["initial"], rtol=1e-6)
    np.testing.assert_allclose(two["steps"], one["steps"], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(two["kernel"], one["kernel"], rtol=1e-3, atol=1e-6)
    # The loss actually moved, so agreement is not trivial.
    assert abs(one["steps"][-1][2] - one["steps"][0][2]) > 1e-3


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
