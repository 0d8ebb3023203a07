"""Run by tests/test_backends.py in a subprocess per Keras backend (``KERAS_BACKEND``):
loads ``.keras`` checkpoints, runs both networks and the whole model on the inputs in
``DIR/inputs.npz``, and writes the outputs to ``DIR/<backend>_<checkpoint>.npz``; with
``--save NAME`` it also saves the first checkpoint again, under this backend, as
``DIR/NAME.keras``. Under JAX and PyTorch, TensorFlow is made unimportable first: the
model must not need it.

    KERAS_BACKEND=jax python tests/backend_worker.py DIR a.keras [--save NAME]
"""

import os
import sys

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError

import numpy as np  # noqa: E402
from keras import backend, ops  # noqa: E402

from ctxenc_tf.model.checkpoint import load_context_encoder, save_checkpoint  # noqa: E402


def outputs(model, inputs) -> dict:
    """``generator``, ``discriminator`` and ``completed`` (the whole model) in inference mode."""
    images, masks = inputs["images"], inputs["masks"]
    result = {"generator": model.generator([images, masks], training=False),
              "completed": model([images, masks])}
    if model.discriminator is not None:
        result["discriminator"] = model.discriminator(inputs["patches"], training=False)
    return {name: ops.convert_to_numpy(value) for name, value in result.items()}


def main(argv):
    directory, *names = argv
    save = names.pop(names.index("--save") + 1) if "--save" in names else None
    names = [n for n in names if n != "--save"]
    inputs = dict(np.load(os.path.join(directory, "inputs.npz")))
    for i, name in enumerate(names):
        model = load_context_encoder(os.path.join(directory, name))
        stem = name.removesuffix(".keras")
        np.savez(os.path.join(directory, f"{backend.backend()}_{stem}.npz"), **outputs(model, inputs))
        if save and i == 0:
            save_checkpoint(model, os.path.join(directory, f"{save}.keras"))


if __name__ == "__main__":
    main(sys.argv[1:])
