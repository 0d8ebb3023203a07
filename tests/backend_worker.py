"""Run by tests/test_backends.py in a subprocess per Keras backend (``KERAS_BACKEND``), on
the inputs in ``DIR/inputs.npz`` (``images``, ``masks``, ``patches``):

* ``--outputs A.keras ...``: both networks and the whole model in inference mode, to
  ``DIR/<backend>_<A>.npz``;
* ``--save NAME``: the first of those checkpoints saved again, under this backend, as
  ``DIR/NAME.keras``;
* ``--step A.keras --learning-rate LR [--strategy S ...]``: one training step (``fit``,
  SGD for both networks) on the batch ``(images, masks)``; its losses and the updated
  weights to ``DIR/<backend>_step_<S>.npz``, the trained model to ``DIR/<backend>_step_<S>.keras``
  (under JAX ``S`` is a ``--strategy`` of :mod:`ctxenc_tf.training.data_parallel`; under
  TensorFlow, ``default``).

Under JAX and PyTorch, TensorFlow is made unimportable first: the model must not need it.
"""

import argparse
import os
import sys

if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    sys.modules["tensorflow"] = None  # any `import tensorflow` now raises ImportError

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from ctxenc_tf.model.checkpoint import load_context_encoder, save_checkpoint  # noqa: E402
from ctxenc_tf.training.data_parallel import data_parallel  # noqa: E402


def outputs(model, inputs) -> dict:
    """``generator``, ``discriminator`` and ``completed`` (the whole model) in inference mode."""
    images, masks = inputs["images"], inputs["masks"]
    result = {"generator": model.generator([images, masks], training=False),
              "completed": model([images, masks])}
    if model.discriminator is not None:
        result["discriminator"] = model.discriminator(inputs["patches"], training=False)
    return {name: ops.convert_to_numpy(value) for name, value in result.items()}


def step(path, inputs, learning_rate: float, trained: str) -> dict:
    """``loss/<name>`` and ``weight/<variable path>`` after one SGD step on the batch; the
    model after it saved as ``trained``."""
    model = load_context_encoder(path)
    model.compile(g_optimizer=keras.optimizers.SGD(learning_rate),
                  d_optimizer=keras.optimizers.SGD(learning_rate))

    def batches():
        while True:
            yield inputs["images"], inputs["masks"]

    history = model.fit(batches(), steps_per_epoch=1, epochs=1, verbose=0).history
    save_checkpoint(model, trained)
    return ({f"loss/{name}": np.float64(values[0]) for name, values in history.items()}
            | {f"weight/{w.path}": ops.convert_to_numpy(w) for w in model.weights})


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--outputs", nargs="*", default=[])
    parser.add_argument("--save")
    parser.add_argument("--step")
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--strategy", nargs="*", default=["default"])
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    inputs = dict(np.load(os.path.join(args.directory, "inputs.npz")))
    for i, name in enumerate(args.outputs):
        model = load_context_encoder(os.path.join(args.directory, name))
        np.savez(os.path.join(args.directory, f"{backend}_{name.removesuffix('.keras')}.npz"), **outputs(model, inputs))
        if args.save and i == 0:
            save_checkpoint(model, os.path.join(args.directory, f"{args.save}.keras"))
    for strategy in args.strategy if args.step else []:
        if backend == "jax":
            data_parallel(strategy)
        result = os.path.join(args.directory, f"{backend}_step_{strategy}")
        np.savez(f"{result}.npz", **step(os.path.join(args.directory, args.step), inputs, args.learning_rate,
                                          f"{result}.keras"))


if __name__ == "__main__":
    main(sys.argv[1:])
