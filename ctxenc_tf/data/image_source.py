"""Where the input pipeline's images come from: :class:`ImageSource`, the one interface of
both kinds of input data, and :class:`ImageFiles`, a list of image files decoded on the fly.
The other kind, a prepared directory of TFRecord shards, is
:class:`ctxenc_tf.data.records.PreparedRecords`.

Every image a source gives is ``[S, S, 3]`` float32 in ``[-1, 1]``, ``S`` its ``image_size``.
"""

import abc
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from ctxenc_tf.data import seeded_order
from ctxenc_tf.data.pipeline import load_image, path_bytes
from ctxenc_tf.errors import DataError

MEAN_SAMPLE = 512  # images decoded to measure an image folder's mean colour


class ImageSource(abc.ABC):
    """The images of one split, as :mod:`ctxenc_tf.data.pipeline` reads them.

    ``names``: the source file of every image, in stored order (``len`` of the source);
    ``image_size``: ``S``.
    """

    names: tuple
    image_size: int

    def __len__(self) -> int:
        return len(self.names)

    @abc.abstractmethod
    def images(self) -> tf.data.Dataset:
        """Every image in stored order, ``[S, S, 3]`` float32 in ``[-1, 1]``; one that fails
        to decode is dropped."""

    @abc.abstractmethod
    def epoch_images(self, seed: int, epoch, skip) -> tf.data.Dataset:
        """``(image, position)`` pairs of training epoch ``epoch`` (int64 scalar, may be a
        tensor): the images in the epoch's seeded order (a pure function of ``seed`` and
        ``epoch``) from position ``skip`` (int64 scalar tensor) on, each once; ``position``
        (int64) is the image's place in that order, which seeds its flip and mask. An image
        that fails to decode is dropped, its position with it."""

    @abc.abstractmethod
    def mean_colour(self, seed: int) -> tuple:
        """Per-channel mean colour of the images as training sees them, three floats in
        ``[-1, 1]``: the hole's fill. ``seed`` picks the images where only a sample is measured."""

    @abc.abstractmethod
    def prefix(self, count: int) -> "ImageSource":
        """The same kind of source over the first ``count`` images."""

    @abc.abstractmethod
    def parts(self, size: int) -> list:
        """The source cut into consecutive sources of at most ``size`` images each (a part
        may hold more where the source cannot be cut finer), whose images, in order, are
        the source's."""

    @property
    @abc.abstractmethod
    def files(self) -> tuple:
        """The files read, in order (the images themselves, or the shards holding them), for
        :func:`~ctxenc_tf.data.fingerprint.data_fingerprint`."""

    @abc.abstractmethod
    def selection(self) -> str:
        """What decides which images of :attr:`files` are read beyond the files themselves,
        for :func:`~ctxenc_tf.data.fingerprint.data_fingerprint` ('' when every file is one image)."""


@dataclass(frozen=True)
class ImageFiles(ImageSource):
    """Image files decoded on the fly: ``names`` are their paths; each is cropped to its
    central square (``stretch``: squashed whole) and resized to ``image_size``
    (:func:`~ctxenc_tf.data.pipeline.load_image`)."""

    names: tuple
    image_size: int
    stretch: bool = False

    def _load(self, path):
        return load_image(path, self.image_size, self.stretch)

    def images(self) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices(path_bytes(self.names))
        ds = ds.map(self._load, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.ignore_errors(log_warning=True)

    def epoch_images(self, seed: int, epoch, skip) -> tf.data.Dataset:
        """The epoch's order is a seeded permutation of all files, and decoding starts at
        ``skip``: nothing before it is read."""
        n = len(self)
        paths = tf.constant(path_bytes(self.names))
        order = seeded_order.epoch_order(n, seed, epoch)
        ds = tf.data.Dataset.range(skip, n).map(lambda p: (self._load(paths[order[p]]), p),
                                                num_parallel_calls=tf.data.AUTOTUNE)
        return ds.ignore_errors(log_warning=True)

    def mean_colour(self, seed: int, limit: int = MEAN_SAMPLE) -> tuple:
        """The mean colour of ``limit`` images (all of them when there are fewer), a seeded
        sample spread over the whole list (:func:`~ctxenc_tf.data.seeded_order.spread_sample`):
        the first ones of a sorted folder may be one person or one photo session. Decoded
        as training decodes them, cropped or stretched."""
        sample = seeded_order.spread_sample(len(self), seed, limit).numpy()
        images = replace(self, names=tuple(self.names[i] for i in sample)).images()
        means = np.array([m.numpy() for m in images.map(lambda image: tf.reduce_mean(image, axis=(0, 1)))])
        if len(means) == 0:
            raise DataError("no decodable image to estimate the dataset mean from")
        return tuple(float(v) for v in means.mean(axis=0))

    def prefix(self, count: int) -> "ImageFiles":
        return replace(self, names=self.names[:count])

    def parts(self, size: int) -> list:
        return [replace(self, names=self.names[i:i + size]) for i in range(0, len(self), size)]

    @property
    def files(self) -> tuple:
        return self.names

    def selection(self) -> str:
        return ""
