"""Loading trained ``.keras`` checkpoints with errors a user can act on."""

import os
import zipfile

import keras

from ctxenc_tf.errors import CheckpointError, one_line
from ctxenc_tf.model.context_encoder import ContextEncoder


def load_context_encoder(path: str) -> ContextEncoder:
    """Load a ``.keras`` file written by ``train.py`` (``best.keras`` / ``final.keras``).

    Raises :class:`CheckpointError` (one line naming ``path``) if it is missing, not a
    ``.keras`` archive, or holds some other model.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a .keras checkpoint (expected a file written by train.py)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for foreign or damaged archives
        raise CheckpointError(f"{path}: cannot load checkpoint ({one_line(e)})") from e
    if not isinstance(model, ContextEncoder):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a ContextEncoder "
                              "checkpoint from train.py")
    return model
