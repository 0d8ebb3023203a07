"""Generator and discriminator: shapes, value ranges, parameter counts of the paper's and the seed project's models."""

import numpy as np
import pytest

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.model.networks import build_discriminator, build_generator, decoder_widths, encoder_widths
from helpers import tiny_model


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


BN = 2  # trainable per channel: gamma, beta (the moving mean and variance are not trained)


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_paper_generator_parameter_count_matches_architecture():
    # Paper's centre model, no convolution bias anywhere (the original zeroes them):
    # 128x128x3 -> 64 (no BN) -> 64 -> 128 -> 256 -> 512 (4x4 stride-2 convs, BN)
    # -> 4x4 valid conv to 4000 (BN) -> 4x4 valid transposed conv to 512 (BN)
    # -> 256 -> 128 -> 64 (BN) -> 3 (tanh).
    enc = (_conv(4, 3, 64, False) + _conv(4, 64, 64, False) + BN * 64 + _conv(4, 64, 128, False)
           + BN * 128 + _conv(4, 128, 256, False) + BN * 256 + _conv(4, 256, 512, False) + BN * 512)
    bottleneck = _conv(4, 512, 4000, False) + BN * 4000
    dec = (_conv(4, 4000, 512, False) + BN * 512 + _conv(4, 512, 256, False) + BN * 256
           + _conv(4, 256, 128, False) + BN * 128 + _conv(4, 128, 64, False) + BN * 64
           + _conv(4, 64, 3, False))
    model = build_generator(ModelConfig())
    assert _trainable(model) == enc + bottleneck + dec == 71_124_544
    assert not any("bias" in w.path for w in model.weights)


def test_paper_discriminator_parameter_count_matches_architecture():
    # DCGAN D on the 64x64 patch: 3 -> 64 -> 128 -> 256 -> 512 (4x4 stride 2, BN from the
    # second) -> 4x4 valid -> 1 logit; no bias.
    expected = (_conv(4, 3, 64, False) + _conv(4, 64, 128, False) + BN * 128
                + _conv(4, 128, 256, False) + BN * 256 + _conv(4, 256, 512, False) + BN * 512
                + _conv(4, 512, 1, False))
    assert _trainable(build_discriminator(ModelConfig())) == expected


def test_seed_generator_and_patchgan_match_the_pytorch_gan_context_encoder():
    # PyTorch-GAN's context encoder (every conv with PyTorch's default bias):
    # downsample 3 -> 64 (no BN), 64 -> 64 -> 128 -> 256 -> 512 (4x4 s2, BN), 1x1 conv to
    # 4000 at 4x4, upsample 4000 -> 512 -> 256 -> 128 -> 64 (4x4 s2 transposed, BN),
    # 3x3 conv to 3, tanh: 40,401,187 trainable parameters (40.4M), output 64x64 for a 128x128 input.
    enc = (_conv(4, 3, 64, True) + _conv(4, 64, 64, True) + BN * 64 + _conv(4, 64, 128, True) + BN * 128
           + _conv(4, 128, 256, True) + BN * 256 + _conv(4, 256, 512, True) + BN * 512)
    code = _conv(1, 512, 4000, True)
    dec = (_conv(4, 4000, 512, True) + BN * 512 + _conv(4, 512, 256, True) + BN * 256
           + _conv(4, 256, 128, True) + BN * 128 + _conv(4, 128, 64, True) + BN * 64 + _conv(3, 64, 3, True))
    config = ModelConfig(generator="seed", discriminator="patchgan", mask_type="random_square", overlap=0)
    generator = build_generator(config)
    assert _trainable(generator) == enc + code + dec == 40_401_187
    assert generator.output_shape == (None, 64, 64, 3)
    # BatchNorm momentum 0.8 as the code meant (it passed 0.8 as epsilon), PyTorch's epsilon
    norms = [layer for layer in generator.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert {(n.momentum, n.epsilon) for n in norms} == {(0.8, 1e-5)}
    # PatchGAN: 3x3 convs 3 -> 64 (s2) -> 128 (s2) -> 256 (s2) -> 512 (s1), instance norm
    # without parameters from the second, 3x3 conv to one logit per patch: 8x8 for 64x64.
    discriminator = build_discriminator(config)
    expected = (_conv(3, 3, 64, True) + _conv(3, 64, 128, True) + _conv(3, 128, 256, True)
                + _conv(3, 256, 512, True) + _conv(3, 512, 1, True))
    assert _trainable(discriminator) == expected == 1_555_585
    assert discriminator.output_shape == (None, 8, 8, 1)


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


@pytest.mark.parametrize("mask_type,out", [("center", 16), ("random_square", 16), ("random_region", 32)])
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


def test_a_mixed_precision_model_keeps_the_context_exactly():
    """Built under mixed_bfloat16 (the CPU default where it has bfloat16 units), the
    networks compute in bfloat16 but the completed image's context is the input's, bit for
    bit: the model pastes in float32."""
    import keras

    from ctxenc_tf.model.context_encoder import ContextEncoder

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = ContextEncoder(tiny_model())
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.generator.layers[-2].compute_dtype == "bfloat16" and model.compute_dtype == "float32"
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    m = np.zeros((2, 32, 32, 1), "float32")
    m[:, 8:24, 8:24] = 1
    out = np.asarray(model([x, m]))
    np.testing.assert_array_equal(out[m[..., 0] == 0], x[m[..., 0] == 0])


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


def test_bottleneck_matmuls_equal_the_convolutions_exactly():
    """The bottleneck layers compute the convolution's function. Inputs and weights are
    small integers, so every product and partial sum is an integer below 2**24, exact in
    float32 in any summation order: the two forms must agree bit for bit."""
    import keras

    from ctxenc_tf.model.bottleneck import WindowConv2D, WindowConv2DTranspose

    rng = np.random.default_rng(0)
    ints = lambda shape: rng.integers(-2, 3, shape).astype("float32")  # noqa: E731
    x, code = ints((5, 4, 4, 64)), ints((5, 1, 1, 96))
    for plain, window, inputs in (
            (keras.layers.Conv2D(48, 4, use_bias=True), WindowConv2D(48, 4, use_bias=True), x),
            (keras.layers.Conv2DTranspose(40, 4, use_bias=True),
             WindowConv2DTranspose(40, 4, use_bias=True), code)):
        plain.build(inputs.shape)
        window.build(inputs.shape)
        weights = [ints(w.shape) for w in plain.get_weights()]
        plain.set_weights(weights)
        window.set_weights(weights)
        np.testing.assert_array_equal(np.asarray(window(inputs)), np.asarray(plain(inputs)))
    # elsewhere (not one window) it is the plain convolution
    bigger = ints((2, 6, 6, 64))
    plain, window = keras.layers.Conv2D(8, 4), WindowConv2D(8, 4)
    plain.build(bigger.shape)
    window.build(bigger.shape)
    window.set_weights(plain.get_weights())
    np.testing.assert_array_equal(np.asarray(window(bigger)), np.asarray(plain(bigger)))


def _round_trip(layer, inputs):
    """``layer`` through ``keras.layers.serialize`` / ``deserialize`` (the config and build
    shape a ``.keras`` file holds), its weights copied over: the copy, and both outputs on
    ``inputs``."""
    import keras

    copy = keras.layers.deserialize(keras.layers.serialize(layer))  # built as the original was
    copy.set_weights(layer.get_weights())
    return copy, np.asarray(layer(inputs)), np.asarray(copy(inputs))


def test_fill_hole_serialises():
    from ctxenc_tf.model.fill_hole import FillHole

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    masks = np.zeros((2, 16, 16, 1), "float32")
    masks[:, 4:12, 3:11] = 1
    layer = FillHole(fill_value=(0.25, -0.5, 0.125), overlap=2, name="fill")
    copy, out, copied = _round_trip(layer, [images, masks])
    assert type(copy) is FillHole and (copy.fill_value, copy.overlap, copy.name) == ((0.25, -0.5, 0.125), 2, "fill")
    assert not np.array_equal(out, images)  # it filled something
    np.testing.assert_array_equal(copied, out)


def test_window_convolutions_serialise():
    from ctxenc_tf.model.bottleneck import WindowConv2D, WindowConv2DTranspose

    rng = np.random.default_rng(0)
    for layer, inputs in ((WindowConv2D(6, 4, use_bias=True, activation="tanh"), rng.normal(size=(3, 4, 4, 5))),
                          (WindowConv2DTranspose(6, 4, use_bias=True), rng.normal(size=(3, 1, 1, 5)))):
        inputs = inputs.astype("float32")
        layer.build(inputs.shape)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])
        copy, out, copied = _round_trip(layer, inputs)
        assert type(copy) is type(layer) and copy.get_config() == layer.get_config()
        np.testing.assert_array_equal(copied, out)


def test_paper_model_uses_the_matmul_bottleneck():
    generator = build_generator(ModelConfig())
    assert type(generator.get_layer("bottleneck_conv")).__name__ == "WindowConv2D"
    assert type(generator.get_layer("dec0_deconv")).__name__ == "WindowConv2DTranspose"


def test_checkpoints_from_plain_convolutions_still_load(tmp_path, monkeypatch):
    """A checkpoint saved while the bottleneck was plain Conv2D / Conv2DTranspose layers
    (before they became matmuls) loads with every weight where it was and computes what it
    computed; it keeps its layers (the .keras file names them), so it runs as convolutions."""
    import keras

    from ctxenc_tf.model import networks
    from ctxenc_tf.model.checkpoint import load_context_encoder
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.utils import atomic

    monkeypatch.setattr(networks, "WindowConv2D", keras.layers.Conv2D)
    monkeypatch.setattr(networks, "WindowConv2DTranspose", keras.layers.Conv2DTranspose)
    old = ContextEncoder(tiny_model(seed=4))
    path = str(tmp_path / "old.keras")
    atomic.save_model(old, path)
    monkeypatch.undo()

    new = load_context_encoder(path)
    for name in ("bottleneck_conv", "dec0_deconv"):
        assert type(new.generator.get_layer(name)) is type(old.generator.get_layer(name))
    assert type(old.generator.get_layer("bottleneck_conv")) is keras.layers.Conv2D
    assert [w.path for w in new.weights] == [w.path for w in old.weights]
    for saved, loaded in zip(old.weights, new.weights):
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(saved))
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    masks = np.zeros((2, 32, 32, 1), "float32")
    masks[:, 8:24, 8:24] = 1
    # the same layers and weights in one process: the same kernels, bit for bit
    np.testing.assert_array_equal(np.asarray(new.generator([images, masks])),
                                  np.asarray(old.generator([images, masks])))
