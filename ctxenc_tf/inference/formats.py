"""The files an export consists of, and how to tell a model's format from its content:
the names both the exporters (:mod:`ctxenc_tf.export`) and the runner rely on."""

import os
import zipfile

from ctxenc_tf import schemas
from ctxenc_tf.errors import CheckpointError

SAVED_MODEL_DIR = "saved_model"

CONFIG_FILE = "config.json"

SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes", "inpaint")

TFLITE_DIR = "tflite"

TFLITE_SIGNATURES = ("serving_default", "inpaint")


def tflite_path(out_dir: str, variant: str) -> str:
    """``out_dir/tflite/ctxenc_<variant>.tflite``."""
    return os.path.join(out_dir, TFLITE_DIR, f"ctxenc_{variant}.tflite")


def find_config(directory: str, levels: int, what: str) -> tuple:
    """``(config, path)``: the :class:`~ctxenc_tf.config.ModelConfig` in the nearest ``config.json`` and that
    file's path: ``directory/assets.extra/`` (inside a SavedModel version), ``directory`` or
    up to ``levels`` parents above it (an export writes it at its root). Raises
    :class:`CheckpointError` when there is none, or the first one found fails its schema
    (:func:`~ctxenc_tf.schemas.read_model_config`)."""
    candidates = [os.path.join(directory, "assets.extra", CONFIG_FILE)]
    for _ in range(levels + 1):
        candidates.append(os.path.join(directory, CONFIG_FILE))
        directory = os.path.dirname(directory)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return schemas.read_model_config(candidate), candidate
    raise CheckpointError(f"{what}: no {CONFIG_FILE} found beside the export "
                          "(ctxenc_tf.export writes it at the export's root)")


def saved_model_version_dir(path: str):
    """The SavedModel directory to load for ``path``: ``path`` itself if it holds
    ``saved_model.pb``, else the highest numeric version below ``path`` or
    ``path/saved_model``; ``None`` if there is none."""
    for root in (path, os.path.join(path, "saved_model")):
        if os.path.isfile(os.path.join(root, "saved_model.pb")):
            return root
        if os.path.isdir(root):
            versions = [int(n) for n in os.listdir(root)
                        if n.isdigit() and os.path.isfile(os.path.join(root, n, "saved_model.pb"))]
            if versions:
                return os.path.join(root, str(max(versions)))
    return None


def model_kind(path: str) -> str:
    """``'keras'``, ``'saved_model'`` or ``'tflite'`` judged from the file's content (not
    its name). Raises :class:`CheckpointError` for anything else."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: model not found")
    if os.path.isdir(path):
        if saved_model_version_dir(path):
            return "saved_model"
        raise CheckpointError(f"{path}: directory holds no SavedModel (no saved_model.pb here, "
                              "in a numeric version folder, or under saved_model/)")
    if not os.path.isfile(path):  # a pipe or device: reading it could block forever
        raise CheckpointError(f"{path}: not a regular file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    if zipfile.is_zipfile(path):
        return "keras"
    raise CheckpointError(f"{path}: not a model (expected a .keras checkpoint, a SavedModel "
                          "directory or a .tflite file)")
