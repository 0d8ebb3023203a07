"""Real images as arrays, for calibration, parity checks and benchmarks: seeded spreads over
the whole training split, since the first files of a sorted folder may all be one person."""

import os

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import ModelConfig, training_data
from ctxenc_tf.data import pipeline, seeded_order, sources
from ctxenc_tf.errors import DataError, one_line


def load_images(files, image_size: int, stretch: bool = False) -> np.ndarray:
    """Decode image files (centre-square crop + resize, :func:`pipeline.load_image`) to
    ``[N, S, S, 3]`` float32 in ``[0, 1]``. A file that cannot be decoded raises
    :class:`~ctxenc_tf.errors.DataError` naming it."""
    images = []
    for f in files:
        try:
            images.append((pipeline.load_image(f, image_size, stretch).numpy() + 1.0) / 2.0)
        except tf.errors.InvalidArgumentError as e:
            raise DataError(f"{f}: cannot decode image ({one_line(e, last=True)})") from e
    return np.stack(images)


def training_folder(model: ModelConfig, data_dir: str | None = None) -> str:
    """The folder :func:`sample_files` reads: ``data_dir``, else the model's training data
    when it exists here, else ``""`` (the bundled faces)."""
    if data_dir is None:
        data_dir = model.trained_on.get("data_dir", "")
        data_dir = data_dir if data_dir and os.path.isdir(data_dir) else ""
    return data_dir


def sample_files(model: ModelConfig, counts: dict, data_dir: str | None = None) -> dict:
    """Disjoint seeded spreads over the training split, one per purpose: ``counts`` maps a
    purpose to how many images it takes, in order (``{"calibration": 64, "parity": 16}``).
    Purpose k gets the images of :func:`~ctxenc_tf.data.seeded_order.spread_sample` for
    the first k+1 counts together that the earlier purposes did not take, so each is a
    spread over the whole split and none shares an image with another.

    The split is the training split of ``data_dir`` (:func:`training_folder`) as the run
    that trained ``model`` split it, with that run's seed, all of it (also where the run kept
    fewer with ``train_limit``: none is a validation image). Returns ``{purpose: [path, ...]}``
    (paths in increasing split order); raises :class:`DataError` when the split has fewer
    images than the counts' sum."""
    data_dir = training_folder(model, data_dir)
    run = training_data(model, data_dir=data_dir, train_limit=0, val_limit=0)
    train = sources.find_split(run).train
    total = sum(counts.values())
    if len(train) < total:
        raise DataError(f"{data_dir or sources.BUNDLED_FACES}: {len(train)} usable training images, "
                        f"fewer than the {total} asked for ({', '.join(f'{n} {p}' for p, n in counts.items())})")
    chosen, taken, used = {}, 0, set()
    for purpose, count in counts.items():
        taken += count
        spread = seeded_order.spread_sample(len(train), run.seed, taken).numpy()
        chosen[purpose] = [train[i] for i in spread if i not in used]
        used.update(int(i) for i in spread)
    return chosen


def real_images(model: ModelConfig, count: int, data_dir: str | None = None) -> np.ndarray:
    """``count`` real images, a seeded spread over the training split (:func:`sample_files`),
    decoded as the run decoded them. Returns ``[count, S, S, 3]`` float32 in ``[0, 1]``,
    ``S = model.image_size``; raises :class:`DataError`."""
    files = sample_files(model, {"images": count}, data_dir)["images"]
    return load_images(files, model.image_size, training_data(model).resize == "stretch")
