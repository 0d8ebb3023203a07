"""Quality measures against values worked out by hand on small arrays, and the baselines."""

import numpy as np
import pytest
import tensorflow as tf

from ctxenc_tf.inference import baselines
from ctxenc_tf.model import metrics


def unit(x):
    """[0, 1] -> the [-1, 1] range the metric functions take."""
    return np.asarray(x, np.float32) * 2.0 - 1.0


def test_l1_mse_psnr_by_hand():
    target = np.zeros((2, 4, 4, 3), np.float32)
    prediction = np.zeros_like(target)
    prediction[0] = 0.1            # image 0: off by 0.1 everywhere
    prediction[1, :2] = 0.5        # image 1: off by 0.5 on the top half only
    region = np.zeros((2, 4, 4, 1), np.float32)
    region[:, :2] = 1.0            # measure the top half
    l1 = np.asarray(metrics.masked_l1(unit(prediction), unit(target), region))
    mse = np.asarray(metrics.masked_mse(unit(prediction), unit(target), region))
    psnr = np.asarray(metrics.masked_psnr(unit(prediction), unit(target), region))
    np.testing.assert_allclose(l1, [0.1, 0.5], rtol=1e-5)
    np.testing.assert_allclose(mse, [0.01, 0.25], rtol=1e-5)
    np.testing.assert_allclose(psnr, [20.0, 10 * np.log10(4.0)], rtol=1e-5)  # 10 log10(1/mse)
    whole = np.ones_like(region)    # image 1 over the whole image: half the pixels are off
    np.testing.assert_allclose(metrics.masked_l1(unit(prediction), unit(target), whole)[1], 0.25,
                               rtol=1e-5)
    np.testing.assert_allclose(metrics.masked_mse(unit(prediction), unit(target), whole)[1], 0.125,
                               rtol=1e-5)


def test_ssim_of_flat_images_by_hand():
    """Two flat images a, b: no variance, so SSIM is the luminance term alone,
    (2ab + C1) / (a^2 + b^2 + C1) with C1 = 0.01^2."""
    a, b = 0.5, 0.25
    x = np.full((1, 16, 16, 3), a, np.float32)
    y = np.full((1, 16, 16, 3), b, np.float32)
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = metrics.masked_ssim(unit(x), unit(y), np.ones((1, 16, 16, 1), np.float32))
    np.testing.assert_allclose(got, [expected], rtol=1e-5)
    same = metrics.masked_ssim(unit(x), unit(x), np.ones((1, 16, 16, 1), np.float32))
    np.testing.assert_allclose(same, [1.0], rtol=1e-6)


def test_ssim_matches_tensorflow_and_masks_windows():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 24, 30, 3)).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1).astype(np.float32)
    ones = np.ones((2, 24, 30, 1), np.float32)
    np.testing.assert_allclose(metrics.masked_ssim(unit(x), unit(y), ones),
                               tf.image.ssim(x, y, max_val=1.0), rtol=1e-4)
    # Corrupt only the left half: SSIM on the right half's windows stays perfect.
    y2 = x.copy()
    y2[:, :, :12] = 1.0 - y2[:, :, :12]
    right = np.zeros_like(ones)
    right[:, :, 18:] = 1.0  # windows centred at x >= 18 reach back to x >= 13
    np.testing.assert_allclose(metrics.masked_ssim(unit(x), unit(y2), right), [1.0, 1.0], rtol=1e-5)
    assert (np.asarray(metrics.masked_ssim(unit(x), unit(y2), ones)) < 0.9).all()


def test_mean_fill_uses_the_known_colour():
    images = np.zeros((1, 4, 4, 3), np.float32)
    images[0, :, :2] = [0.2, 0.4, 0.6]
    images[0, :, 2:] = [0.4, 0.8, 1.0]
    hidden = np.zeros((1, 4, 4, 1), np.float32)
    hidden[0, 1:3, 1:3] = 1.0
    out = baselines.mean_fill(images, hidden)
    known = images[0][hidden[0, ..., 0] == 0]  # 12 known pixels, 6 of each colour
    np.testing.assert_allclose(out[0, 1, 1], known.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, 1], [0.3, 0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(out[hidden[..., 0] == 0], images[hidden[..., 0] == 0])


def test_telea_fills_a_smooth_gradient_closely():
    pytest.importorskip("cv2")
    ramp = np.linspace(0, 1, 32, dtype=np.float32)
    images = np.repeat(np.stack([ramp] * 3, -1)[None, None], 32, axis=1)  # [1, 32, 32, 3]
    hidden = np.zeros((1, 32, 32, 1), np.float32)
    hidden[0, 12:20, 12:20] = 1.0
    out = baselines.telea_fill(images, hidden)
    np.testing.assert_array_equal(out[hidden[..., 0] == 0], images[hidden[..., 0] == 0])
    hole_error = np.abs(out - images)[hidden[..., 0] == 1].mean()
    mean_error = np.abs(baselines.mean_fill(images, hidden) - images)[hidden[..., 0] == 1].mean()
    assert hole_error < 0.05 and hole_error < mean_error
