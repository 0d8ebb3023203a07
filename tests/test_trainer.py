"""The ContextEncoder keras.Model: fit lowers the loss, metrics, .keras round trip."""

import os

import keras
import numpy as np
import pytest

from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.model.checkpoint import load_context_encoder
from ctxenc_tf.model.context_encoder import METRIC_NAMES, ContextEncoder
from ctxenc_tf.training.optimizers import compile_for_run
from ctxenc_tf.utils import atomic
from helpers import REPO, tiny_config


def _dataset(folder, cfg, training=True):
    split = sources.find_sources(cfg)
    return pipeline.image_dataset(split.train, cfg, training=training)


@pytest.mark.parametrize("preset", [
    dict(),  # paper: L2 + BCE, DCGAN D
    dict(reconstruction_loss="l1", adversarial_loss="lsgan", discriminator="patchgan"),  # seed
])
@pytest.mark.slow
def test_fit_lowers_reconstruction_loss_and_reports_metrics(image_folder, preset):
    cfg = tiny_config(data_dir=image_folder, **preset)
    model = ContextEncoder(cfg.model)
    compile_for_run(model, cfg)
    history = model.fit(_dataset(image_folder, cfg), epochs=6, verbose=0)
    assert set(METRIC_NAMES) <= set(history.history)
    rec = history.history["rec_loss"]
    assert rec[-1] < 0.85 * rec[0], rec
    assert history.history["psnr"][-1] > history.history["psnr"][0]
    assert all(np.isfinite(history.history["d_loss"]))


def test_optimisers_follow_config():
    run = tiny_config(learning_rate=1e-3, g_lr_multiplier=10, beta_1=0.4)
    model = ContextEncoder(run.model)
    compile_for_run(model, run)
    assert float(model.g_optimizer.learning_rate) == pytest.approx(1e-2)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(1e-3)
    assert float(model.g_optimizer.beta_1) == pytest.approx(0.4)
    run = tiny_config(adv_weight=0.0, learning_rate=1e-3)
    pure = ContextEncoder(run.model)
    compile_for_run(pure, run)
    assert pure.discriminator is None and pure.d_optimizer is None
    assert float(pure.g_optimizer.learning_rate) == pytest.approx(1e-3)  # no x10 without mixing


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_adam_takes_keras_adams_steps(dtype):
    """TensorFlow's fused Adam kernel against Keras' own update over 20 steps: equal bit
    for bit, variable and slots. Exact by construction: both evaluate the same formula in
    the same order with IEEE-rounded +, -, *, / and sqrt, on the same numbers once
    1 - beta is exact in every precision (beta_2 = 0.75 here; with 0.999 the two round
    1 - beta_2 differently in float32, see FusedAdam)."""
    import tensorflow as tf

    from ctxenc_tf.compat.tensorflow_trainer import FusedAdam

    def applier(optimizer, variable):
        return tf.function(lambda gradient: optimizer.apply([gradient], [variable]))

    start = np.random.default_rng(0).normal(size=(300, 70)).astype(dtype)
    runs = []
    for optimizer_class in (keras.optimizers.Adam, FusedAdam):
        variable = keras.Variable(start, dtype=dtype)
        optimizer = optimizer_class(2e-3, beta_1=0.5, beta_2=0.75, epsilon=1e-8)
        optimizer.build([variable])
        step = applier(optimizer, variable)
        gradient = tf.TensorSpec(start.shape, dtype)
        ops = {op.type for op in step.get_concrete_function(gradient).graph.get_operations()}
        assert ("ResourceApplyAdam" in ops) == (optimizer_class is FusedAdam)
        for i in range(20):
            step(tf.constant(np.sin(start * (i + 1))))
        runs.append([v.numpy() for v in [variable] + optimizer.variables])
    assert np.abs(runs[0][0] - start).max() > 1e-2  # it moved
    for keras_value, fused_value in zip(*runs):
        np.testing.assert_array_equal(keras_value, fused_value)


def test_default_optimisers_are_fused_under_tensorflow():
    from ctxenc_tf.compat.tensorflow_trainer import FusedAdam

    run = tiny_config()
    model = ContextEncoder(run.model)
    compile_for_run(model, run)
    assert type(model.g_optimizer) is FusedAdam and type(model.d_optimizer) is FusedAdam


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_compile_for_run_follows_the_xla_rule(monkeypatch, device):
    """An unset ``jit_compile`` is XLA with an accelerator, none on CPUs under TensorFlow
    (:func:`~ctxenc_tf.training.optimizers.default_jit_compile`); a run's own setting wins over the rule."""
    from ctxenc_tf.training import optimizers

    monkeypatch.setattr(optimizers, "device_kind", lambda: device)
    run = tiny_config(jit_compile=None, steps_per_execution=3)
    model = ContextEncoder(run.model)
    compile_for_run(model, run)
    assert model.jit_compile is (device != "cpu") and model.steps_per_execution == 3
    compile_for_run(model, run.replace(jit_compile=device == "cpu"))
    assert model.jit_compile is (device == "cpu")


def test_compile_takes_one_optimiser_per_network(image_folder):
    """``compile(g_optimizer, d_optimizer)`` as in keras.io's DCGAN example: a missing or
    extra discriminator optimiser is refused; without optimisers the model evaluates but
    ``fit`` refuses to run, with the way to compile."""
    cfg = tiny_config(data_dir=image_folder)
    model = ContextEncoder(cfg.model)
    with pytest.raises(ValueError, match="has a discriminator; give d_optimizer too"):
        model.compile(keras.optimizers.SGD())
    with pytest.raises(ValueError, match="d_optimizer given without g_optimizer"):
        model.compile(None, keras.optimizers.SGD())
    pure = ContextEncoder(tiny_config(adv_weight=0.0).model)
    with pytest.raises(ValueError, match=r"no discriminator \(adv_weight 0\); d_optimizer must be None"):
        pure.compile(keras.optimizers.SGD(), keras.optimizers.SGD())
    model.compile()
    assert model.g_optimizer is None
    data = _dataset(image_folder, cfg, training=False)
    assert set(model.evaluate(data, return_dict=True, verbose=0)) == set(METRIC_NAMES)
    with pytest.raises(ValueError, match=r"compiled without optimisers; .*compile_for_run"):
        model.fit(data, epochs=1, verbose=0)


def test_evaluate_reports_validation_metrics(image_folder):
    cfg = tiny_config(data_dir=image_folder)
    model = ContextEncoder(cfg.model)
    compile_for_run(model, cfg)
    result = model.evaluate(_dataset(image_folder, cfg, training=False), return_dict=True, verbose=0)
    assert set(result) == set(METRIC_NAMES)
    assert 0 < result["l1"] < 1 and result["psnr"] > 0


@pytest.mark.slow
def test_keras_file_reloads_and_predicts_identically(image_folder, tmp_path):
    cfg = tiny_config(data_dir=image_folder, fill_value=(0.2, -0.1, 0.0), mask_type="random_square")
    model = ContextEncoder(cfg.model)
    compile_for_run(model, cfg)
    ds = _dataset(image_folder, cfg)
    model.fit(ds, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    atomic.save_model(model, path)
    loaded = load_context_encoder(path)
    assert loaded.config == cfg.model
    images, mask = next(iter(ds))
    np.testing.assert_array_equal(model([images, mask]).numpy(), loaded([images, mask]).numpy())
    # completed images keep the context outside the hole exactly
    out = loaded([images, mask]).numpy()
    outside = mask.numpy()[..., 0] == 0
    np.testing.assert_allclose(out[outside], images.numpy()[outside], atol=1e-6)


@pytest.mark.slow
def test_fit_returns_right_after_its_last_step(image_folder):
    """No stall after the last step: tf.data's autotuner used to hold iterator teardown
    until its next doubling wake-up (fits of ~1 s returned 0.1-1.3 s after their last
    step). The wait allowed is far above the few milliseconds measured without it and far
    below a stall."""
    import time

    cfg = tiny_config(data_dir=image_folder, batch_size=4, epochs=20)  # fits of about a second
    model = ContextEncoder(cfg.model)
    compile_for_run(model, cfg)
    files = sources.find_sources(cfg).train
    ends = []
    # No validation pass: from the last step to fit returning is teardown only.
    stamp = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: ends.append(time.perf_counter()))
    waits = []
    for _ in range(3):
        model.fit(pipeline.training_batches(files, cfg), epochs=20, steps_per_epoch=len(files) // 4,
                  callbacks=[stamp], verbose=0)
        waits.append(time.perf_counter() - ends[-1])
    assert max(waits) < 0.1, waits


def test_python_recipe_trains_with_the_dataset_fill(tmp_path):
    """docs/training.md's recipe for driving ``fit`` yourself, run as written on a tiny
    config, trains a model whose hole fill is the training images' mean colour (as
    train.py's), not the mid-grey of a ModelConfig without a fill."""
    with open(os.path.join(REPO, "docs", "training.md")) as f:
        text = f.read()
    recipe = text.split("To drive `fit` yourself")[1].split("```python\n")[1].split("```")[0]
    config = tiny_config(train_limit=16, val_limit=4, output_dir=str(tmp_path))
    scope = {"config": config}
    exec(recipe, scope)
    mean = sources.find_sources(config).train.mean_colour(config.seed)
    assert scope["model"].config.fill_value == mean and mean != (0.0, 0.0, 0.0)
    assert int(scope["model"].g_optimizer.iterations.numpy()) == 2 * config.epochs  # it fit: 16 images, batch 8
