"""Seeded order: every random choice of the input pipeline (file order, flips, masks) is a
stateless function of ``(seed, epoch, position)``, so a resumed run repeats the same batches."""

import tensorflow as tf


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


def spread_sample(num_files: int, seed: int, count: int):
    """``min(count, num_files)`` distinct indices of ``range(num_files)`` (int32, increasing):
    a seeded choice spread over the whole range, for what is measured on a sample (the
    dataset mean). Its order is that of epoch -2, which neither training nor validation uses."""
    return tf.sort(epoch_order(num_files, seed, -2)[:count])


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


def shuffled_parts(parts: list, sizes: list, seed: int, epoch) -> tf.data.Dataset:
    """The elements of the datasets ``parts`` (at most ``sizes[i]`` elements each) in the
    order of ``epoch``: the parts in a seeded order, each part's elements shuffled (by
    :func:`seeded_block_shuffle`, one part held in memory at a time); a pure function of
    ``seed`` and ``epoch``."""
    shuffle_seed = example_seed(seed, epoch, -2)
    # A block one longer than the part: the block is read to the part's end, which is what
    # completes a tf.data cache (also when the epoch ends inside the part).
    shuffled = [seeded_block_shuffle(part, tf.random.experimental.stateless_fold_in(shuffle_seed, i), size + 1)
                for i, (part, size) in enumerate(zip(parts, sizes))]
    order = tf.random.experimental.stateless_shuffle(tf.range(len(parts), dtype=tf.int64),
                                                     example_seed(seed, epoch, -4))
    # The choices of a part with fewer elements than its size (images that failed to
    # decode) are passed over once it is exhausted.
    sizes = tf.constant(sizes, tf.int64)
    choices = tf.data.Dataset.from_tensor_slices(order).flat_map(
        lambda part: tf.data.Dataset.from_tensors(part).repeat(sizes[part]))
    return tf.data.Dataset.choose_from_datasets(shuffled, choices, stop_on_empty_dataset=False)
