"""Input pipeline: the images of an :class:`~ctxenc_tf.data.image_source.ImageSource`
(image files or prepared TFRecords) -> ``tf.data`` batches of ``(images, masks)``, images
NHWC float32 in ``[-1, 1]``, masks ``[N, S, S, 1]`` in ``{0, 1}``; and the decoding of one image.

Images are cropped to their central square (CelebA's 178x218 -> the 178x178 face
region), not squashed (unless ``--resize stretch``), then resized with antialiasing to the
model's ``image_size``.
"""

import os

import tensorflow as tf

from ctxenc_tf.config import RunConfig
from ctxenc_tf.data import hole_masks, seeded_order
from ctxenc_tf.data.cache import part_path
from ctxenc_tf.errors import DataError


def decode_image(contents, image_size: int, stretch: bool = False):
    """Encoded JPEG/PNG/GIF/BMP bytes (any size; grayscale, RGBA accepted) -> central
    square crop (``stretch``: the whole image, squashed) resized to
    ``[image_size, image_size, 3]`` float32 in ``[-1, 1]``."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return square_resize(image, image_size, stretch)


def square_resize(image, image_size: int, stretch: bool = False):
    """``[H, W, 3]`` uint8 (or float in [0, 255]) -> central square crop (``stretch``: the
    whole image, aspect ratio not kept, as the seed project does), antialiased resize to
    ``[image_size, image_size, 3]`` float32 in ``[-1, 1]``."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
    square = tf.cast(image[:, :, :3] if stretch else image[top:top + side, left:left + side, :3], tf.float32)
    resized = tf.image.resize(square[None], [image_size, image_size], antialias=True)[0]
    resized = tf.ensure_shape(resized, [image_size, image_size, 3])
    return tf.clip_by_value(resized / 127.5 - 1.0, -1.0, 1.0)


def load_image(path, image_size: int, stretch: bool = False):
    """Read and :func:`decode_image` one file. ``[image_size, image_size, 3]`` in ``[-1, 1]``."""
    return decode_image(tf.io.read_file(path), image_size, stretch)

CACHE_PART = 8192  # images per cached part, shuffled together: 1.5 GiB at 128x128


def path_bytes(files) -> list:
    """File paths as bytes for ``tf.data``: a name that is not valid UTF-8 (Python keeps its
    bytes as surrogates) would make TensorFlow's string conversion fail."""
    return [os.fsencode(p) for p in files]


def steps_per_epoch(num_files: int, batch_size: int) -> int:
    """Training steps in one epoch: full batches only, ``num_files // batch_size``."""
    return num_files // batch_size


def _cached_parts(source, cache: str) -> list:
    """``(images, size)`` of each of ``source``'s parts of about :data:`CACHE_PART` images:
    its decoded images in stored order, cached in memory (``cache`` 'memory') or below the
    file prefix ``cache``."""
    return [(part.images().cache("" if cache == "memory" else part_path(cache, i)), len(part))
            for i, part in enumerate(source.parts(CACHE_PART))]


def _augment(config: RunConfig, epoch, training: bool):
    """``(image, position) -> (image, mask)``: flip (training only) and mask, seeded by
    :func:`~ctxenc_tf.data.seeded_order.example_seed`; validation masks are centre holes when
    ``config.val_mask`` says so."""
    m = config.model
    mask_type = "center" if not training and config.val_mask == "center" else m.mask_type

    def add_mask(image, position):
        seed = seeded_order.example_seed(config.seed, epoch, position)
        if training:
            flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            image = tf.image.stateless_random_flip_left_right(image, flip_seed)
        return image, hole_masks.make_mask(mask_type, m.image_size, m.hole_size, seed)
    return add_mask


def _epoch_examples(source, config: RunConfig, epoch, skip, cached=None) -> tf.data.Dataset:
    """``(image, mask)`` examples of training epoch ``epoch`` in its seeded order, from
    example ``skip`` on, exactly enough for the epoch's full batches.

    Without a cache the order is the source's own
    (:meth:`~ctxenc_tf.data.image_source.ImageSource.epoch_images`). With a cache
    (``cached``, :func:`_cached_parts`) the epoch reads the cached parts in a seeded
    order, each part shuffled (:func:`~ctxenc_tf.data.seeded_order.shuffled_parts`). Not
    one permutation of the whole cache: a ``tf.data`` cache is read from start to end,
    so that would hold every image in memory at once; this holds one part, and every
    image still lands at a new place every epoch (its part's slot and its place inside).
    What stays together is a part: the images of one part (consecutive in stored order)
    always share a :data:`CACHE_PART`-image stretch of the epoch.

    An image that fails to decode is replaced by the next in the order, from ``skip`` on
    again, so that the epoch still has ``steps_per_epoch`` batches.
    """
    wanted = tf.cast(steps_per_epoch(len(source), config.batch_size) * config.batch_size, tf.int64) - skip
    if cached is None:
        ds = source.epoch_images(config.seed, epoch, skip)
    else:
        parts, sizes = zip(*cached)
        ds = seeded_order.shuffled_parts(list(parts), list(sizes), config.seed, epoch)
        ds = ds.enumerate().skip(skip).map(lambda p, image: (image, p))
    ds = ds.repeat().take(wanted)
    return ds.map(_augment(config, epoch, training=True), num_parallel_calls=tf.data.AUTOTUNE)


def training_batches(source, config: RunConfig, start_epoch: int = 0, start_step: int = 0,
                     end_epoch: int | None = None) -> tf.data.Dataset:
    """The training stream over ``source`` (an
    :class:`~ctxenc_tf.data.image_source.ImageSource`) from epoch ``start_epoch``, step
    ``start_step`` up to (not including) ``end_epoch`` (default ``config.epochs``):
    ``(images, masks)`` batches, images ``[B, S, S, 3]`` float32 in ``[-1, 1]``, masks
    ``[B, S, S, 1]`` in ``{0, 1}``, exactly :func:`steps_per_epoch` batches per epoch
    (``start_step`` fewer in the first).

    Shuffled every epoch (with ``config.cache``: the cache's parts in a new order, each
    shuffled; :func:`_epoch_examples`), random horizontal flips, fresh random masks every
    epoch, all a pure function of ``(config.seed, epoch, position)``: resuming gives the
    same batches.
    """
    if not source:
        raise DataError("no image files given to the input pipeline")
    if steps_per_epoch(len(source), config.batch_size) == 0:
        raise DataError(f"{len(source)} training images, fewer than --batch-size={config.batch_size}")
    end_epoch = config.epochs if end_epoch is None else end_epoch
    cached = _cached_parts(source, config.cache) if config.cache else None
    first = tf.constant(start_epoch, tf.int64)
    skip = tf.constant(start_step * config.batch_size, tf.int64)

    def one_epoch(epoch):
        skipped = tf.where(epoch == first, skip, tf.constant(0, tf.int64))
        examples = _epoch_examples(source, config, epoch, skipped, cached)
        return examples.batch(config.batch_size, drop_remainder=True)

    ds = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(one_epoch)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(fit_options())


def fit_options() -> tf.data.Options:
    """``tf.data`` options of every dataset handed to ``model.fit``.

    Shard by element (``DATA``) for multi-worker training: every worker runs the same
    seeded pipeline and keeps its share of each global batch, so the global stream is the
    one a single machine sees; ``FILE`` sharding would give workers prepared shards of
    unequal sizes (and refuses a single source).

    Autotuning off: its optimisation thread sleeps in doubling periods (10 ms, 20 ms, ...,
    up to a minute) and destroying the iterator waits for it to wake, so ``fit`` (and each
    validation pass) returned up to a period late, e.g. at 40.95 s = 10 ms x (2^12 - 1)
    after its last step had ended seconds earlier. Without it, ``AUTOTUNE`` parallelism is
    the number of usable cores, which measured as fast on 2 cores."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return options


def image_dataset(source, config: RunConfig, training: bool) -> tf.data.Dataset:
    """Batched ``(images, masks)`` dataset over ``source`` (an
    :class:`~ctxenc_tf.data.image_source.ImageSource`), one pass.

    Training: the first epoch of :func:`training_batches` (seeded order, flips, masks;
    full batches only). Validation: images in stored order, fixed masks (the same every
    pass), last partial batch kept; decoded images are kept in
    memory when ``config.cache`` is set. Unreadable files that slipped past screening are
    dropped.
    """
    if not source:
        raise DataError("no image files given to the input pipeline")
    if training:
        return training_batches(source, config, 0, 0, 1)
    ds = (source.images().cache() if config.cache else source.images()).enumerate()
    ds = ds.map(lambda p, image: _augment(config, -1, training=False)(image, p),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(config.batch_size)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(fit_options())
