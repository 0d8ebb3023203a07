"""Reading prepared TFRecord shards (written by :mod:`ctxenc_tf.data.prepare`): the
``prepared.json`` metadata, the shards as a sequence of records, and the source images a
prepared directory stands for."""

import collections.abc
import os
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from ctxenc_tf import schemas
from ctxenc_tf.data import seeded_order
from ctxenc_tf.errors import DataError

FORMAT = schemas.PREPARED_FORMAT

METADATA = "prepared.json"

SHUFFLE_BUFFER = 4096  # records shuffled together (~48 KiB each at 128x128): ~200 MiB

INTERLEAVE = 8  # shards read at once


@dataclass(frozen=True)
class Records(collections.abc.Sequence):
    """The images of one split of a prepared directory, usable wherever the input pipeline
    takes a list of image files (:mod:`ctxenc_tf.data` dispatches on this type).

    ``shards``: TFRecord paths; ``counts``: how many images of each shard are used (a
    prefix, after ``train_limit``/``val_limit``); ``names``: source file of every used image;
    ``mean``: per-channel mean colour of the training split in ``[-1, 1]``.
    """

    shards: tuple
    counts: tuple
    names: tuple
    image_size: int
    mean: tuple

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        """An int gives the source file name of that image; a prefix slice ``[:k]`` gives the
        :class:`Records` of the first ``k`` images (as ``train_limit`` and samples use)."""
        if not isinstance(index, slice):
            return self.names[index]
        start, stop, step = index.indices(len(self))
        if start or step != 1:
            raise IndexError("prepared TFRecords can only be cut to a prefix [:k]")
        counts, left = [], stop
        for count in self.counts:
            counts.append(min(count, left))
            left -= counts[-1]
        keep = sum(1 for c in counts if c)
        return replace(self, shards=self.shards[:keep], counts=tuple(counts[:keep]),
                       names=self.names[:stop])

    @staticmethod
    def _records(shards, counts, parallel: int) -> tf.data.Dataset:
        """Serialized records: the first ``counts[i]`` of each of ``shards`` (lists or 1-D
        tensors), ``parallel`` shards interleaved in a deterministic order."""
        ds = tf.data.Dataset.from_tensor_slices((shards, counts))
        return ds.interleave(lambda path, count: tf.data.TFRecordDataset(path).take(count),
                             cycle_length=parallel, block_length=1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def images(self) -> tf.data.Dataset:
        """Every image in stored order: ``[S, S, 3]`` float32 in ``[-1, 1]``."""
        ds = self._records(list(self.shards), np.array(self.counts, np.int64), 1)
        return ds.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)

    def epoch_images(self, seed: int, epoch) -> tf.data.Dataset:
        """Every image once, in the order of training epoch ``epoch`` (a pure function of
        ``seed`` and ``epoch``): shards in a seeded order, :data:`INTERLEAVE` at a time,
        shuffled in seeded blocks of :data:`SHUFFLE_BUFFER` records. ``[S, S, 3]`` float32 in ``[-1, 1]``."""
        order = seeded_order.epoch_order(len(self.shards), seed, epoch)
        ds = self._records(tf.gather(list(self.shards), order),
                           tf.gather(np.array(self.counts, np.int64), order),
                           min(INTERLEAVE, len(self.shards)))
        ds = seeded_order.seeded_block_shuffle(ds, seeded_order.example_seed(seed, epoch, -3), SHUFFLE_BUFFER)
        return ds.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)

    def parse(self, record):
        """One serialized record -> ``[S, S, 3]`` float32 in ``[-1, 1]``."""
        features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        pixels = tf.io.decode_raw(features["image"], tf.uint8)
        image = tf.reshape(pixels, [self.image_size, self.image_size, 3])
        return tf.cast(image, tf.float32) / 127.5 - 1.0


def read_metadata(directory: str):
    """The ``prepared.json`` dict of a prepared ``directory``, checked against its schema
    (:func:`ctxenc_tf.schemas.read_prepared`, which raises :class:`DataError` naming the
    field); ``None`` when ``directory`` holds none."""
    path = os.path.join(directory, METADATA)
    if not os.path.isfile(path):
        return None
    return schemas.read_prepared(path)


def image_source(directory: str) -> str:
    """``directory`` itself, or for a prepared directory the image folder it was prepared
    from, for commands that need image files (export's int8 calibration, evaluation).
    Raises :class:`~ctxenc_tf.DataError` if that folder is not on this machine."""
    meta = read_metadata(directory) if os.path.isdir(directory) else None
    if meta is None:
        return directory
    if not os.path.isdir(meta["source"]):
        raise DataError(f"{directory}: prepared TFRecords whose source images ({meta['source']}) "
                             "are not on this machine; give a folder of images instead")
    return meta["source"]


