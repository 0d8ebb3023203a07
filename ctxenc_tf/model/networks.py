"""Generator and discriminators as Keras functional models.

Generator (Pathak et al. 2016, centre region): ``[image, mask]`` -> hole filled with the
dataset mean -> encoder of 4x4 stride-2 convolutions (BN, LeakyReLU 0.2) down to 4x4 ->
4x4 valid convolution to a ``bottleneck``-d code -> decoder of 4x4 transposed
convolutions (BN, ReLU) -> ``tanh`` prediction of the hole region (the 64x64 centre, or
the whole image for random masks).
"""

import math

import keras
from keras import layers

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.model.fill_hole import FillHole
from ctxenc_tf.model.precision import output_dtype
from ctxenc_tf.model.replicas import synchronized_batch_norm


def _init():
    """DCGAN initialisation N(0, 0.02). A new initialiser per layer: its seed is drawn when
    the model is built (after ``keras.utils.set_random_seed``), so ``--seed`` fixes the
    initial weights and no two layers start from the same values."""
    return keras.initializers.RandomNormal(0.0, 0.02)


def _conv(x, filters, name, strides=2, padding="same", bias=False):
    return layers.Conv2D(filters, 4, strides=strides, padding=padding, use_bias=bias,
                         kernel_initializer=_init(), name=name)(x)


def _bn(x, name):
    # Global-batch statistics when built under a multi-replica strategy (see strategy.py).
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name,
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
    """Context-encoder generator.

    Inputs: ``image`` ``[N, S, S, 3]`` float32 in ``[-1, 1]`` and ``mask`` ``[N, S, S, 1]``
    in ``{0, 1}`` (1 = hole), ``S = config.image_size``. Output: ``prediction``
    ``[N, O, O, 3]`` float32 in ``[-1, 1]``, ``O = config.output_size``.
    """
    s = config.image_size
    image = keras.Input((s, s, 3), name="image")
    mask = keras.Input((s, s, 1), name="mask")
    fill = config.fill_value or (0.0, 0.0, 0.0)  # mid-grey until a dataset mean is measured
    x = FillHole(fill, config.overlap, name="fill_hole")([image, mask])
    for i, width in enumerate(encoder_widths(s, config.gen_filters)):
        x = _conv(x, width, f"enc{i}_conv", bias=(i == 0))
        if i > 0:
            x = _bn(x, f"enc{i}_bn")
        x = layers.LeakyReLU(0.2, name=f"enc{i}_lrelu")(x)
    x = _conv(x, config.bottleneck, "bottleneck_conv", strides=1, padding="valid")
    x = _bn(x, "bottleneck_bn")
    x = layers.LeakyReLU(0.2, name="bottleneck_lrelu")(x)
    widths = decoder_widths(config.output_size, config.gen_filters)
    x = layers.Conv2DTranspose(widths[0], 4, padding="valid", use_bias=False,
                               kernel_initializer=_init(), name="dec0_deconv")(x)
    x = layers.ReLU(name="dec0_relu")(_bn(x, "dec0_bn"))
    for i, width in enumerate(widths[1:], start=1):
        last = i == len(widths) - 1
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=last,
                                   kernel_initializer=_init(), name=f"dec{i}_deconv")(x)
        if not last:
            x = layers.ReLU(name=f"dec{i}_relu")(_bn(x, f"dec{i}_bn"))
    out = layers.Activation("tanh", dtype=output_dtype(), name="prediction")(x)
    return keras.Model([image, mask], out, name="generator")


def build_discriminator(config: ModelConfig) -> keras.Model:
    """Discriminator on the generator's output region (``[N, O, O, 3]`` in ``[-1, 1]``).

    ``dcgan`` (the paper's): stride-2 convs down to 4x4, a 4x4 valid conv -> ``[N, 1]``
    logits. ``patchgan`` (the seed project's): 70x70-style PatchGAN -> ``[N, P, P, 1]``
    logits, one per patch. Logits are float32, unbounded.
    """
    o = config.output_size
    f = config.disc_filters
    patch = keras.Input((o, o, 3), name="patch")
    x = patch
    if config.discriminator == "dcgan":
        widths = [f * min(2 ** i, 8) for i in range(int(math.log2(o // 4)))]
        strides = [2] * len(widths)
    else:
        widths = [f, 2 * f, 4 * f, 8 * f]
        strides = [2, 2, 2, 1] if o >= 32 else [2, 2, 1, 1]
    for i, (width, stride) in enumerate(zip(widths, strides)):
        x = _conv(x, width, f"d{i}_conv", strides=stride, bias=(i == 0))
        if i > 0:
            x = _bn(x, f"d{i}_bn")
        x = layers.LeakyReLU(0.2, name=f"d{i}_lrelu")(x)
    if config.discriminator == "dcgan":
        x = _conv(x, 1, "logit_conv", strides=1, padding="valid", bias=True)
        x = layers.Flatten(name="flatten")(x)
    else:
        x = _conv(x, 1, "logit_conv", strides=1, bias=True)
    logits = layers.Activation("linear", dtype=output_dtype(), name="logits")(x)
    return keras.Model(patch, logits, name=f"discriminator_{config.discriminator}")
