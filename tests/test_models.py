"""Generator and discriminator: shapes, value ranges, parameter count of the paper's model."""

import numpy as np
import pytest

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.model.networks import build_discriminator, build_generator, decoder_widths, encoder_widths
from conftest import tiny_model


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


BN = 4  # gamma, beta, moving mean, moving variance per channel


def test_default_generator_parameter_count_matches_architecture():
    # Paper's centre model: 128x128x3 -> 64 -> 64 -> 128 -> 256 -> 512 (4x4 stride-2 convs,
    # first with bias and no BN, the others BN without bias) -> 4x4 valid conv to 4000 (BN)
    # -> 4x4 valid transposed conv to 512 (BN) -> 256 -> 128 -> 64 (BN) -> 3 (bias, tanh).
    enc = (_conv(4, 3, 64, True) + _conv(4, 64, 64, False) + BN * 64 + _conv(4, 64, 128, False)
           + BN * 128 + _conv(4, 128, 256, False) + BN * 256 + _conv(4, 256, 512, False) + BN * 512)
    bottleneck = _conv(4, 512, 4000, False) + BN * 4000
    dec = (_conv(4, 4000, 512, False) + BN * 512 + _conv(4, 512, 256, False) + BN * 256
           + _conv(4, 256, 128, False) + BN * 128 + _conv(4, 128, 64, False) + BN * 64
           + _conv(4, 64, 3, True))
    expected = enc + bottleneck + dec
    actual = build_generator(ModelConfig()).count_params()
    assert abs(actual - expected) / expected < 0.01, (actual, expected)


def test_default_discriminator_parameter_count_matches_architecture():
    # DCGAN D on the 64x64 patch: 3 -> 64 -> 128 -> 256 -> 512 (4x4 stride 2) -> 4x4 valid -> 1.
    expected = (_conv(4, 3, 64, True) + _conv(4, 64, 128, False) + BN * 128
                + _conv(4, 128, 256, False) + BN * 256 + _conv(4, 256, 512, False) + BN * 512
                + _conv(4, 512, 1, True))
    actual = build_discriminator(ModelConfig()).count_params()
    assert abs(actual - expected) / expected < 0.01, (actual, expected)


def test_default_geometry_shapes():
    c = ModelConfig()
    g = build_generator(c)
    assert g.input_shape == [(None, 128, 128, 3), (None, 128, 128, 1)]
    assert g.output_shape == (None, 64, 64, 3)
    assert g.get_layer("bottleneck_conv").output.shape == (None, 1, 1, 4000)
    assert build_discriminator(c).output_shape == (None, 1)
    assert build_discriminator(c.replace(discriminator="patchgan")).output_shape == (None, 8, 8, 1)
    assert encoder_widths(128, 64) == [64, 64, 128, 256, 512]
    assert decoder_widths(64, 64) == [512, 256, 128, 64, 3]


@pytest.mark.parametrize("mask_type,out", [("center", 16), ("random_square", 32), ("random_region", 32)])
def test_tiny_models_output_shapes_and_ranges(mask_type, out):
    c = tiny_model(mask_type=mask_type)
    g, d = build_generator(c), build_discriminator(c)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    m = np.zeros((4, 32, 32, 1), "float32")
    m[:, 8:24, 8:24] = 1
    y = g.predict([x, m], verbose=0)
    assert y.shape == (4, out, out, 3) and y.dtype == np.float32
    assert y.min() >= -1 and y.max() <= 1
    logits = d.predict(y, verbose=0)
    assert logits.shape == (4, 1) and np.all(np.isfinite(logits))


def test_generator_ignores_hidden_pixels_but_sees_context():
    # The core of the hole is replaced by the fill before the encoder: changing it must not
    # change the output; changing the context must.
    c = tiny_model(fill_value=(0.1, -0.2, 0.3))
    g = build_generator(c)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    m = np.zeros((2, 32, 32, 1), "float32")
    m[:, 8:24, 8:24] = 1
    x2 = x.copy()
    x2[:, 10:22, 10:22] = rng.uniform(-1, 1, (2, 12, 12, 3))  # inside the hidden core (overlap 2)
    x3 = x.copy()
    x3[:, :4] = -x3[:, :4]  # context rows
    y, y2, y3 = (g.predict([v, m], verbose=0) for v in (x, x2, x3))
    np.testing.assert_array_equal(y, y2)
    assert np.abs(y - y3).max() > 1e-2 * np.abs(y).max()  # (untrained outputs are tiny)
