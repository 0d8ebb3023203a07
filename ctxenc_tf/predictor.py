"""One inference interface over the three model formats the project writes:

* a ``.keras`` checkpoint from ``train.py`` (``best.keras`` / ``final.keras``),
* a SavedModel from ``ctxenc_tf.export`` (``DIR``, ``DIR/saved_model`` or
  ``DIR/saved_model/<version>``; its ``inpaint`` signature),
* a ``.tflite`` file from ``ctxenc_tf.tflite`` (LiteRT, ``inpaint`` signature, batch 1).

``load_predictor(path)`` picks the format from the file itself and returns a
:class:`Predictor`: ``predictor.config`` is the model's :class:`Config` and
``predictor.inpaint(images, masks)`` maps ``[N, S, S, 3]`` float32 images in ``[0, 1]`` and
``[N, S, S, 1]`` masks (1 = hole) to ``(completed, prediction)`` in ``[0, 1]``.
"""

import json
import os
import zipfile

import numpy as np

from ctxenc_tf.checkpoint import CheckpointError
from ctxenc_tf.config import Config, ConfigError

CONFIG_FILE = "config.json"
SIGNATURE = "inpaint"
SAVED_MODEL_BATCH = 32
KINDS = ("keras", "saved_model", "tflite")


class Predictor:
    """Base class: subclasses implement :meth:`_run` on one batch in ``[0, 1]``."""

    kind = ""

    def __init__(self, path: str, config: Config):
        self.path, self.config = path, config

    def inpaint(self, images, masks):
        """Fill the holes of ``images``.

        ``images``: ``[N, S, S, 3]`` float32 in ``[0, 1]``; ``masks``: ``[N, S, S, 1]``
        float32 in ``{0, 1}`` (1 = hole), ``S = config.image_size``. Returns
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
        completed, prediction = self._run(images, masks)
        return (np.clip(np.asarray(completed, np.float32), 0.0, 1.0),
                np.clip(np.asarray(prediction, np.float32), 0.0, 1.0))

    def _run(self, images, masks):
        raise NotImplementedError

    def describe(self) -> str:
        """One line naming the format and the model's geometry."""
        c = self.config
        return (f"{self.kind} model {self.path}: {c.image_size}x{c.image_size} input, "
                f"{c.mask_type} holes of {c.hole_size}, {c.output_size}x{c.output_size} output")


class KerasPredictor(Predictor):
    """A ``.keras`` ContextEncoder checkpoint, run eagerly on the whole batch."""

    kind = "keras"

    def __init__(self, path: str):
        from ctxenc_tf.checkpoint import load_context_encoder

        from ctxenc_tf.export import float32_generator

        self.model = load_context_encoder(path)
        self.generator = float32_generator(self.model)  # same numbers as the exports
        super().__init__(path, self.model.config)

    def _run(self, images, masks):
        from ctxenc_tf.trainer import paste_prediction

        x = images * 2.0 - 1.0
        prediction = self.generator([x, masks], training=False)
        completed = paste_prediction(x, prediction, masks, self.config)
        return (np.asarray(completed) + 1.0) / 2.0, (np.asarray(prediction) + 1.0) / 2.0


class SavedModelPredictor(Predictor):
    """A SavedModel version directory, through its ``inpaint`` signature."""

    kind = "saved_model"

    def __init__(self, path: str, version_dir: str):
        import tensorflow as tf

        config = _find_config(version_dir, levels=3, what=path)
        try:
            self.loaded = tf.saved_model.load(version_dir)
        except Exception as e:  # TF raises many types for damaged or foreign SavedModels
            raise CheckpointError(f"{path}: cannot load SavedModel ({_first_line(e)})") from e
        if SIGNATURE not in self.loaded.signatures:
            raise CheckpointError(f"{path}: SavedModel has no '{SIGNATURE}' signature (has "
                                  f"{', '.join(sorted(self.loaded.signatures)) or 'none'}); "
                                  "export it with ctxenc_tf.export")
        self.signature = self.loaded.signatures[SIGNATURE]
        super().__init__(path, config)

    def _run(self, images, masks):
        import tensorflow as tf

        completed, prediction = [], []
        for i in range(0, len(images), SAVED_MODEL_BATCH):
            out = self.signature(images=tf.constant(images[i:i + SAVED_MODEL_BATCH]),
                                 masks=tf.constant(masks[i:i + SAVED_MODEL_BATCH]))
            completed.append(out["completed"].numpy())
            prediction.append(out["prediction"].numpy())
        return _concat(completed), _concat(prediction)


class TFLitePredictor(Predictor):
    """A ``.tflite`` file, through LiteRT's ``inpaint`` signature runner, one image at a time."""

    kind = "tflite"

    def __init__(self, path: str):
        from ai_edge_litert.interpreter import Interpreter

        config = _find_config(os.path.dirname(os.path.abspath(path)), levels=2, what=path)
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=len(os.sched_getaffinity(0)))
            signatures = self.interpreter.get_signature_list()
        except Exception as e:  # LiteRT raises ValueError/RuntimeError for bad flatbuffers
            raise CheckpointError(f"{path}: cannot load TFLite model ({_first_line(e)})") from e
        if SIGNATURE not in signatures:
            raise CheckpointError(f"{path}: TFLite model has no '{SIGNATURE}' signature (has "
                                  f"{', '.join(sorted(signatures)) or 'none'}); "
                                  "export it with ctxenc_tf.tflite")
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        super().__init__(path, config)

    def _run(self, images, masks):
        completed, prediction = [], []
        for i in range(len(images)):
            out = self.runner(images=images[i:i + 1], masks=masks[i:i + 1])
            completed.append(np.array(out["completed"]))
            prediction.append(np.array(out["prediction"]))
        return _concat(completed), _concat(prediction)


def _concat(parts):
    return np.concatenate(parts, axis=0) if parts else np.zeros((0,), np.float32)


def _first_line(error) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _find_config(directory: str, levels: int, what: str) -> Config:
    """The :class:`Config` in the nearest ``config.json``: ``directory/assets.extra/`` (inside
    a SavedModel version), ``directory`` or up to ``levels`` parents above it (an export
    writes it at its root)."""
    candidates = [os.path.join(directory, "assets.extra", CONFIG_FILE)]
    for _ in range(levels + 1):
        candidates.append(os.path.join(directory, CONFIG_FILE))
        directory = os.path.dirname(directory)
    for candidate in candidates:
        if os.path.isfile(candidate):
            try:
                with open(candidate) as f:
                    return Config.from_dict(json.load(f))
            except (ValueError, TypeError, ConfigError) as e:
                raise CheckpointError(f"{candidate}: not a ctxenc_tf config ({_first_line(e)})") from e
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
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    if zipfile.is_zipfile(path):
        return "keras"
    raise CheckpointError(f"{path}: not a model (expected a .keras checkpoint, a SavedModel "
                          "directory or a .tflite file)")


def load_predictor(path: str) -> Predictor:
    """Open the model at ``path`` in whichever of the three formats it is.

    Raises :class:`~ctxenc_tf.checkpoint.CheckpointError` (one line naming ``path``) when
    it is missing, of another type, or lacks the ``inpaint`` signature / its config.
    """
    kind = model_kind(path)
    if kind == "keras":
        return KerasPredictor(path)
    if kind == "saved_model":
        return SavedModelPredictor(path, saved_model_version_dir(path))
    return TFLitePredictor(path)
