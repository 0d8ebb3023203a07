"""Prepared datasets: CelebA (or any image folder) converted once to sharded TFRecords of
``image_size x image_size`` RGB uint8 pixels, so that training reads ~48 KiB of raw bytes
per image instead of decoding, cropping and resizing a JPEG every epoch.

Layout of a prepared directory (written to a temporary directory, then renamed)::

    DIR/prepared.json              what was converted: image size, counts, shards, mean colour
    DIR/train-00000.tfrecord ...   tf.train.Example records, IMAGES_PER_SHARD each
    DIR/val-00000.tfrecord ...

Every record holds ``image`` (raw bytes of ``[S, S, 3]`` uint8, the centre-square crop and
antialiased resize of :func:`ctxenc_tf.data.decode_image`) and ``name`` (the source file
name). ``train.py --data-dir DIR`` trains from the shards: each epoch reads the shards in a
seeded order, interleaved, shuffled in seeded blocks, so the stream is a pure function of
``(seed, epoch)`` like the image-file pipeline (and a resumed run sees the same batches).
"""

import collections.abc
import json
import os
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from ctxenc_tf import atomic, data
from ctxenc_tf.config import Config

FORMAT = "ctxenc-tfrecord-v1"
METADATA = "prepared.json"
IMAGES_PER_SHARD = 1024  # 48 MiB shards at 128x128: large sequential reads, many shards per worker
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
        order = data.epoch_order(len(self.shards), seed, epoch)
        ds = self._records(tf.gather(list(self.shards), order),
                           tf.gather(np.array(self.counts, np.int64), order),
                           min(INTERLEAVE, len(self.shards)))
        ds = data.seeded_block_shuffle(ds, data.example_seed(seed, epoch, -3), SHUFFLE_BUFFER)
        return ds.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE)

    def parse(self, record):
        """One serialized record -> ``[S, S, 3]`` float32 in ``[-1, 1]``."""
        features = tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})
        pixels = tf.io.decode_raw(features["image"], tf.uint8)
        image = tf.reshape(pixels, [self.image_size, self.image_size, 3])
        return tf.cast(image, tf.float32) / 127.5 - 1.0


def to_uint8(image):
    """``[..., 3]`` float in ``[-1, 1]`` -> uint8 ``[0, 255]`` (rounded), as stored."""
    return tf.cast(tf.round(tf.clip_by_value((image + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def _example(pixels: np.ndarray, name: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(files, name: str, config: Config, directory: str, images_per_shard: int, log):
    """Decode ``files`` in parallel and write them as ``directory/name-NNNNN.tfrecord``
    shards. Returns ``(shards, counts, names, skipped, pixel_sum)``, shard paths relative to
    ``directory``; files that fail to decode are skipped, with the reason."""
    def load(path):
        return path, to_uint8(data.load_image(path, config.image_size))

    ds = tf.data.Dataset.from_tensor_slices(list(files)).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().prefetch(tf.data.AUTOTUNE)
    shards, counts, names, written, pixel_sum = [], [], [], set(), np.zeros(3)
    writer = None
    for path, pixels in ds.as_numpy_iterator():
        if writer is None or counts[-1] == images_per_shard:
            if writer is not None:
                writer.close()
                log(f"  {name}: {len(names)}/{len(files)} images in {len(shards)} shard(s)")
            shards.append(f"{name}-{len(shards):05d}.tfrecord")
            counts.append(0)
            writer = tf.io.TFRecordWriter(os.path.join(directory, shards[-1]))
        written.add(path.decode())
        names.append(os.path.basename(path.decode()))
        writer.write(_example(pixels, names[-1]))
        counts[-1] += 1
        pixel_sum += pixels.reshape(-1, 3).mean(axis=0)
    if writer is not None:
        writer.close()
    skipped = [(p, "could not be decoded") for p in files if p not in written]
    log(f"  {name}: {len(names)} images in {len(shards)} shard(s)"
        + (f", {len(skipped)} undecodable file(s) skipped" if skipped else ""))
    return shards, counts, names, skipped, pixel_sum


def _read_metadata(directory: str):
    path = os.path.join(directory, METADATA)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        return meta
    except (OSError, ValueError) as e:
        raise data.DataError(f"{path}: not a readable preparation ({e})") from None


def prepare(config: Config, out_dir: str, images_per_shard: int = IMAGES_PER_SHARD, log=print) -> dict:
    """Convert ``config.data_dir`` (CelebA's train/val partition, or an image folder split
    by ``val_fraction``/``seed``; the bundled faces when empty; ``train_limit``/``val_limit``
    applied) into TFRecord shards of ``config.image_size`` images in ``out_dir``, once.

    The shards are written into a temporary directory beside ``out_dir`` and renamed when
    complete, so ``out_dir`` is either absent or whole. An ``out_dir`` already prepared at
    the same image size from the same source is left alone. Returns the metadata dict.
    Raises :class:`~ctxenc_tf.data.DataError` if ``out_dir`` holds something else.
    """
    source = os.path.abspath(config.data_dir or data.BUNDLED_FACES)
    settings = {k: getattr(config, k) for k in ("seed", "val_fraction", "train_limit", "val_limit")}
    existing = _read_metadata(out_dir)
    if existing is not None:
        if existing["image_size"] != config.image_size or existing["source"] != source:
            raise data.DataError(f"{out_dir}: already holds {existing['image_size']}px images prepared "
                                 f"from {existing['source']}; choose another --prepare directory")
        if existing.get("split_settings") != settings:
            raise data.DataError(f"{out_dir}: prepared with split settings {existing.get('split_settings')}, "
                                 f"not {settings}; choose another --prepare directory")
        log(f"{out_dir}: already prepared ({existing['splits']['train']['count']} train / "
            f"{existing['splits']['val']['count']} val images), nothing to do")
        return existing
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise data.DataError(f"{out_dir}: exists and is not an empty directory; --prepare needs a new one")
    if images_per_shard < 1:
        raise data.DataError(f"images_per_shard={images_per_shard}: must be positive")
    split = data.find_split(config)
    log(f"preparing {len(split.train)} train / {len(split.val)} val images from {source} "
        f"at {config.image_size}x{config.image_size} into {out_dir}")
    meta = {"format": FORMAT, "image_size": config.image_size, "source": source,
            "source_kind": split.source, "seed": config.seed, "split_settings": settings, "splits": {}}
    skipped = list(split.skipped)
    if os.path.isdir(out_dir):
        os.rmdir(out_dir)  # empty: atomic_directory renames the finished directory onto it
    with atomic.atomic_directory(out_dir) as tmp:
        for name, files in (("train", split.train), ("val", split.val)):
            shards, counts, names, bad, pixel_sum = _write_split(
                files, name, config, tmp, images_per_shard, log)
            skipped += bad
            meta["splits"][name] = {"count": len(names), "shards": shards, "counts": counts,
                                    "names": names}
            if name == "train":
                if not names:
                    raise data.DataError(f"{source}: no training image could be decoded")
                meta["mean"] = [float(v) for v in pixel_sum / len(names) / 127.5 - 1.0]
        meta["skipped"] = [list(s) for s in skipped]
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(meta, f, indent=1)
    log(f"prepared {meta['splits']['train']['count']} train / {meta['splits']['val']['count']} val "
        f"images in {out_dir}" + (f" ({len(skipped)} file(s) skipped)" if skipped else ""))
    return meta


def image_source(directory: str) -> str:
    """``directory`` itself, or for a prepared directory the image folder it was prepared
    from, for commands that need image files (export's int8 calibration, evaluation).
    Raises :class:`~ctxenc_tf.data.DataError` if that folder is not on this machine."""
    meta = _read_metadata(directory) if os.path.isdir(directory) else None
    if meta is None:
        return directory
    if not os.path.isdir(meta["source"]):
        raise data.DataError(f"{directory}: prepared TFRecords whose source images ({meta['source']}) "
                             "are not on this machine; give a folder of images instead")
    return meta["source"]


def find_prepared(config: Config):
    """:class:`~ctxenc_tf.data.Split` of :class:`Records` when ``config.data_dir`` is a
    prepared directory (``train_limit``/``val_limit`` applied), else ``None``.
    Raises :class:`~ctxenc_tf.data.DataError` if it was prepared at another image size or
    a shard is missing."""
    if not config.data_dir:
        return None
    meta = _read_metadata(config.data_dir)
    if meta is None:
        return None
    if meta["image_size"] != config.image_size:
        raise data.DataError(f"{config.data_dir}: prepared at {meta['image_size']}x{meta['image_size']}, "
                             f"but --image-size={config.image_size}; prepare again at this size")
    splits = {}
    for name, limit in (("train", config.train_limit), ("val", config.val_limit)):
        info = meta["splits"][name]
        shards = tuple(os.path.join(config.data_dir, s) for s in info["shards"])
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing:
            raise data.DataError(f"{missing[0]}: shard listed in {METADATA} is missing; prepare again")
        records = Records(shards, tuple(info["counts"]), tuple(info["names"]), meta["image_size"],
                          tuple(meta["mean"]))
        splits[name] = records[:limit] if limit else records
    return data.Split(splits["train"], splits["val"], [tuple(s) for s in meta.get("skipped", [])],
                      "tfrecord")
