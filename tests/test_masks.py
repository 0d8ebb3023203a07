"""Mask drawing (tf.data), and the model's mask geometry: erosion, overlap weighting, blending."""

import numpy as np
import tensorflow as tf

from ctxenc_tf.data import hole_masks
from ctxenc_tf.model import masks


def test_center_mask_default_geometry():
    m = hole_masks.center_mask(128, 64).numpy()
    assert m.shape == (128, 128, 1)
    ys, xs = np.nonzero(m[..., 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (32, 95, 32, 95)
    hidden = masks.hidden_region(m[None], 4).numpy()[0, ..., 0]
    ys, xs = np.nonzero(hidden)
    # the network sees a 56x56 core filled with the mean, 4 px of the 64x64 stay context
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (36, 91, 36, 91)
    assert hidden.sum() == 56 * 56


def test_loss_weights_ten_times_on_overlap_ring():
    m = hole_masks.center_mask(32, 16)[None]
    w = masks.loss_weights(m, 2, 10.0).numpy()[0, ..., 0]
    assert w[0, 0] == 0  # context
    assert w[8, 8] == 10 and w[9, 15] == 10 and w[23, 23] == 10  # ring (2 px inside the hole)
    assert w[10, 10] == 1 and w[21, 21] == 1  # hidden core
    assert np.count_nonzero(w == 10) == 16 * 16 - 12 * 12
    assert np.count_nonzero(w == 1) == 12 * 12


def test_erode_treats_image_border_as_context():
    m = np.zeros((1, 10, 10, 1), "float32")
    m[:, :4, :4] = 1  # hole touching the corner
    e = masks.erode(tf.constant(m), 1).numpy()[0, ..., 0]
    assert e.sum() == 4  # 4x4 -> 2x2: the image border erodes like context
    assert e[1:3, 1:3].all()


def test_random_square_is_inside_and_deterministic():
    seen = set()
    for s in range(20):
        m = hole_masks.random_square_mask(tf.constant([s, 7]), 32, 16).numpy()[..., 0]
        ys, xs = np.nonzero(m)
        assert m.sum() == 256 and ys.max() - ys.min() == 15 and xs.max() - xs.min() == 15
        seen.add((ys.min(), xs.min()))
        again = hole_masks.random_square_mask(tf.constant([s, 7]), 32, 16).numpy()[..., 0]
        np.testing.assert_array_equal(m, again)
    assert len(seen) > 5


def test_random_region_coverage():
    for s in range(5):
        m = hole_masks.make_mask("random_region", 64, 32, tf.constant([s, 1])).numpy()
        assert set(np.unique(m)) <= {0.0, 1.0}
        assert abs(m.mean() - 0.25) < 0.02


def test_blend_alpha_ramps_over_overlap():
    m = hole_masks.center_mask(32, 16)[None]
    a = masks.blend_alpha(m, 2).numpy()[0, 16, :, 0]
    np.testing.assert_allclose(a[6:12], [0, 0, 1 / 3, 2 / 3, 1, 1], atol=1e-6)
    assert masks.blend_alpha(m, 0).numpy().sum() == 256


def test_box_crop_and_paste_follow_random_squares_to_the_border():
    """The generator's square follows the hole (random squares, even at the border), and
    pasting a crop back reproduces the image exactly on the square, zero elsewhere."""
    size, hole = 32, 16
    mask = np.stack([hole_masks.random_square_mask(tf.constant([i, 5]), size, hole).numpy() for i in range(16)]
                    + [hole_masks.center_mask(size, hole).numpy()])
    offsets = masks.box_offsets(tf.constant(mask), hole).numpy()
    for m, (top, left) in zip(mask, offsets):
        rows, cols = np.nonzero(m[..., 0])
        assert (top, left) == (rows.min(), cols.min())
    assert tuple(offsets[-1]) == (8, 8)  # the centre hole's square is the centre
    assert {0, size - hole} & set(offsets.ravel())  # some squares touch the border
    images = tf.random.stateless_uniform([len(mask), size, size, 3], [1, 2])
    assert masks.crop_box(tf.constant(mask), offsets, hole).numpy().all()  # the crop is all hole
    patch = masks.crop_box(images, offsets, hole)
    pasted, inside = masks.paste_box(patch, offsets, size)
    np.testing.assert_array_equal(inside.numpy(), mask)  # the square is exactly the hole
    np.testing.assert_array_equal(pasted.numpy(), images.numpy() * mask)


def test_box_of_a_small_hole_near_the_border_stays_inside_the_image():
    mask = np.zeros((1, 32, 32, 1), np.float32)
    mask[0, 28:31, 29:32] = 1  # a 3x3 hole in the corner
    top, left = masks.box_offsets(tf.constant(mask), 16).numpy()[0]
    assert (top, left) == (16, 16)  # moved inward: the 16x16 square still holds the hole
