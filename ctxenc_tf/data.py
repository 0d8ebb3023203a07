"""Input pipeline: CelebA or any folder of images -> ``tf.data`` batches of
``(images, masks)``, images NHWC float32 in ``[-1, 1]``, masks ``[N, S, S, 1]`` in ``{0, 1}``.

Images are cropped to their central square (CelebA's 178x218 -> the 178x178 face
region), never squashed, then resized with antialiasing to ``config.image_size``.
"""

import os
import random
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ctxenc_tf import masks
from ctxenc_tf.config import Config

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
CELEBA_IMAGES = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_SPLITS = {"train": 0, "val": 1, "test": 2}
BUNDLED_FACES = os.path.join(os.path.dirname(__file__), "assets", "faces")
MAX_FILE_BYTES = 64 * 1024 * 1024

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


class DataError(ValueError):
    """The dataset cannot be used; the message names the path and the reason."""


@dataclass
class Split:
    """Image files of one run: ``train`` and ``val`` lists of paths, and what was skipped."""

    train: list
    val: list
    skipped: list  # (path, reason) pairs
    source: str


# ---- finding files ------------------------------------------------------------------

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
    wanted = CELEBA_SPLITS[split]
    paths = []
    with open(partition) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{partition}:{n}: expected '<file> <0|1|2>', got {line.strip()!r}")
            if int(parts[1]) == wanted:
                paths.append(os.path.join(images, parts[0]))
    return paths


def list_image_folder(data_dir: str) -> list:
    """Every image file (by extension) below ``data_dir``, sorted."""
    found = []
    for root, _, names in os.walk(data_dir):
        found += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found)


def screen_file(path: str):
    """Cheap check of one file without decoding it: ``None`` if it looks like a complete
    image, else the reason (missing, empty, too large, not an image, truncated)."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        if size > MAX_FILE_BYTES:
            return f"larger than {MAX_FILE_BYTES // 2**20} MiB"
        with open(path, "rb") as f:
            head = f.read(16)
            f.seek(max(0, size - 16))
            tail = f.read()
    except OSError as e:
        return e.strerror or str(e)
    if not head.startswith(_MAGIC):
        return "not a JPEG/PNG/GIF/BMP image"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return "truncated JPEG"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG"
    return None


def screen_files(paths):
    """Split ``paths`` into ``(good, skipped)``; ``skipped`` is a list of ``(path, reason)``."""
    good, skipped = [], []
    for p in paths:
        reason = screen_file(p)
        (skipped.append((p, reason)) if reason else good.append(p))
    return good, skipped


def find_split(config: Config) -> Split:
    """Train/val files for ``config.data_dir``: CelebA's official partition when the layout
    is there, else a seeded random ``val_fraction`` split of an image folder; the bundled
    faces when ``data_dir`` is empty. Applies ``train_limit``/``val_limit``.

    Raises :class:`DataError` for a missing or empty directory or no usable image.
    """
    data_dir = config.data_dir or BUNDLED_FACES
    if not os.path.exists(data_dir):
        raise DataError(f"{data_dir}: data directory does not exist")
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: not a directory")
    if celeba_layout(data_dir):
        train, val, source = list_celeba(data_dir, "train"), list_celeba(data_dir, "val"), "celeba"
    else:
        files = list_image_folder(data_dir)
        if not files:
            raise DataError(f"{data_dir}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
        random.Random(config.seed).shuffle(files)
        n_val = max(1, int(round(len(files) * config.val_fraction))) if len(files) > 1 else 0
        val, train, source = sorted(files[:n_val]), sorted(files[n_val:]), "folder"
    if config.train_limit:
        train = train[:config.train_limit]
    if config.val_limit:
        val = val[:config.val_limit]
    train, skipped_train = screen_files(train)
    val, skipped_val = screen_files(val)
    if not train:
        raise DataError(f"{data_dir}: no usable training image "
                        f"({len(skipped_train)} skipped as unreadable)")
    return Split(train, val, skipped_train + skipped_val, source)


# ---- decoding -----------------------------------------------------------------------

def decode_image(contents, image_size: int):
    """Encoded JPEG/PNG/GIF/BMP bytes (any size; grayscale, RGBA accepted) -> central
    square crop resized to ``[image_size, image_size, 3]`` float32 in ``[-1, 1]``."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return square_resize(image, image_size)


def square_resize(image, image_size: int):
    """``[H, W, 3]`` uint8 (or float in [0, 255]) -> central square crop, antialiased
    resize to ``[image_size, image_size, 3]`` float32 in ``[-1, 1]``."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    square = tf.cast(image[top:top + side, left:left + side, :3], tf.float32)
    resized = tf.image.resize(square[None], [image_size, image_size], antialias=True)[0]
    resized = tf.ensure_shape(resized, [image_size, image_size, 3])
    return tf.clip_by_value(resized / 127.5 - 1.0, -1.0, 1.0)


def load_image(path, image_size: int):
    """Read and :func:`decode_image` one file. ``[image_size, image_size, 3]`` in ``[-1, 1]``."""
    return decode_image(tf.io.read_file(path), image_size)


# ---- datasets -----------------------------------------------------------------------

def _int32_seeds(seed: int, rerandomize: bool):
    """Endless dataset of stateless-RNG seeds (int32 ``[2]``)."""
    rng = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=rerandomize)
    return rng.batch(2).map(lambda s: tf.cast(s % (2 ** 31 - 1), tf.int32))


def image_dataset(files, config: Config, training: bool, drop_remainder=None) -> tf.data.Dataset:
    """Batched ``(images, masks)`` dataset over ``files``.

    Training: shuffled every epoch, random horizontal flip, fresh random masks each epoch.
    Validation: fixed order, fixed masks. Decoding runs in parallel (``AUTOTUNE``);
    unreadable files that slipped past screening are dropped (``ignore_errors``).
    ``config.cache``: '' none, 'memory', or a file path prefix for decoded images.
    """
    if not files:
        raise DataError("no image files given to the input pipeline")
    size = config.image_size
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if training:
        ds = ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.map(lambda p: load_image(p, size), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.ignore_errors(log_warning=True)
    if config.cache:
        ds = ds.cache("" if config.cache == "memory" else config.cache)
    ds = tf.data.Dataset.zip(ds, _int32_seeds(config.seed, rerandomize=training))

    def add_mask(image, seed):
        if training:
            flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        mask = masks.make_mask(config.mask_type, size, config.hole_size, seed)
        return image, mask

    ds = ds.map(add_mask, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(config.batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def estimate_mean(files, image_size: int, limit: int = 512) -> tuple:
    """Per-channel mean colour (in ``[-1, 1]``) of up to ``limit`` images, to fill holes."""
    ds = tf.data.Dataset.from_tensor_slices(list(files)[:limit])
    ds = ds.map(lambda p: tf.reduce_mean(load_image(p, image_size), axis=(0, 1)),
                num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    means = np.array([m.numpy() for m in ds])
    if len(means) == 0:
        raise DataError("no decodable image to estimate the dataset mean from")
    return tuple(float(v) for v in means.mean(axis=0))
