"""The one way to run a trained model, whatever its format:

* a ``.keras`` checkpoint from ``train`` (``best.keras`` / ``final.keras``), or a
  :class:`~ctxenc_tf.model.context_encoder.ContextEncoder` in memory,
* a SavedModel from ``export`` (``DIR``, ``DIR/saved_model`` or
  ``DIR/saved_model/<version>``; its ``inpaint`` signature),
* a ``.tflite`` file from ``export`` (LiteRT, ``inpaint`` signature, batch 1).

``load_runner(path)`` picks the format from the file itself. Every runner has
``runner.config`` (the model's :class:`~ctxenc_tf.config.ModelConfig`) and ``runner.inpaint(images, masks)``,
which maps ``[N, S, S, 3]`` float32 images in ``[0, 1]`` and ``[N, S, S, 1]`` masks (1 =
hole) to ``(completed, prediction)`` in ``[0, 1]``. Inpaint, evaluate, the export's parity
check, the benchmark and the serving tests all run models through it, with one rule for
threads (:func:`usable_cores`).
"""

import os

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import hole_masks
from ctxenc_tf.errors import CheckpointError, one_line
from ctxenc_tf.inference.formats import find_config, model_kind, saved_model_version_dir
from ctxenc_tf.model.checkpoint import load_context_encoder
from ctxenc_tf.model.context_encoder import paste_prediction
from ctxenc_tf.model.precision import float32_generator

SIGNATURE = "inpaint"
SAVED_MODEL_BATCH = 32


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count):
    the thread count for every interpreter and the figure the benchmark reports."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Runner:
    """Base class: subclasses implement :meth:`_run` on one batch in ``[0, 1]``."""

    kind = ""

    def __init__(self, path: str, config: ModelConfig):
        self.path, self.config = path, config

    def inpaint(self, images, masks):
        """Fill the holes of ``images``.

        ``images``: ``[N, S, S, 3]`` float32 in ``[0, 1]``; ``masks``: ``[N, S, S, 1]``
        float32 in ``{0, 1}`` (1 = hole), ``S = config.image_size``; values outside
        ``[0, 1]`` are clipped, in every format. Returns
        ``(completed, prediction)`` numpy float32 in ``[0, 1]``: ``completed`` ``[N, S, S, 3]``
        (context kept, prediction blended into the hole), ``prediction`` ``[N, O, O, 3]``
        (the generator's raw output, ``O = config.output_size``).
        """
        s = self.config.image_size
        images = np.asarray(images, np.float32)
        masks = np.asarray(masks, np.float32)
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"images must be [N, {s}, {s}, 3], got {list(images.shape)}")
        if masks.shape != images.shape[:3] + (1,):
            raise ValueError(f"masks must be [N, {s}, {s}, 1], got {list(masks.shape)}")
        # Clipped here for every format (the exports' signatures clip too, export/saved_model.py),
        # so each model sees the same numbers and the completed image pastes onto the clipped input.
        completed, prediction = self._run(np.clip(images, 0.0, 1.0), np.clip(masks, 0.0, 1.0))
        return (np.clip(np.asarray(completed, np.float32), 0.0, 1.0),
                np.clip(np.asarray(prediction, np.float32), 0.0, 1.0))

    def centre_masks(self, count: int) -> np.ndarray:
        """``count`` copies of the model's centre hole, ``[count, S, S, 1]`` float32."""
        c = self.config
        centre = hole_masks.center_mask(c.image_size, c.hole_size).numpy()[None]
        return np.repeat(centre, count, axis=0)

    def _run(self, images, masks):
        raise NotImplementedError

    def _check_config(self, config_path: str, images_shape, prediction_shape) -> None:
        """Raise :class:`CheckpointError` naming ``config_path`` and the model file unless
        the model takes ``[N, S, S, 3]`` images (``images_shape``) and predicts
        ``[N, O, O, 3]`` (``prediction_shape``) as its config says: a ``config.json`` from
        another export would make every hole the wrong size."""
        c = self.config
        takes, predicts = list(images_shape)[1:], list(prediction_shape)[1:]
        if takes != [c.image_size, c.image_size, 3] or predicts != [c.output_size, c.output_size, 3]:
            raise CheckpointError(
                f"{config_path} does not fit {self.path}: the config says {c.image_size}x{c.image_size} "
                f"images and a {c.output_size}x{c.output_size} prediction (image_size {c.image_size}, "
                f"hole_size {c.hole_size}, mask_type {c.mask_type}), the model takes "
                f"{'x'.join(map(str, takes[:2]))} images and predicts {'x'.join(map(str, predicts[:2]))}; "
                "put back the config.json exported with it")

    def describe(self) -> str:
        """One line naming the format and the model's geometry."""
        c = self.config
        return (f"{self.kind} model {self.path}: {c.image_size}x{c.image_size} input, "
                f"{c.mask_type} holes of {c.hole_size}, {c.output_size}x{c.output_size} output")


class KerasRunner(Runner):
    """A ContextEncoder (loaded from a ``.keras`` file, or given) through its float32
    generator, the same numbers the exports compute. ``jit_compile`` ``None`` runs it
    eagerly; ``True``/``False`` inside a ``tf.function`` with or without XLA."""

    kind = "keras"

    def __init__(self, model, path: str = "", jit_compile: bool | None = None):
        self.model = model
        self.generator = float32_generator(model)
        super().__init__(path or "(in memory)", model.config)
        self._complete = self._complete_eager
        if jit_compile is not None:
            self._complete = tf.function(self._complete_eager, jit_compile=jit_compile)

    def _complete_eager(self, images, masks):
        # Pasted in [0, 1] onto the input itself, as the exports do: the context stays bit-exact.
        prediction = (self.generator([images * 2.0 - 1.0, masks], training=False) + 1.0) / 2.0
        return paste_prediction(images, prediction, masks, self.config), prediction

    def _run(self, images, masks):
        completed, prediction = self._complete(images, masks)
        return np.asarray(completed), np.asarray(prediction)


class SavedModelRunner(Runner):
    """A SavedModel version directory, through its ``inpaint`` signature."""

    kind = "saved_model"

    def __init__(self, path: str, version_dir: str):
        config, config_path = find_config(version_dir, levels=3, what=path)
        try:
            self.loaded = tf.saved_model.load(version_dir)
        except Exception as e:  # TF raises many types for damaged or foreign SavedModels
            raise CheckpointError(f"{path}: cannot load SavedModel ({one_line(e)})") from e
        if SIGNATURE not in self.loaded.signatures:
            raise CheckpointError(f"{path}: SavedModel has no '{SIGNATURE}' signature (has "
                                  f"{', '.join(sorted(self.loaded.signatures)) or 'none'}); "
                                  "export it with python -m ctxenc_tf export")
        self.signature = self.loaded.signatures[SIGNATURE]
        super().__init__(path, config)
        self._check_config(config_path, self.signature.structured_input_signature[1]["images"].shape,
                           self.signature.structured_outputs["prediction"].shape)

    def _run(self, images, masks):
        completed, prediction = [], []
        for i in range(0, len(images), SAVED_MODEL_BATCH):
            out = self.signature(images=tf.constant(images[i:i + SAVED_MODEL_BATCH]),
                                 masks=tf.constant(masks[i:i + SAVED_MODEL_BATCH]))
            completed.append(out["completed"].numpy())
            prediction.append(out["prediction"].numpy())
        return _concat(completed), _concat(prediction)


class TFLiteRunner(Runner):
    """A ``.tflite`` file, through LiteRT's ``inpaint`` signature runner, one image at a
    time (the files have a static batch of 1), on :func:`usable_cores` threads."""

    kind = "tflite"

    def __init__(self, path: str):
        from ai_edge_litert.interpreter import Interpreter

        config, config_path = find_config(os.path.dirname(os.path.abspath(path)), levels=2, what=path)
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=usable_cores())
            signatures = self.interpreter.get_signature_list()
        except Exception as e:  # LiteRT raises ValueError/RuntimeError for bad flatbuffers
            raise CheckpointError(f"{path}: cannot load TFLite model ({one_line(e)})") from e
        if SIGNATURE not in signatures:
            raise CheckpointError(f"{path}: TFLite model has no '{SIGNATURE}' signature (has "
                                  f"{', '.join(sorted(signatures)) or 'none'}); "
                                  "export it with python -m ctxenc_tf export")
        self.signature = self.interpreter.get_signature_runner(SIGNATURE)
        super().__init__(path, config)
        self._check_config(config_path, self.signature.get_input_details()["images"]["shape"],
                           self.signature.get_output_details()["prediction"]["shape"])

    def _run(self, images, masks):
        completed, prediction = [], []
        for i in range(len(images)):
            out = self.signature(images=images[i:i + 1], masks=masks[i:i + 1])
            completed.append(np.array(out["completed"]))
            prediction.append(np.array(out["prediction"]))
        return _concat(completed), _concat(prediction)


def _concat(parts):
    return np.concatenate(parts, axis=0) if parts else np.zeros((0,), np.float32)


def load_runner(path: str) -> Runner:
    """Open the model at ``path`` in whichever of the three formats it is.

    Raises :class:`~ctxenc_tf.errors.CheckpointError` (one line naming ``path``) when
    it is missing, of another type, or lacks the ``inpaint`` signature / its config.
    """
    kind = model_kind(path)
    if kind == "keras":
        return KerasRunner(load_context_encoder(path), path)
    if kind == "saved_model":
        return SavedModelRunner(path, saved_model_version_dir(path))
    return TFLiteRunner(path)
