"""Reconstruction and adversarial losses against hand-computed values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ctxenc_tf.model import losses, masks
from ctxenc_tf.model.context_encoder import ContextEncoder
from helpers import tiny_model


def test_overlap_weighted_l2_matches_hand_computation():
    region = np.ones((1, 8, 8, 1), "float32")
    w = masks.loss_weights(tf.constant(region), 2, 10.0).numpy()
    pred = np.zeros((1, 8, 8, 3), "float32")
    target = np.zeros((1, 8, 8, 3), "float32")
    target[0, 0, 0, :] = 1.0  # error on the ring
    target[0, 4, 4, 0] = 2.0  # error in the core
    # image border counts as context, so erosion by 2 leaves the 4x4 core
    expected = (10 * 3 * 1.0 + 1 * 4.0) / (64 * 3)
    got = losses.reconstruction_loss(pred, target, w, region, "l2").numpy()
    np.testing.assert_allclose(got, [expected], rtol=1e-6)
    l1 = losses.reconstruction_loss(pred, target, w, region, "l1").numpy()
    np.testing.assert_allclose(l1, [(10 * 3 + 2.0) / 192], rtol=1e-6)
    mix = losses.reconstruction_loss(pred, target, w, region, "mix", 0.25).numpy()
    np.testing.assert_allclose(mix, 0.25 * l1 + 0.75 * got, rtol=1e-6)


def test_region_restricts_loss_for_full_image_models():
    region = np.zeros((1, 8, 8, 1), "float32")
    region[:, 2:6, 2:6] = 1
    w = masks.loss_weights(tf.constant(region), 0, 10.0)
    pred = np.zeros((1, 8, 8, 3), "float32")
    target = np.ones((1, 8, 8, 3), "float32")
    target[:, 2:6, 2:6] = 0.5
    got = losses.reconstruction_loss(pred, target, w, region, "l2").numpy()
    np.testing.assert_allclose(got, [0.25], rtol=1e-6)  # outside the hole is ignored


def test_random_region_loss_weighs_the_context_ten_times_as_train_random_lua():
    """A random-region prediction exact on the hole but 0.5 off on the context: the loss is
    train_random.lua's (useOverlapPred=1), the whole image reconstructed, 10x on the
    context and 1x on the hole, the mean over the image; PSNR stays the hole's."""
    image, mask = keras.Input((32, 32, 3)), keras.Input((32, 32, 1))
    cheat = keras.Model([image, mask], image + 0.5 * (1.0 - mask))  # reads the hole it should not see
    model = ContextEncoder(tiny_model(mask_type="random_region", adv_weight=0.0), generator=cheat)
    model.compile()
    holes = np.zeros((2, 32, 32, 1), "float32")
    holes[0, 4:20, 8:16] = 1  # 128 pixels
    holes[1, 10:30, 2:22] = 1  # 400 pixels
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    logs = model.evaluate(images, holes, batch_size=2, verbose=0, return_dict=True)
    context = 32 * 32 - np.array([128, 400])
    expected = 10 * 0.5 ** 2 * 3 * context / (32 * 32 * 3)
    np.testing.assert_allclose(logs["rec_loss"], expected.mean(), rtol=1e-6)
    assert logs["psnr"] == pytest.approx(100.0)  # the hole is exact (PSNR's 1e-10 floor)


def test_bce_and_lsgan_adversarial_losses():
    real, fake = tf.constant([[2.0], [0.0]]), tf.constant([[-1.0], [0.0]])
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731  softplus
    d = losses.discriminator_loss(real, fake, "bce").numpy()
    np.testing.assert_allclose(d, [sp(-2) + sp(-1), 2 * np.log(2)], rtol=1e-5)
    g = losses.generator_adversarial_loss(fake, "bce").numpy()
    np.testing.assert_allclose(g, [sp(1), np.log(2)], rtol=1e-5)
    patches = tf.fill([2, 3, 3, 1], 0.5)
    # 0.5 x ((0.5 - 1)^2 + 0.5^2): LSGAN halves the discriminator's two terms
    np.testing.assert_allclose(losses.discriminator_loss(patches, patches, "lsgan").numpy(), [0.25, 0.25])
    np.testing.assert_allclose(losses.generator_adversarial_loss(patches, "lsgan").numpy(), [0.25, 0.25])
    with pytest.raises(ValueError):
        losses.generator_adversarial_loss(fake, "hinge")
