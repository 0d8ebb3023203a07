"""Prepared datasets: CelebA (or any image folder) converted once to sharded TFRecords of
``image_size x image_size`` RGB uint8 pixels, so that training reads ~48 KiB of raw bytes
per image instead of decoding, cropping and resizing a JPEG every epoch.

Layout of a prepared directory (written to a temporary directory, then renamed)::

    DIR/prepared.json              what was converted: image size, counts, shards, mean colour
    DIR/train-00000.tfrecord ...   tf.train.Example records, IMAGES_PER_SHARD each
    DIR/val-00000.tfrecord ...

Every record holds ``image`` (raw bytes of ``[S, S, 3]`` uint8, the centre-square crop and
antialiased resize of :func:`ctxenc_tf.data.pipeline.decode_image`) and ``name`` (the source file
name). ``train.py --data-dir DIR`` trains from the shards: each epoch reads the shards in a
seeded order, interleaved, shuffled in seeded blocks, so the stream is a pure function of
``(seed, epoch)`` like the image-file pipeline (and a resumed run sees the same batches).
"""

import json
import os

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.records import FORMAT, METADATA, read_metadata
from ctxenc_tf.errors import DataError
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.pixels import signed_to_uint8

IMAGES_PER_SHARD = 1024  # 48 MiB shards at 128x128: large sequential reads, many shards per worker


def _example(pixels: np.ndarray, name: str) -> bytes:
    feature = {
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[pixels.tobytes()])),
        "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(files, name: str, config: RunConfig, directory: str, images_per_shard: int, log):
    """Decode ``files`` in parallel and write them as ``directory/name-NNNNN.tfrecord``
    shards. Returns ``(shards, counts, names, skipped, pixel_sum)``, shard paths relative to
    ``directory``; files that fail to decode are skipped, with the reason."""
    def load(path):
        return path, signed_to_uint8(pipeline.load_image(path, config.model.image_size, config.resize == "stretch"))

    ds = tf.data.Dataset.from_tensor_slices(pipeline.path_bytes(files)).map(
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
        written.add(os.fsdecode(path))
        names.append(os.path.basename(os.fsdecode(path)))
        writer.write(_example(pixels, names[-1]))
        counts[-1] += 1
        pixel_sum += pixels.reshape(-1, 3).mean(axis=0)
    if writer is not None:
        writer.close()
    skipped = [(p, "could not be decoded") for p in files if p not in written]
    log(f"  {name}: {len(names)} images in {len(shards)} shard(s)"
        + (f", {len(skipped)} undecodable file(s) skipped" if skipped else ""))
    return shards, counts, names, skipped, pixel_sum


def prepare_records(config: RunConfig, out_dir: str, images_per_shard: int = IMAGES_PER_SHARD, log=print) -> dict:
    """Convert ``config.data_dir`` (CelebA's train/val partition, or an image folder split
    by ``val_fraction``/``seed``; the bundled faces when empty; ``train_limit``/``val_limit``
    applied) into TFRecord shards of ``config.model.image_size`` images in ``out_dir``, once.

    The shards are written into a temporary directory beside ``out_dir`` and renamed when
    complete, so ``out_dir`` is either absent or whole. An ``out_dir`` already prepared at
    the same image size from the same source is left alone. Returns the metadata dict.
    Raises :class:`~ctxenc_tf.errors.DataError` if ``out_dir`` holds something else.
    """
    source = os.path.abspath(config.data_dir or sources.BUNDLED_FACES)
    settings = {k: getattr(config, k) for k in ("seed", "val_fraction", "train_limit", "val_limit", "resize",
                                                "exclude")}
    existing = read_metadata(out_dir)
    if existing is not None:
        if existing["image_size"] != config.model.image_size or existing["source"] != source:
            raise DataError(f"{out_dir}: already holds {existing['image_size']}px images prepared "
                                 f"from {existing['source']}; choose another --prepare directory")
        if existing["split_settings"] != settings:
            raise DataError(f"{out_dir}: prepared with split settings {existing['split_settings']}, "
                                 f"not {settings}; choose another --prepare directory")
        log(f"{out_dir}: already prepared ({existing['splits']['train']['count']} train / "
            f"{existing['splits']['val']['count']} val images), nothing to do")
        return existing
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise DataError(f"{out_dir}: exists and is not an empty directory; --prepare needs a new one")
    if images_per_shard < 1:
        raise DataError(f"images_per_shard={images_per_shard}: must be positive")
    split = sources.find_split(config)
    log(f"preparing {len(split.train)} train / {len(split.val)} val images from {source} "
        f"at {config.model.image_size}x{config.model.image_size} into {out_dir}")
    meta = {"format": FORMAT, "image_size": config.model.image_size, "source": source,
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
                                    "names": names,
                                    "bytes": [os.path.getsize(os.path.join(tmp, s)) for s in shards]}
            if name == "train":
                if not names:
                    raise DataError(f"{source}: no training image could be decoded")
                meta["mean"] = [float(v) for v in pixel_sum / len(names) / 127.5 - 1.0]
        meta["skipped"] = [list(s) for s in skipped]
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(meta, f, indent=1)
    log(f"prepared {meta['splits']['train']['count']} train / {meta['splits']['val']['count']} val "
        f"images in {out_dir}" + (f" ({len(skipped)} file(s) skipped)" if skipped else ""))
    return meta
