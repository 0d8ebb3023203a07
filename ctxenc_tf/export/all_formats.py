"""Everything ``export.py`` does, as one function: SavedModel, TFLite variants, parity table."""

import errno
import json
import os

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import TFLITE_VARIANTS, training_data
from ctxenc_tf.data import sources
from ctxenc_tf.data.fingerprint import split_names
from ctxenc_tf.data.samples import load_images, sample_files, training_folder
from ctxenc_tf.export import parity, tflite
from ctxenc_tf.export.saved_model import export_saved_model
from ctxenc_tf.inference.formats import SIGNATURES
from ctxenc_tf.model.checkpoint import load_context_encoder
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import check_disk_space, exclusive_output, space_needed

SAMPLES = "samples.json"  # which training images calibrated, checked and warmed up the export


def export_all(checkpoint_path: str, out_dir: str, version: int | None = None, variants=None,
               data_dir: str | None = None, calibration_images: int = 64, parity_images: int = 16,
               log=print) -> dict:
    """Everything ``export.py`` does: load the checkpoint, write the SavedModel version and
    the TFLite ``variants`` (default all four) below ``out_dir``, run each of them and the
    Keras model on ``parity_images`` real images (disjoint from the ``calibration_images``
    that calibrate ``full_int8``; both seeded spreads over the training split of
    ``data_dir``, default the training data or the bundled faces,
    :func:`~ctxenc_tf.data.samples.sample_files`) and log the size / parity table. The
    parity images are also TF Serving's warm-up requests; ``out_dir/samples.json``
    names the images of each purpose (``{"calibration": [...], "parity": [...],
    "warmup": [...]}``, file names).

    Returns ``{"saved_model": dir, "tflite": {variant: path}, "parity": rows, "table": str}``.
    One export writes into ``out_dir`` at a time (:func:`~ctxenc_tf.utils.output_dir.exclusive_output`).
    Raises :class:`~ctxenc_tf.errors.CheckpointError` for an unusable checkpoint.
    """
    variants = TFLITE_VARIANTS if variants is None else tuple(variants)
    with exclusive_output(out_dir, "export.py", subdirs=("saved_model", "tflite")):
        return _export_all(checkpoint_path, out_dir, version, variants, data_dir, calibration_images,
                           parity_images, log)


def _export_all(checkpoint_path, out_dir, version, variants, data_dir, calibration_images, parity_images, log):
    model = load_context_encoder(checkpoint_path)
    config = model.config
    log(f"loaded {checkpoint_path}: {config.image_size}x{config.image_size} images, "
        f"{config.mask_type} hole {config.hole_size}, bottleneck {config.bottleneck}, "
        f"{model.generator.count_params():,} generator parameters")
    # Each format holds the generator's weights once, in float32 (the quantised TFLite
    # files less); graphs and warm-up requests are small beside them.
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.generator.weights)
    formats = (1 + len(variants), "SavedModel" + (" and TFLite files" if variants else ""))
    check_disk_space(out_dir, weight_bytes, *formats)
    counts = {"calibration": calibration_images} if "full_int8" in variants else {}
    files = sample_files(config, {**counts, "parity": parity_images}, data_dir)
    stretch = training_data(config).resize == "stretch"
    parity_set = load_images(files["parity"], config.image_size, stretch)
    try:
        saved = export_saved_model(model, out_dir, version, warmup_images=parity_set)
    except tf.errors.ResourceExhaustedError as e:
        # TensorFlow's code for a full disk (SaveV2's ENOSPC), and for running out of memory
        if os.strerror(errno.ENOSPC) not in str(e):
            raise
        raise OSError(errno.ENOSPC, f"disk full while writing the SavedModel; "
                                    f"{space_needed(weight_bytes, *formats)}", out_dir) from None
    log(f"SavedModel (signatures {', '.join(SIGNATURES)}): {saved}")
    paths = {}
    if variants:
        calibration = (load_images(files["calibration"], config.image_size, stretch)
                       if "full_int8" in variants else None)
        paths = tflite.export_tflite(model, out_dir, variants, calibration)
        for variant, path in paths.items():
            log(f"TFLite {variant}: {path}")
    # Named as split.json names a run's images: relative to the data folder.
    root = training_folder(config, data_dir) or sources.BUNDLED_FACES
    names = {purpose: split_names(part, root) for purpose, part in files.items()}
    atomic.write_bytes(os.path.join(out_dir, SAMPLES),
                       json.dumps({**names, "warmup": names["parity"]}, indent=2).encode())
    rows = parity.measure_parity(model, {"saved_model": saved, **paths}, parity_set)
    table = parity.format_table(rows, len(parity_set))
    log(table)
    return {"saved_model": saved, "tflite": paths, "parity": rows, "table": table}
