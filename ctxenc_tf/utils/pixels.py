"""Conversions of pixel values between ranges, one function per range (TensorFlow ops,
usable inside ``tf.data`` and exported graphs; ``.numpy()`` gives arrays)."""

import tensorflow as tf


def unit_to_uint8(images):
    """Float in ``[0, 1]`` -> uint8 in ``[0, 255]``: scaled, rounded, clipped. Any shape."""
    images = tf.convert_to_tensor(images, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def signed_to_uint8(images):
    """Float in ``[-1, 1]`` -> uint8 in ``[0, 255]``: ``round((x + 1) * 127.5)``, clipped;
    NaN (a diverged model) becomes 0, black. Any shape."""
    images = tf.convert_to_tensor(images, tf.float32)
    images = tf.where(tf.math.is_nan(images), -1.0, images)
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)
