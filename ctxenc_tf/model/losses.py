"""Loss functions. Every function returns one value per example (shape ``[N]``);
the trainer averages over the global batch. Losses compute in float32 when the network
computes in 16 bits (mixed precision), and in float64 under a float64 policy (used to
check distributed training exactly, see ``tests/test_distribute.py``).

Images and predictions are NHWC in ``[-1, 1]``; ``weights`` and ``region`` are
``[N, H, W, 1]`` (see :func:`ctxenc_tf.model.masks.loss_weights`).
"""

from keras import ops


def loss_dtype(x) -> str:
    """The dtype losses on ``x`` compute in: ``float64`` for float64 ``x``, else ``float32``."""
    return "float64" if str(x.dtype).endswith("float64") else "float32"


def pixel_error(prediction, target, kind: str, mix_l1_fraction: float = 0.5):
    """Element-wise reconstruction error: ``l2`` squared, ``l1`` absolute, or ``mix``
    (``f * l1 + (1 - f) * l2``). Same shape as the inputs."""
    dtype = loss_dtype(prediction)
    diff = ops.cast(prediction, dtype) - ops.cast(target, dtype)
    if kind == "l2":
        return ops.square(diff)
    if kind == "l1":
        return ops.abs(diff)
    if kind == "mix":
        return mix_l1_fraction * ops.abs(diff) + (1.0 - mix_l1_fraction) * ops.square(diff)
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def reconstruction_loss(prediction, target, weights, region, kind="l2", mix_l1_fraction=0.5):
    """Weighted reconstruction loss per example: ``sum(weights * error) / (sum(region) * C)``.

    For the centre model ``region`` is all ones, so this is the mean over the predicted
    patch with the overlap ring weighted ``overlap_weight`` times, as in the original code.
    For random regions the model passes an all-ones ``region`` and weights that cover the
    context too: the weighted mean over the whole image, as ``train_random.lua`` computes it.
    """
    err = pixel_error(prediction, target, kind, mix_l1_fraction)
    err = err * ops.cast(weights, err.dtype)
    channels = ops.cast(ops.shape(prediction)[-1], err.dtype)
    area = ops.maximum(ops.sum(ops.cast(region, err.dtype), axis=(1, 2, 3)), 1.0) * channels
    return ops.sum(err, axis=(1, 2, 3)) / area


def _per_example_mean(x):
    return ops.mean(ops.reshape(ops.cast(x, loss_dtype(x)), (ops.shape(x)[0], -1)), axis=1)


def discriminator_loss(real_logits, fake_logits, kind="bce"):
    """Discriminator loss per example: real -> 1, fake -> 0.

    ``bce``: sigmoid cross-entropy on logits, the two terms summed (the original code).
    ``lsgan``: least squares on the raw outputs, the two terms averaged (Mao et al.'s
    1/2 factor, as the seed project). Logits may be ``[N, 1]`` or ``[N, P, P, 1]`` patches.
    """
    real_logits = ops.cast(real_logits, loss_dtype(real_logits))
    fake_logits = ops.cast(fake_logits, loss_dtype(fake_logits))
    if kind == "bce":
        real = ops.binary_crossentropy(ops.ones_like(real_logits), real_logits, from_logits=True)
        fake = ops.binary_crossentropy(ops.zeros_like(fake_logits), fake_logits, from_logits=True)
    elif kind == "lsgan":
        real = 0.5 * ops.square(real_logits - 1.0)
        fake = 0.5 * ops.square(fake_logits)
    else:
        raise ValueError(f"unknown adversarial loss {kind!r}")
    return _per_example_mean(real) + _per_example_mean(fake)


def generator_adversarial_loss(fake_logits, kind="bce"):
    """Generator's adversarial loss per example: make the discriminator say "real"."""
    fake_logits = ops.cast(fake_logits, loss_dtype(fake_logits))
    if kind == "bce":
        return _per_example_mean(
            ops.binary_crossentropy(ops.ones_like(fake_logits), fake_logits, from_logits=True))
    if kind == "lsgan":
        return _per_example_mean(ops.square(fake_logits - 1.0))
    raise ValueError(f"unknown adversarial loss {kind!r}")
