"""Real images as arrays, for calibration, parity checks and benchmarks."""

import os

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import ModelConfig, training_data
from ctxenc_tf.data import pipeline, sources
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


def real_images(model: ModelConfig, count: int, skip: int = 0, data_dir: str | None = None) -> np.ndarray:
    """``count`` real images after the first ``skip``, from ``data_dir`` (default the
    model's training data when it exists here, else the bundled faces), training split as
    the run that trained ``model`` split it. Returns ``[count, S, S, 3]`` float32 in
    ``[0, 1]``, ``S = model.image_size``; raises :class:`DataError`."""
    if data_dir is None:
        data_dir = model.trained_on.get("data_dir", "")
        data_dir = data_dir if data_dir and os.path.isdir(data_dir) else ""
    run = training_data(model, data_dir=data_dir, train_limit=skip + count, val_limit=1)
    files = sources.find_split(run).train[skip:skip + count]
    if not files:
        raise DataError(f"{data_dir or sources.BUNDLED_FACES}: fewer than {skip + 1} usable images")
    return load_images(files, model.image_size, run.resize == "stretch")
