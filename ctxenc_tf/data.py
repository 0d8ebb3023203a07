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
MAX_PIXELS = 100_000_000  # a decoded 10000x10000 RGB image is 300 MB (1.2 GB as float32)
HEADER_BYTES = (4096, 65536)  # read this much to find the pixel size; more if EXIF pushes it back
# ... and this much of the end to find the end marker: cameras and editors may append data
# after a JPEG's EOI; scan data never holds FF D9, so a wider window cannot hide truncation.
TAIL_BYTES = 4096

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


def _jpeg_size(head: bytes):
    """``(width, height)`` from the frame header among JPEG ``head``'s first segments,
    ``None`` if the frame header lies beyond ``head``; raises ``ValueError`` if the
    segment structure is broken."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            raise ValueError("corrupt JPEG header")
        marker = head[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, no-length markers
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0xDA:  # scan data before any frame header
            raise ValueError("corrupt JPEG header (no frame header)")
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if length < 2:
            raise ValueError("corrupt JPEG header")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if i + 9 > len(head):
                return None
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        i += 2 + length
    return None


def _pixel_size(head: bytes):
    """``(width, height)`` read from an image header (JPEG, PNG, GIF, BMP), ``None`` when
    not within ``head``; raises ``ValueError`` for a broken header."""
    if head.startswith(b"\x89PNG"):
        if head[12:16] != b"IHDR":
            raise ValueError("corrupt PNG header")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"GIF"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head.startswith(b"BM"):
        return abs(int.from_bytes(head[18:22], "little", signed=True)), \
            abs(int.from_bytes(head[22:26], "little", signed=True))
    return _jpeg_size(head)


def screen_file(path: str):
    """Cheap check of one file without decoding its pixels: ``None`` if it looks like a
    complete image, else the reason (missing, empty, too large a file, not an image,
    corrupt header, zero or more than :data:`MAX_PIXELS` pixels, truncated)."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        if size > MAX_FILE_BYTES:
            return f"file larger than {MAX_FILE_BYTES // 2**20} MiB"
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES[0])
            if not head.startswith(_MAGIC):
                return "not a JPEG/PNG/GIF/BMP image"
            try:
                dims = _pixel_size(head)
                if dims is None and size > len(head):
                    head += f.read(HEADER_BYTES[1] - len(head))
                    dims = _pixel_size(head)
            except ValueError as e:
                return str(e)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as e:
        return e.strerror or str(e)
    if dims and (dims[0] * dims[1] == 0 or dims[0] * dims[1] > MAX_PIXELS):
        return f"{dims[0]}x{dims[1]} pixels ({'none' if 0 in dims else f'over {MAX_PIXELS // 10**6} megapixels'})"
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
    faces when ``data_dir`` is empty. Applies ``train_limit``/``val_limit``. A directory of
    prepared TFRecords stands for the image folder it was prepared from (training reads the
    shards themselves, :func:`ctxenc_tf.tfrecords.find_prepared`).

    Raises :class:`DataError` for a missing or empty directory or no usable image.
    """
    from ctxenc_tf.tfrecords import image_source

    data_dir = image_source(config.data_dir or BUNDLED_FACES)
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
        examples = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in skipped_train[:3])
        raise DataError(f"{data_dir}: no usable training image ({len(skipped_train)} skipped as "
                        f"unreadable{', e.g. ' + examples if examples else ''})")
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
#
# Every random choice of the training stream (file order, flips, masks) is a pure
# function of (config.seed, epoch, position in the epoch), drawn with stateless RNG, so a
# run resumed in a new process at epoch e, step k sees exactly the batches an
# uninterrupted run sees there.

CACHED_SHUFFLE_BUFFER = 8192


def steps_per_epoch(num_files: int, batch_size: int) -> int:
    """Training steps in one epoch: full batches only, ``num_files // batch_size``."""
    return num_files // batch_size


def example_seed(seed: int, epoch, position):
    """Stateless RNG seed, int32 ``[2]``, of the example at ``position`` of ``epoch``
    (``epoch`` -1 is used for validation). A pure function of its three arguments."""
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(epoch, tf.int64)])
    mixed = tf.random.experimental.stateless_fold_in(key, tf.cast(position, tf.int64))
    return tf.cast(mixed % (2 ** 31 - 1), tf.int32)


def epoch_order(num_files: int, seed: int, epoch):
    """Permutation of ``range(num_files)`` (int32 ``[num_files]``) used in ``epoch``."""
    keys = tf.random.stateless_uniform([num_files], seed=example_seed(seed, epoch, -1),
                                       minval=None, maxval=None, dtype=tf.int64)
    return tf.argsort(keys, stable=True)


def seeded_block_shuffle(ds: tf.data.Dataset, seed, block: int) -> tf.data.Dataset:
    """Shuffle ``ds`` within consecutive blocks of ``block`` elements, each block permuted
    by stateless RNG from ``seed`` (int32 ``[2]``, may be a tensor of the epoch) and its
    index. Unlike ``Dataset.shuffle(seed=tensor)``, which fails inside ``flat_map`` once
    ``keras.utils.set_random_seed`` has set a global seed, this is a pure function of
    ``seed`` in any context."""
    def permute(index, elements):
        block_seed = tf.random.experimental.stateless_fold_in(seed, index)
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(elements)[0]), block_seed)
        return tf.gather(elements, order)

    return ds.batch(block).enumerate().map(permute).unbatch()


def _is_records(files) -> bool:
    """Whether ``files`` are prepared TFRecord shards (:class:`ctxenc_tf.tfrecords.Records`)
    rather than a list of image paths."""
    from ctxenc_tf.tfrecords import Records

    return isinstance(files, Records)


def _decoded(files, config: Config, cache: str) -> tf.data.Dataset:
    """Decoded images of ``files`` in their given order, unreadable ones dropped
    (``ignore_errors``), cached per ``cache`` ('' none, 'memory', or a file prefix)."""
    if _is_records(files):
        ds = files.images()
    else:
        ds = tf.data.Dataset.from_tensor_slices(list(files))
        ds = ds.map(lambda p: load_image(p, config.image_size), num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.ignore_errors(log_warning=True)
    return ds.cache("" if cache == "memory" else cache) if cache else ds


def _augment(config: Config, epoch, training: bool):
    """``(image, position) -> (image, mask)``: flip (training only) and mask, seeded by
    :func:`example_seed`."""
    def add_mask(image, position):
        seed = example_seed(config.seed, epoch, position)
        if training:
            flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return image, masks.make_mask(config.mask_type, config.image_size, config.hole_size, seed)
    return add_mask


def _epoch_examples(files, config: Config, epoch, skip, cached=None) -> tf.data.Dataset:
    """``(image, mask)`` examples of training epoch ``epoch`` in its seeded order, from
    example ``skip`` on, exactly enough for the epoch's full batches.

    Without a cache the file order is a seeded full permutation and decoding starts at
    ``skip`` (nothing before it is read); a file that fails to decode is replaced by the
    next in the order, so the epoch still has ``steps_per_epoch`` batches. With a cache
    (``cached``, decoded images in file order) the order is a seeded shuffle of the cache.
    """
    n = len(files)
    wanted = tf.cast(steps_per_epoch(n, config.batch_size) * config.batch_size, tf.int64) - skip
    if cached is None and _is_records(files):  # prepared shards: seeded shard order + shuffle
        ds = files.epoch_images(config.seed, epoch).enumerate().skip(skip)
        ds = ds.map(lambda p, image: (image, p))
    elif cached is None:
        paths = tf.constant(list(files))
        order = epoch_order(n, config.seed, epoch)
        ds = tf.data.Dataset.range(skip, n).map(
            lambda p: (load_image(paths[order[p]], config.image_size), p),
            num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.ignore_errors(log_warning=True).repeat().take(wanted)
    else:
        ds = seeded_block_shuffle(cached, example_seed(config.seed, epoch, -2), CACHED_SHUFFLE_BUFFER)
        ds = ds.enumerate().skip(skip).map(lambda p, image: (image, p)).repeat().take(wanted)
    return ds.map(_augment(config, epoch, training=True), num_parallel_calls=tf.data.AUTOTUNE)


def training_batches(files, config: Config, start_epoch: int = 0, start_step: int = 0,
                     end_epoch: int | None = None) -> tf.data.Dataset:
    """The training stream from epoch ``start_epoch``, step ``start_step`` up to (not
    including) ``end_epoch`` (default ``config.epochs``): ``(images, masks)`` batches,
    images ``[B, S, S, 3]`` float32 in ``[-1, 1]``, masks ``[B, S, S, 1]`` in ``{0, 1}``,
    exactly :func:`steps_per_epoch` batches per epoch (``start_step`` fewer in the first).

    Shuffled every epoch, random horizontal flips, fresh random masks every epoch, all
    a pure function of ``(config.seed, epoch, position)``: resuming gives the same batches.
    """
    if not files:
        raise DataError("no image files given to the input pipeline")
    if steps_per_epoch(len(files), config.batch_size) == 0:
        raise DataError(f"{len(files)} training images, fewer than --batch-size={config.batch_size}")
    end_epoch = config.epochs if end_epoch is None else end_epoch
    cached = _decoded(files, config, config.cache) if config.cache else None
    first = tf.constant(start_epoch, tf.int64)
    skip = tf.constant(start_step * config.batch_size, tf.int64)

    def one_epoch(epoch):
        skipped = tf.where(epoch == first, skip, tf.constant(0, tf.int64))
        examples = _epoch_examples(files, config, epoch, skipped, cached)
        return examples.batch(config.batch_size, drop_remainder=True)

    ds = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(one_epoch)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(sharded_by_element())


def sharded_by_element() -> tf.data.Options:
    """``tf.data`` options for multi-worker training: shard by element (``DATA``). Every
    worker runs the same seeded pipeline and keeps its share of each global batch, so the
    global stream is the one a single machine sees; ``FILE`` sharding would give workers
    prepared shards of unequal sizes (and refuses a single source)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def image_dataset(files, config: Config, training: bool) -> tf.data.Dataset:
    """Batched ``(images, masks)`` dataset over ``files``, one pass.

    Training: the first epoch of :func:`training_batches` (seeded order, flips, masks;
    full batches only). Validation: files in the given order, fixed masks (the same every
    pass), last partial batch kept; decoded images are kept in
    memory when ``config.cache`` is set. Unreadable files that slipped past screening are
    dropped (``ignore_errors``).
    """
    if not files:
        raise DataError("no image files given to the input pipeline")
    if training:
        return training_batches(files, config, 0, 0, 1)
    ds = _decoded(files, config, "memory" if config.cache else "").enumerate()
    ds = ds.map(lambda p, image: _augment(config, -1, training=False)(image, p),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(config.batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def estimate_mean(files, image_size: int, limit: int = 512) -> tuple:
    """Per-channel mean colour (in ``[-1, 1]``) of up to ``limit`` images, to fill holes
    (prepared TFRecords carry the mean of their whole training split)."""
    if _is_records(files):
        return files.mean
    ds = tf.data.Dataset.from_tensor_slices(list(files)[:limit])
    ds = ds.map(lambda p: tf.reduce_mean(load_image(p, image_size), axis=(0, 1)),
                num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    means = np.array([m.numpy() for m in ds])
    if len(means) == 0:
        raise DataError("no decodable image to estimate the dataset mean from")
    return tuple(float(v) for v in means.mean(axis=0))
