"""The geometry the model derives from a hole mask, in ``keras.ops`` (every backend).

A mask is 1.0 on the region the generator must predict and 0.0 on known context,
``[N, H, W, 1]`` float32. The network sees the mask eroded by ``overlap`` pixels as
missing; the ring between the two stays visible and carries the extra loss weight.
Masks themselves are drawn by :mod:`ctxenc_tf.data.hole_masks`.
"""

from keras import ops


def box_offsets(mask, size: int):
    """Top-left corner of the ``size``-pixel square the generator predicts for each mask:
    the hole's first row and column, moved inward so the square stays in the image (a
    hole up to ``size`` wide then lies inside it). ``mask``: ``[N, S, S, 1]`` in
    ``{0, 1}``; returns ``[N, 2]`` int32 ``(top, left)``."""
    image_size = ops.shape(mask)[1]  # static, or a tensor where TensorFlow traces an unknown size
    hole = mask[..., 0] > 0.5
    first = [ops.argmax(ops.cast(ops.any(hole, axis=axis), "int32"), axis=1) for axis in (2, 1)]
    return ops.clip(ops.cast(ops.stack(first, axis=1), "int32"), 0, image_size - size)


def _take_rows_and_columns(x, rows, cols):
    """``x[n, rows[n, i], cols[n, j], :]`` for ``x`` ``[N, H, W, C]``, ``rows`` ``[N, A]``,
    ``cols`` ``[N, B]`` (int32): ``[N, A, B, C]``."""
    x = ops.take_along_axis(x, rows[:, :, None, None], axis=1)
    return ops.take_along_axis(x, cols[:, None, :, None], axis=2)


def crop_box(x, offsets, size: int):
    """The ``size`` x ``size`` square of ``x`` (``[N, S, S, C]``) at ``offsets``
    (``[N, 2]`` from :func:`box_offsets`). Returns ``[N, size, size, C]``."""
    span = ops.arange(size, dtype="int32")[None]
    return _take_rows_and_columns(x, offsets[:, :1] + span, offsets[:, 1:] + span)


def paste_box(patch, offsets, image_size: int):
    """``patch`` (``[N, P, P, C]``) placed on a zero ``[N, S, S, C]`` canvas at ``offsets``
    (``[N, 2]``), and the ``[N, S, S, 1]`` float32 indicator of where it lies."""
    size = patch.shape[1]
    positions = ops.arange(image_size, dtype="int32")[None]
    # For each canvas position, the patch index it shows, clipped to the patch (the
    # indicator zeroes the positions outside it).
    rows, cols = (ops.clip(positions - offsets[:, i:i + 1], 0, size - 1) for i in (0, 1))
    canvas = _take_rows_and_columns(patch, rows, cols)
    inside = [ops.cast((positions >= offsets[:, i:i + 1]) & (positions < offsets[:, i:i + 1] + size),
                       patch.dtype)
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
    padded = ops.pad(outside, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], constant_values=1.0)
    # A square window's maximum is the maximum over its rows of the maximum over its
    # columns: two 1-D pools cost 2 * size comparisons a pixel instead of size**2 (18
    # instead of 81 for the paper's 4-pixel overlap), with the same result.
    rows = ops.max_pool(padded, (size, 1), strides=1, padding="valid")
    return 1.0 - ops.max_pool(rows, (1, size), strides=1, padding="valid")


def hidden_region(mask, overlap: int):
    """The part of the hole the network does not see (filled with the mean):
    the mask eroded by ``overlap``. ``[N, H, W, 1]`` float32."""
    return erode(mask, overlap)


def loss_weights(mask, overlap: int, overlap_weight: float, context_weight: float = 0.0):
    """Per-pixel reconstruction weight: 1 on the hidden core, ``overlap_weight`` on the
    ``overlap``-pixel ring of the hole that the network also sees, ``context_weight``
    outside the hole (0 where the output is the hole's square; ``overlap_weight`` for a
    whole-image output, as ``train_random.lua`` weights its context).

    ``mask``: ``[N, H, W, 1]``; returns the same shape, float32.
    """
    core = hidden_region(mask, overlap)
    weights = core + overlap_weight * (mask - core)
    if context_weight:
        weights = weights + context_weight * (1.0 - mask)
    return weights


def blend_alpha(mask, overlap: int):
    """Alpha for pasting a prediction back: 1 on the hidden core, ramping linearly down
    across the overlap ring (``k / (overlap + 1)``), 0 outside the hole.

    ``mask``: ``[N, H, W, 1]``; returns the same shape, float32 in ``[0, 1]``.
    """
    alpha = hidden_region(mask, overlap)
    for k in range(overlap):
        alpha += erode(mask, k) / (overlap + 1)
    return ops.minimum(alpha, 1.0)
