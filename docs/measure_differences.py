"""The two measured differences from the original Torch code in docs/training.md
("Differences from the original code"). Not part of the package; run from the
repository's root (CPU is enough, a few minutes on 2 cores):

  .venv/bin/python docs/measure_differences.py

1. Batch normalisation's moving variance: Keras averages the biased batch variance,
   Torch's ``nn.BatchNormalization`` the unbiased one; the layer's inference output against
   Torch's on the same batch.
2. The discriminator the generator's adversarial gradient goes through: here the one
   before the step; in ``train.lua`` / ``train_random.lua`` the logits come from that one
   (``netD.output``) but ``netD:updateGradInput`` pulls the gradient back through the
   weights after ``optim.adam`` updated the discriminator in place. Both are computed on
   the bundled faces at every step of a short run that follows this project's step,
   together with a discriminator evaluated afresh after its step.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ctxenc_tf.config import RunConfig  # noqa: E402
from ctxenc_tf.data import pipeline, sources  # noqa: E402
from ctxenc_tf.model import losses  # noqa: E402
from ctxenc_tf.model.context_encoder import ContextEncoder  # noqa: E402
from ctxenc_tf.training.optimizers import compile_for_run  # noqa: E402

FACES = os.path.join(REPO, "ctxenc_tf", "assets", "faces")
TORCH_FILL = (2 * 117 / 255 - 1, 2 * 104 / 255 - 1, 2 * 123 / 255 - 1)


def batch_norm_variance(batch=64, channels=4000):
    """The paper generator's bottleneck BN sees ``[batch, 1, 1, 4000]``: n = batch values a
    channel. Returns (moving variance / biased variance, moving / unbiased, inference
    output std here / Torch's)."""
    x = np.random.default_rng(0).normal(0.3, 2.0, (batch, 1, 1, channels)).astype("float32")
    bn = keras.layers.BatchNormalization(momentum=0.0, epsilon=1e-5)  # moving stats = this batch's
    bn(x, training=True)
    moving = bn.moving_variance.numpy().astype("float64")
    biased, unbiased = x.var(axis=(0, 1, 2), ddof=0), x.var(axis=(0, 1, 2), ddof=1)
    here = bn(x, training=False).numpy()
    torch = (x - x.mean(axis=(0, 1, 2))) / np.sqrt(unbiased + 1e-5)  # Torch's eval output, gamma 1, beta 0
    return (np.median(moving / biased), np.median(moving / unbiased), here.std() / torch.std())


def _hybrid_logits(discriminator, before, x):
    """Torch's ``netD.output`` with ``netD:updateGradInput``: each layer's value computed with
    the weights of ``before`` (a copy of ``discriminator`` before its step), its gradient
    with the weights ``discriminator`` has now."""
    for layer, old in zip(discriminator.layers[1:], before.layers[1:]):
        new_y = layer(x, training=True)
        x = new_y - tf.stop_gradient(new_y - old(x, training=True)) if layer.weights else new_y
    return x


def discriminator_step_order(steps=10, image_size=64, hole_size=32, batch=16):
    run = RunConfig.create(data_dir=FACES, output_dir="/tmp/unused", image_size=image_size,
                           hole_size=hole_size, overlap=2, bottleneck=512, gen_filters=32,
                           disc_filters=32, batch_size=batch, seed=0, fill_value=TORCH_FILL,
                           jit_compile=False)
    keras.utils.set_random_seed(0)
    model = ContextEncoder(run.model)
    compile_for_run(model, run)
    data = pipeline.image_dataset(sources.find_sources(run).train, run, training=True)
    g_vars, d_vars = model.generator.trainable_variables, model.discriminator.trainable_variables
    before = keras.models.clone_model(model.discriminator)
    c = run.model
    rows = []
    for step, (images, mask) in zip(range(steps), data.repeat()):
        before.set_weights(model.discriminator.get_weights())
        with tf.GradientTape(persistent=True) as tape:
            values = model._step_values(images, mask, training=True)
            g_loss, d_loss = tf.reduce_mean(values["g_loss"]), tf.reduce_mean(values["d_loss"])
            adv = c.adv_weight * tf.reduce_mean(values["adv_loss"])
        g_grad, adv_pre = tape.gradient(g_loss, g_vars), tape.gradient(adv, g_vars)
        model.d_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)
        # The same generator pass again (training-mode BN: the same values) for the two
        # orders that use the discriminator after its step.
        with tf.GradientTape(persistent=True) as tape:
            prediction, _, _ = model._generator_pass(images, mask, training=True)
            adv_torch = c.adv_weight * tf.reduce_mean(losses.generator_adversarial_loss(
                _hybrid_logits(model.discriminator, before, prediction), c.adversarial_loss))
            adv_post = c.adv_weight * tf.reduce_mean(losses.generator_adversarial_loss(
                model.discriminator(prediction, training=True), c.adversarial_loss))
        adv_torch, adv_post = tape.gradient(adv_torch, g_vars), tape.gradient(adv_post, g_vars)
        model.g_optimizer.apply(g_grad, g_vars)  # the run follows this project's step
        torch, fresh = _norm(_minus(adv_torch, adv_pre)), _norm(_minus(adv_post, adv_pre))
        rows.append((step, torch / _norm(adv_pre), torch / _norm(g_grad), fresh / _norm(adv_pre),
                     fresh / _norm(g_grad)))
    return rows


def _norm(grads):
    return float(tf.linalg.global_norm(grads))


def _minus(a, b):
    return [x - y for x, y in zip(a, b)]


if __name__ == "__main__":
    over_biased, over_unbiased, std_ratio = batch_norm_variance()
    print(f"BN, n=64: moving var / biased var = {over_biased:.6f}, / unbiased var = {over_unbiased:.6f} "
          f"(63/64 = {63 / 64:.6f}); inference output std here / Torch's = {std_ratio:.6f}")
    print("step  |adv(torch)-adv(ours)|/|adv(ours)|  .../|g(ours)|  "
          "|adv(fresh D)-adv(ours)|/|adv(ours)|  .../|g(ours)|")
    for row in discriminator_step_order():
        print("{:4d}  {:.4g}  {:.4g}  {:.4g}  {:.4g}".format(*row))
