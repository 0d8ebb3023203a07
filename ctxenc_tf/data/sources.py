"""Where images come from: CelebA's partition, a folder of images, the bundled faces or a
prepared directory, split into training and validation images."""

import fnmatch
import os
import random
from dataclasses import dataclass

from ctxenc_tf import schemas
from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import records
from ctxenc_tf.data.image_source import ImageFiles
from ctxenc_tf.data.screening import IMAGE_EXTENSIONS, screen_files
from ctxenc_tf.errors import DataError
from ctxenc_tf.utils.output_dir import LOCK_FILE

CELEBA_IMAGES = "img_align_celeba"

CELEBA_PARTITION = "list_eval_partition.txt"

CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}

BUNDLED_FACES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "faces")


@dataclass
class Split:
    """The images of one run, ``train`` and ``val``: lists of paths (:func:`find_split`) or
    :class:`~ctxenc_tf.data.image_source.ImageSource` objects (:func:`find_sources`); and
    what was skipped."""

    train: list
    val: list
    skipped: list  # (path, reason) pairs
    source: str


def celeba_layout(data_dir: str):
    """``(images_dir, partition_file)`` if ``data_dir`` (or its parent, when ``data_dir`` is
    ``img_align_celeba`` itself) holds CelebA's layout, else ``None``."""
    for root in (data_dir, os.path.dirname(os.path.abspath(data_dir))):
        images = os.path.join(root, CELEBA_IMAGES)
        partition = os.path.join(root, CELEBA_PARTITION)
        if os.path.isdir(images) and os.path.isfile(partition):
            return images, partition
    return None


def list_celeba(data_dir: str, split: str) -> list:
    """Paths of CelebA's ``split`` ('train', 'val' or 'test') per ``list_eval_partition.txt``."""
    layout = celeba_layout(data_dir)
    if layout is None:
        raise DataError(f"{data_dir}: no {CELEBA_IMAGES}/ with {CELEBA_PARTITION} beside it")
    images, partition = layout
    return [os.path.join(images, name) for name, part in schemas.read_partition(partition)
            if part == CELEBA_SPLITS[split]]


def matches(path: str, patterns: str) -> bool:
    """Whether the file name of ``path`` matches one of the comma-separated ``patterns``
    (shell-style, as :mod:`fnmatch`)."""
    return any(fnmatch.fnmatch(os.path.basename(path), p.strip()) for p in patterns.split(",") if p.strip())


def list_image_folder(data_dir: str) -> list:
    """Every image file (by extension) below ``data_dir``, sorted; output folders of this
    project's commands (they hold its lock file) are left out, so a run's sample grids never
    become data."""
    found = []
    for root, dirs, names in os.walk(data_dir):
        if any(n.startswith(LOCK_FILE) for n in names):  # a run's or an export's output folder
            dirs[:] = []
            continue
        # isfile: named pipes, sockets and devices are skipped (reading them may never end)
        found += [os.path.join(root, n) for n in names
                  if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(root, n))]
    return sorted(found)


def find_split(config: RunConfig) -> Split:
    """Train/val files for ``config.data_dir``: CelebA's official partition when the layout
    is there, else a seeded random ``val_fraction`` split of an image folder; the bundled
    faces when ``data_dir`` is empty. Leaves out files matching ``exclude``, then applies
    ``train_limit``/``val_limit``. A directory of
    prepared TFRecords stands for the image folder it was prepared from (training reads the
    shards themselves, :func:`find_sources`).

    Raises :class:`DataError` for a missing or empty directory or no usable image.
    """

    data_dir = records.source_folder(config.data_dir or BUNDLED_FACES)
    if not os.path.exists(data_dir):
        raise DataError(f"{data_dir}: data directory does not exist")
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: not a directory")
    if celeba_layout(data_dir):
        train, val, source = list_celeba(data_dir, "train"), list_celeba(data_dir, "val"), "celeba"
        train, val = ([p for p in files if not matches(p, config.exclude)] for files in (train, val))
    else:
        files = [p for p in list_image_folder(data_dir) if not matches(p, config.exclude)]
        if not files:
            raise DataError(f"{data_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
        random.Random(config.seed).shuffle(files)
        n_val = max(1, int(round(len(files) * config.val_fraction))) if len(files) > 1 else 0
        if n_val == len(files):
            raise DataError(f"--val-fraction={config.val_fraction:g}: holds out all {len(files)} images of "
                            f"{data_dir} for validation, leaving no training image; lower it")
        val, train, source = sorted(files[:n_val]), sorted(files[n_val:]), "folder"
    if config.train_limit:
        train = train[:config.train_limit]
    if config.val_limit:
        val = val[:config.val_limit]
    train, skipped_train = screen_files(train)
    val, skipped_val = screen_files(val)
    if not train:
        examples = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in skipped_train[:3])
        raise DataError(f"{data_dir}: no usable training image ({len(skipped_train)} skipped as "
                        f"unreadable{', e.g. ' + examples if examples else ''})")
    return Split(train, val, skipped_train + skipped_val, source)


def find_prepared(config: RunConfig):
    """:class:`Split` of :class:`~ctxenc_tf.data.records.PreparedRecords` when
    ``config.data_dir`` is a prepared directory (``train_limit``/``val_limit`` applied), else ``None``.
    Raises :class:`~ctxenc_tf.errors.DataError` if it was prepared at another image size or
    a shard is missing."""
    if not config.data_dir:
        return None
    meta = records.read_metadata(config.data_dir)
    if meta is None:
        return None
    settings = meta["split_settings"]
    if config.exclude != settings["exclude"]:
        raise DataError(f"{config.data_dir}: prepared with --exclude {settings['exclude']!r}, "
                        f"not {config.exclude!r}; prepare again with this setting")
    resize = settings["resize"]
    if resize != config.resize:
        raise DataError(f"{config.data_dir}: prepared with --resize {resize}, but --resize={config.resize}; "
                        "prepare again with this setting")
    if meta["image_size"] != config.model.image_size:
        raise DataError(f"{config.data_dir}: prepared at {meta['image_size']}x{meta['image_size']}, "
                             f"but --image-size={config.model.image_size}; prepare again at this size")
    splits = {}
    for name, limit in (("train", config.train_limit), ("val", config.val_limit)):
        info = meta["splits"][name]
        shards = tuple(os.path.join(config.data_dir, s) for s in info["shards"])
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing:
            raise DataError(f"{missing[0]}: shard listed in {records.METADATA} is missing; prepare again")
        # A truncated or overwritten shard would fail mid-training: check sizes up front
        # (preparations older than this check carry no sizes).
        for shard, written in zip(shards, info["bytes"] or ()):
            size = os.path.getsize(shard)
            if size != written:
                raise DataError(f"{shard}: {size} bytes, but {written} were written; "
                                "the shard is damaged, prepare again")
        split_records = records.PreparedRecords(shards, tuple(info["counts"]), tuple(info["names"]),
                                                meta["image_size"], tuple(meta["mean"]))
        splits[name] = split_records.prefix(limit) if limit else split_records
    return Split(splits["train"], splits["val"], [tuple(s) for s in meta["skipped"]],
                      "tfrecord")


def find_sources(config: RunConfig) -> Split:
    """The training run's :class:`Split` of
    :class:`~ctxenc_tf.data.image_source.ImageSource` objects: the shards of a prepared
    ``config.data_dir`` (:func:`find_prepared`), else the :class:`ImageFiles` of
    :func:`find_split`, decoded at ``config.model.image_size`` with ``config.resize``.
    Raises :class:`DataError` as those two do."""
    prepared = find_prepared(config)
    if prepared is not None:
        return prepared
    split = find_split(config)
    size, stretch = config.model.image_size, config.resize == "stretch"
    return Split(ImageFiles(tuple(split.train), size, stretch), ImageFiles(tuple(split.val), size, stretch),
                 split.skipped, split.source)
