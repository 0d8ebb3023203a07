"""Drawing hole masks in TensorFlow, for the ``tf.data`` pipeline and the exported graphs.

A mask is a float32 tensor ``[S, S, 1]``, 1.0 on the region the generator must predict
(the paper's "hole", 64x64 at the centre by default) and 0.0 on known context. Random
masks use stateless RNG: the same ``seed`` (int32 pair) gives the same mask. The geometry
derived from a mask inside the model (erosion, loss weights, blending, the predicted
square) is :mod:`ctxenc_tf.model.masks`, in ``keras.ops`` for every backend.
"""

import tensorflow as tf


def center_mask(image_size: int, hole_size: int) -> tf.Tensor:
    """Centre square hole. Returns ``[image_size, image_size, 1]`` float32 in ``{0, 1}``."""
    offset = (image_size - hole_size) // 2
    hole = tf.ones([hole_size, hole_size, 1], tf.float32)
    pad = [[offset, image_size - hole_size - offset]] * 2 + [[0, 0]]
    return tf.pad(hole, pad)


def random_square_mask(seed, image_size: int, hole_size: int) -> tf.Tensor:
    """Square hole of side ``hole_size`` at a uniformly random position (stateless ``seed``).

    Returns ``[image_size, image_size, 1]`` float32 in ``{0, 1}``.
    """
    top_left = tf.random.stateless_uniform(
        [2], seed=seed, minval=0, maxval=image_size - hole_size + 1, dtype=tf.int32)
    hole = tf.ones([hole_size, hole_size, 1], tf.float32)
    pad = [[top_left[0], image_size - hole_size - top_left[0]],
           [top_left[1], image_size - hole_size - top_left[1]], [0, 0]]
    return tf.pad(hole, pad)


def random_region_mask(seed, image_size: int, coverage: float = 0.25) -> tf.Tensor:
    """Random blob-shaped region covering about ``coverage`` of the image, like the
    paper's random-region masks (smooth noise thresholded at its quantile).

    Returns ``[image_size, image_size, 1]`` float32 in ``{0, 1}``.
    """
    noise = tf.random.stateless_uniform([1, 6, 6, 1], seed=seed)
    smooth = tf.image.resize(noise, [image_size, image_size], method="bicubic")[0]
    flat = tf.sort(tf.reshape(smooth, [-1]), direction="DESCENDING")
    k = max(1, int(round(coverage * image_size * image_size))) - 1
    return tf.cast(smooth >= flat[k], tf.float32)


def make_mask(mask_type: str, image_size: int, hole_size: int, seed=None) -> tf.Tensor:
    """Mask of the given type (see :data:`ctxenc_tf.config.MASK_TYPES`).

    ``seed`` (int32 ``[2]``) is required for the random types. Returns ``[S, S, 1]`` float32.
    """
    if mask_type == "center":
        return center_mask(image_size, hole_size)
    if mask_type == "random_square":
        return random_square_mask(seed, image_size, hole_size)
    if mask_type == "random_region":
        return random_region_mask(seed, image_size, (hole_size / image_size) ** 2)
    raise ValueError(f"unknown mask type {mask_type!r}")
