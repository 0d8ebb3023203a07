"""Reading prepared TFRecord shards (written by :mod:`ctxenc_tf.data.prepare`): the
``prepared.json`` metadata, one split's shards as an
:class:`~ctxenc_tf.data.image_source.ImageSource`, and the source images a prepared
directory stands for."""

import os
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from ctxenc_tf import schemas
from ctxenc_tf.data import seeded_order
from ctxenc_tf.data.image_source import ImageSource
from ctxenc_tf.errors import DataError

FORMAT = schemas.PREPARED_FORMAT

METADATA = "prepared.json"

SHUFFLE_BUFFER = 4096  # records shuffled together (~48 KiB each at 128x128): ~200 MiB

INTERLEAVE = 8  # shards read at once


@dataclass(frozen=True)
class PreparedRecords(ImageSource):
    """The images of one split of a prepared directory.

    ``shards``: TFRecord paths; ``counts``: how many images of each shard are used (a
    prefix, after ``train_limit``/``val_limit``); ``names``: source file name of every used
    image; ``mean``: per-channel mean colour of the whole prepared training split in ``[-1, 1]``.
    """

    shards: tuple
    counts: tuple
    names: tuple
    image_size: int
    mean: tuple

    def prefix(self, count: int) -> "PreparedRecords":
        """The first ``count`` images: the shards holding them, the last one cut short."""
        counts, left = [], count
        for shard_count in self.counts:
            counts.append(min(shard_count, left))
            left -= counts[-1]
        keep = sum(1 for c in counts if c)
        return replace(self, shards=self.shards[:keep], counts=tuple(counts[:keep]),
                       names=self.names[:count])

    def parts(self, size: int) -> list:
        """Runs of whole shards, as many as hold at most ``size`` images (one shard at least)."""
        runs, first, total = [], 0, 0
        for i, count in enumerate(self.counts):
            if i > first and total + count > size:
                runs.append((first, i))
                first, total = i, 0
            total += count
        runs.append((first, len(self.counts)))
        starts = np.cumsum((0,) + self.counts)
        return [replace(self, shards=self.shards[a:b], counts=self.counts[a:b],
                        names=self.names[starts[a]:starts[b]]) for a, b in runs if b > a]

    def mean_colour(self, seed: int) -> tuple:
        """The mean colour of every image of the prepared training split (``seed`` aside),
        measured when it was prepared, with the preparation's ``--resize``."""
        return self.mean

    @property
    def files(self) -> tuple:
        return self.shards

    def selection(self) -> str:
        """The per-shard counts: a prefix of a shard reads the same file as all of it."""
        return repr(self.counts)

    @staticmethod
    def _records(shards, counts, parallel: int) -> tf.data.Dataset:
        """Serialized records: the first ``counts[i]`` of each of ``shards`` (lists or 1-D
        tensors), ``parallel`` shards interleaved in a deterministic order."""
        ds = tf.data.Dataset.from_tensor_slices((shards, counts))
        return ds.interleave(lambda path, count: tf.data.TFRecordDataset(path).take(count),
                             cycle_length=parallel, block_length=1,
                             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def images(self) -> tf.data.Dataset:
        ds = self._records(list(self.shards), np.array(self.counts, np.int64), 1)
        return ds.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)

    def epoch_images(self, seed: int, epoch, skip) -> tf.data.Dataset:
        """The epoch's order: shards in a seeded order, :data:`INTERLEAVE` at a time,
        shuffled in seeded blocks of :data:`SHUFFLE_BUFFER` records; the records before
        ``skip`` are read and passed over."""
        order = seeded_order.epoch_order(len(self.shards), seed, epoch)
        ds = self._records(tf.gather(list(self.shards), order),
                           tf.gather(np.array(self.counts, np.int64), order),
                           min(INTERLEAVE, len(self.shards)))
        ds = seeded_order.seeded_block_shuffle(ds, seeded_order.example_seed(seed, epoch, -3), SHUFFLE_BUFFER)
        ds = ds.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.enumerate().skip(skip).map(lambda position, image: (image, position))

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


def source_folder(directory: str) -> str:
    """``directory`` itself, or for a prepared directory the image folder it was prepared
    from, for commands that need image files (export's int8 calibration, evaluation).
    Raises :class:`~ctxenc_tf.errors.DataError` if that folder is not on this machine."""
    meta = read_metadata(directory) if os.path.isdir(directory) else None
    if meta is None:
        return directory
    if not os.path.isdir(meta["source"]):
        raise DataError(f"{directory}: prepared TFRecords whose source images ({meta['source']}) "
                             "are not on this machine; give a folder of images instead")
    return meta["source"]


