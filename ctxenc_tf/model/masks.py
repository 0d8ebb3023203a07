"""Hole masks and the geometry derived from them.

A mask is a float32 tensor, 1.0 on the region the generator must predict (the paper's
"hole", 64x64 at the centre by default) and 0.0 on known context; shape ``[H, W, 1]`` for
one image or ``[N, H, W, 1]`` for a batch. The network sees the mask eroded by
``overlap`` pixels as missing; the ring between the two stays visible and carries the
extra loss weight.

All functions are TensorFlow ops, usable inside ``tf.data`` and inside exported graphs.
Random masks use stateless RNG: the same ``seed`` (int32 pair) gives the same mask.
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


def box_offsets(mask, size: int):
    """Top-left corner of the ``size``-pixel square the generator predicts for each mask:
    the hole's first row and column, moved inward so the square stays in the image (a
    hole up to ``size`` wide then lies inside it). ``mask``: ``[N, S, S, 1]`` in
    ``{0, 1}``; returns ``[N, 2]`` int32 ``(top, left)``."""
    image_size = tf.shape(mask)[1]
    hole = mask[..., 0] > 0.5
    first = [tf.argmax(tf.cast(tf.reduce_any(hole, axis=axis), tf.int32), axis=1, output_type=tf.int32)
             for axis in (2, 1)]
    return tf.clip_by_value(tf.stack(first, axis=1), 0, image_size - size)


def _box_indices(offsets, size: int, length: int):
    """``[N, length]`` int32: for each image, the index into a ``size`` square placed at
    ``offsets`` (``[N]``) of every position ``0..length-1``, clipped to the square."""
    return tf.clip_by_value(tf.range(length)[None] - offsets[:, None], 0, size - 1)


def crop_box(x, offsets, size: int):
    """The ``size`` x ``size`` square of ``x`` (``[N, S, S, C]``) at ``offsets``
    (``[N, 2]`` from :func:`box_offsets`). Returns ``[N, size, size, C]``."""
    rows = offsets[:, :1] + tf.range(size)[None]
    cols = offsets[:, 1:] + tf.range(size)[None]
    x = tf.gather(x, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def paste_box(patch, offsets, image_size: int):
    """``patch`` (``[N, P, P, C]``) placed on a zero ``[N, S, S, C]`` canvas at ``offsets``
    (``[N, 2]``), and the ``[N, S, S, 1]`` float32 indicator of where it lies."""
    size = patch.shape[1]
    rows = _box_indices(offsets[:, 0], size, image_size)
    cols = _box_indices(offsets[:, 1], size, image_size)
    canvas = tf.gather(tf.gather(patch, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    inside = [tf.cast((tf.range(image_size)[None] >= offsets[:, i:i + 1])
                      & (tf.range(image_size)[None] < offsets[:, i:i + 1] + size), patch.dtype)
              for i in (0, 1)]
    indicator = inside[0][:, :, None, None] * inside[1][:, None, :, None]
    return canvas * indicator, indicator


def erode(mask, pixels: int):
    """Shrink the hole by ``pixels`` on every side. ``mask``: ``[N, H, W, 1]`` in ``{0, 1}``."""
    if pixels <= 0:
        return mask
    size = 2 * pixels + 1
    outside = 1.0 - mask
    # Pad with "outside" so the image border does not count as hole.
    grown = tf.nn.max_pool2d(tf.pad(outside, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]],
                                    constant_values=1.0), size, 1, "VALID")
    return 1.0 - grown


def hidden_region(mask, overlap: int):
    """The part of the hole the network does not see (filled with the mean):
    the mask eroded by ``overlap``. ``[N, H, W, 1]`` float32."""
    return erode(mask, overlap)


def loss_weights(mask, overlap: int, overlap_weight: float):
    """Per-pixel reconstruction weight: 1 on the hidden core, ``overlap_weight`` on the
    ``overlap``-pixel ring of the hole that the network also sees, 0 outside the hole.

    ``mask``: ``[N, H, W, 1]``; returns the same shape, float32.
    """
    core = hidden_region(mask, overlap)
    return core + overlap_weight * (mask - core)


def blend_alpha(mask, overlap: int):
    """Alpha for pasting a prediction back: 1 on the hidden core, ramping linearly down
    across the overlap ring (``k / (overlap + 1)``), 0 outside the hole.

    ``mask``: ``[N, H, W, 1]``; returns the same shape, float32 in ``[0, 1]``.
    """
    alpha = hidden_region(mask, overlap)
    for k in range(overlap):
        alpha += erode(mask, k) / (overlap + 1)
    return tf.minimum(alpha, 1.0)
