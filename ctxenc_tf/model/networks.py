"""Generator and discriminators as Keras functional models, in two families.

``paper`` (Pathak et al. 2016, centre region, as the original ``train.lua``):
``[image, mask]`` -> hole filled with the dataset mean -> encoder of 4x4 stride-2
convolutions (BN, LeakyReLU 0.2) down to 4x4 -> 4x4 valid convolution to a
``bottleneck``-d code -> decoder of 4x4 transposed convolutions (BN, ReLU) -> ``tanh``
prediction of the hole region. No convolution has a bias (the original zeroes them all
before every forward pass); BN scales start at N(1, 0.02) as the original initialises them.
Discriminator ``dcgan``: 4x4 stride-2 convolutions down to 4x4, a 4x4 valid convolution
to one logit.

``seed`` (the seed project's, i.e. the PyTorch-GAN context encoder): hole filled with
white -> five 4x4 stride-2 convolutions (BN from the second, LeakyReLU 0.2) -> a 1x1
convolution to a ``bottleneck``-channel 4x4 code -> 4x4 stride-2 transposed convolutions
(BN, ReLU) -> a 3x3 convolution to RGB, ``tanh``. Every convolution has a bias (PyTorch's
default). Its BatchNorm layers were meant to have momentum 0.8 (the PyTorch code passes
0.8 as the epsilon argument by mistake); here they do, with PyTorch's epsilon 1e-5.
Discriminator ``patchgan``: 3x3 convolutions (64 s2, 128 s2, 256 s2, 512 s1; instance norm
from the second; LeakyReLU 0.2) and a 3x3 convolution to one logit per patch.
"""

import math

import keras
from keras import layers

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.model.bottleneck import WindowConv2D, WindowConv2DTranspose
from ctxenc_tf.model.fill_hole import FillHole
from ctxenc_tf.model.precision import output_dtype
from ctxenc_tf.model.replicas import synchronized_batch_norm


def _init():
    """DCGAN initialisation N(0, 0.02). A new initialiser per layer: its seed is drawn when
    the model is built (after ``keras.utils.set_random_seed``), so ``--seed`` fixes the
    initial weights and no two layers start from the same values."""
    return keras.initializers.RandomNormal(0.0, 0.02)


def _conv(x, filters, name, strides=2, padding="same", bias=False, kernel=4):
    if padding == "torch":  # PyTorch's padding=1 for a 3x3 kernel: same on both sides
        x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
        padding = "valid"
    # A valid convolution whose kernel covers its whole input is one matrix product.
    whole = padding == "valid" and strides == 1 and tuple(x.shape[1:3]) == (kernel, kernel)
    return (WindowConv2D if whole else layers.Conv2D)(
        filters, kernel, strides=strides, padding=padding, use_bias=bias,
        kernel_initializer=_init(), name=name)(x)


def _bn(x, name, momentum=0.9):
    # Global-batch statistics when built under a multi-replica strategy (see strategy.py).
    return layers.BatchNormalization(momentum=momentum, epsilon=1e-5, name=name,
                                     gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
                                     synchronized=synchronized_batch_norm())(x)


def encoder_widths(image_size: int, filters: int) -> list:
    """Widths of the stride-2 encoder convolutions that take ``image_size`` down to 4x4:
    ``filters, filters, 2*filters, 4*filters, 8*filters`` for 128 (capped at 8x)."""
    n = int(math.log2(image_size // 4))
    return [filters * min(2 ** max(i - 1, 0), 8) for i in range(n)]


def decoder_widths(output_size: int, filters: int) -> list:
    """Widths of the decoder from the 4x4 transposed convolution up to ``output_size``,
    the last being 3 (RGB): ``8f, 4f, 2f, f, 3`` for a 64x64 output (capped at 8x)."""
    n = int(math.log2(output_size // 4))
    return [filters * min(2 ** (n - 1 - i), 8) for i in range(n)] + [3]


def build_generator(config: ModelConfig) -> keras.Model:
    """Context-encoder generator of the ``config.generator`` family (module docstring).

    Inputs: ``image`` ``[N, S, S, 3]`` float32 in ``[-1, 1]`` and ``mask`` ``[N, S, S, 1]``
    in ``{0, 1}`` (1 = hole), ``S = config.image_size``. Output: ``prediction``
    ``[N, O, O, 3]`` float32 in ``[-1, 1]``, ``O = config.output_size``.
    """
    s = config.image_size
    image = keras.Input((s, s, 3), name="image")
    mask = keras.Input((s, s, 1), name="mask")
    fill = config.fill_value or (0.0, 0.0, 0.0)  # mid-grey until a dataset mean is measured
    x = FillHole(fill, config.overlap, name="fill_hole")([image, mask])
    seed = config.generator == "seed"
    momentum = 0.8 if seed else 0.9
    for i, width in enumerate(encoder_widths(s, config.gen_filters)):
        x = _conv(x, width, f"enc{i}_conv", bias=seed)
        if i > 0:
            x = _bn(x, f"enc{i}_bn", momentum)
        x = layers.LeakyReLU(0.2, name=f"enc{i}_lrelu")(x)
    widths = decoder_widths(config.output_size, config.gen_filters)
    if seed:  # 1x1 code at 4x4, then every transposed convolution doubles the size
        x = layers.Conv2D(config.bottleneck, 1, kernel_initializer=_init(), name="bottleneck_conv")(x)
        up = widths[:-1]
    else:  # 4x4 valid convolution to a 1x1 code, a 4x4 valid transposed convolution back to 4x4
        x = _conv(x, config.bottleneck, "bottleneck_conv", strides=1, padding="valid")
        x = layers.LeakyReLU(0.2, name="bottleneck_lrelu")(_bn(x, "bottleneck_bn"))
        x = WindowConv2DTranspose(widths[0], 4, padding="valid", use_bias=False,
                                  kernel_initializer=_init(), name="dec0_deconv")(x)
        x = layers.ReLU(name="dec0_relu")(_bn(x, "dec0_bn"))
        up = widths[1:-1]
    for i, width in enumerate(up, start=0 if seed else 1):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=seed,
                                   kernel_initializer=_init(), name=f"dec{i}_deconv")(x)
        x = layers.ReLU(name=f"dec{i}_relu")(_bn(x, f"dec{i}_bn", momentum))
    if seed:
        x = _conv(x, 3, "rgb_conv", strides=1, padding="torch", bias=True, kernel=3)
    else:
        x = layers.Conv2DTranspose(3, 4, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"dec{len(widths) - 1}_deconv")(x)
    out = layers.Activation("tanh", dtype=output_dtype(), name="prediction")(x)
    return keras.Model([image, mask], out, name="generator")


def build_discriminator(config: ModelConfig) -> keras.Model:
    """Discriminator on the generator's output region (``[N, O, O, 3]`` in ``[-1, 1]``).

    ``dcgan`` (the paper's): stride-2 convs down to 4x4, a 4x4 valid conv -> ``[N, 1]``
    logits. ``patchgan`` (the seed project's): 3x3 convs -> ``[N, P, P, 1]`` logits, one
    per patch (``P = O / 8``). Logits are float32, unbounded.
    """
    o = config.output_size
    f = config.disc_filters
    patch = keras.Input((o, o, 3), name="patch")
    x = patch
    if config.discriminator == "dcgan":
        for i, width in enumerate(f * min(2 ** i, 8) for i in range(int(math.log2(o // 4)))):
            x = _conv(x, width, f"d{i}_conv")
            if i > 0:
                x = _bn(x, f"d{i}_bn")
            x = layers.LeakyReLU(0.2, name=f"d{i}_lrelu")(x)
        x = _conv(x, 1, "logit_conv", strides=1, padding="valid")
        x = layers.Flatten(name="flatten")(x)
    else:
        for i, (width, stride) in enumerate(zip([f, 2 * f, 4 * f, 8 * f], [2, 2, 2, 1])):
            x = _conv(x, width, f"d{i}_conv", strides=stride, padding="torch", bias=True, kernel=3)
            if i > 0:  # PyTorch's InstanceNorm2d: per image and channel, no scale or shift
                x = layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False,
                                              name=f"d{i}_in")(x)
            x = layers.LeakyReLU(0.2, name=f"d{i}_lrelu")(x)
        x = _conv(x, 1, "logit_conv", strides=1, padding="torch", bias=True, kernel=3)
    logits = layers.Activation("linear", dtype=output_dtype(), name="logits")(x)
    return keras.Model(patch, logits, name=f"discriminator_{config.discriminator}")
