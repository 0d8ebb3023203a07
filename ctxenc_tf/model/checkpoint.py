"""Saving and loading trained ``.keras`` checkpoints, with errors a user can act on."""

import os
import zipfile

import keras

from ctxenc_tf.errors import CheckpointError, one_line
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.utils import atomic


def save_checkpoint(model: ContextEncoder, path: str, optimizer_state: bool = False) -> None:
    """Write ``model`` to the ``.keras`` file ``path`` atomically: its config, generator
    and discriminator, i.e. what inference, export and fine-tuning need. The two Adam
    optimisers (twice the weights again) are left out unless ``optimizer_state``: the
    resume state in ``backup/`` holds them. Raises ``OSError`` if it cannot be written."""
    if not optimizer_state:
        model = ContextEncoder(model.config, model.generator, model.discriminator, name=model.name)
    atomic.save_model(model, path)


def load_context_encoder(path: str) -> ContextEncoder:
    """Load a ``.keras`` file written by ``train.py`` (``best.keras`` / ``final.keras``).

    Raises :class:`CheckpointError` (one line naming ``path``) if it is missing, not a
    ``.keras`` archive, or holds some other model.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if not os.path.isfile(path):  # a directory, or a pipe or device that could block forever
        raise CheckpointError(f"{path}: not a .keras checkpoint (expected a file written by train.py)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a .keras checkpoint (expected a file written by train.py)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for foreign or damaged archives
        raise CheckpointError(f"{path}: cannot load checkpoint ({one_line(e)})") from e
    if not isinstance(model, ContextEncoder):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a ContextEncoder "
                              "checkpoint from train.py")
    return model
