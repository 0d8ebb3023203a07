"""SavedModel export for TensorFlow Serving.

The trained generator is wrapped in a :class:`InpaintingModule` (a ``tf.Module``) whose
``tf.function`` signatures carry all pre- and post-processing in the graph (decoding,
centre-square crop and resize, scaling, the centre mask, the hole fill with the dataset
mean, pasting the prediction back), so clients send plain images:

* ``serving_default``: ``images`` float32 ``[N, S, S, 3]`` in ``[0, 1]`` -> ``completed``
  float32 ``[N, S, S, 3]`` and ``prediction`` float32 ``[N, O, O, 3]``, both in ``[0, 1]``.
* ``serving_uint8``: the same with uint8 ``[0, 255]`` images in and out.
* ``serving_bytes``: ``image_bytes`` string ``[N]`` (encoded JPEG/PNG/GIF/BMP of any size,
  the REST ``{"b64": ...}`` convention) -> ``completed_png_bytes`` string ``[N]`` (PNG, ``S x S``).
* ``inpaint``: ``images`` float32 ``[N, S, S, 3]`` in ``[0, 1]`` and ``masks`` float32
  ``[N, S, S, 1]`` (1 = hole) -> ``completed``, ``prediction`` as above.

``S = config.image_size``, ``O = config.output_size``. Versions are written to
``DIR/saved_model/<version>/`` through a temporary directory and a rename, so TF Serving,
which polls ``DIR/saved_model``, never loads half a model.
"""

import errno
import functools
import os

import keras
import tensorflow as tf

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import hole_masks, pipeline
from ctxenc_tf.data.samples import real_images
from ctxenc_tf.export.warmup import write_warmup
from ctxenc_tf.inference.formats import CONFIG_FILE, SAVED_MODEL_DIR, SIGNATURES
from ctxenc_tf.model.context_encoder import ContextEncoder, paste_prediction
from ctxenc_tf.model.precision import float32_generator
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.pixels import unit_to_uint8


class InpaintingModule(tf.Module):
    """The generator with its pre/post-processing as ``tf.function`` signatures.

    ``signatures`` picks which of :data:`SIGNATURES` to build; ``batch_size`` ``None``
    gives the dynamic batch dimension TF Serving wants, TFLite needs a static one (1).
    Only the ``tf.Variable`` objects the signatures read are tracked (not the Keras
    model, whose variable wrappers would store every weight twice and keep TFLite from
    freezing them into constants).
    """

    def __init__(self, generator: keras.Model, config: ModelConfig, batch_size: int | None = None,
                 signatures=SIGNATURES):
        super().__init__(name="ctxenc")
        self.config = config
        self._predict = functools.partial(generator, training=False)
        s = config.image_size
        images = tf.TensorSpec([batch_size, s, s, 3], tf.float32, name="images")
        specs = {
            "serving_default": (self.complete_centre, [images]),
            "serving_uint8": (self.complete_uint8,
                              [tf.TensorSpec([batch_size, s, s, 3], tf.uint8, name="images")]),
            "serving_bytes": (self.complete_bytes,
                              [tf.TensorSpec([batch_size], tf.string, name="image_bytes")]),
            "inpaint": (self.complete,
                        [images, tf.TensorSpec([batch_size, s, s, 1], tf.float32, name="masks")]),
        }
        self._signature_names = tuple(signatures)
        captured = {}
        for name in self._signature_names:
            fn, spec = specs[name]
            setattr(self, name, tf.function(fn, input_signature=spec))
            for v in getattr(self, name).get_concrete_function().variables:
                captured[id(v)] = v
        self.generator_variables = list(captured.values())

    def signatures(self) -> dict:
        """``{name: tf.function}`` for ``tf.saved_model.save(signatures=...)``."""
        return {name: getattr(self, name) for name in self._signature_names}

    def complete(self, images, masks):
        """``images`` ``[N, S, S, 3]`` float32 in ``[0, 1]``, ``masks`` ``[N, S, S, 1]``
        (1 = hole) -> ``{"completed": [N, S, S, 3], "prediction": [N, O, O, 3]}`` float32
        in ``[0, 1]``."""
        mask = tf.clip_by_value(masks, 0.0, 1.0)
        prediction = (self._predict([tf.clip_by_value(images, 0.0, 1.0) * 2.0 - 1.0, mask]) + 1.0) / 2.0
        # Pasted in [0, 1] onto the input tensor itself, as the graph's last op: outside the
        # hole ``completed`` is the input bit for bit, also in a quantised TFLite file,
        # which keeps this select in float (export/tflite.py).
        return {"completed": paste_prediction(images, prediction, mask, self.config), "prediction": prediction}

    def complete_centre(self, images):
        """:meth:`complete` with the centre ``hole_size`` square as the hole."""
        c = self.config
        mask = hole_masks.center_mask(c.image_size, c.hole_size)[None]
        return self.complete(images, tf.broadcast_to(mask, tf.concat([tf.shape(images)[:1],
                                                                      tf.shape(mask)[1:]], 0)))

    def complete_uint8(self, images):
        """:meth:`complete_centre` on uint8 ``[N, S, S, 3]`` images; outputs uint8."""
        out = self.complete_centre(tf.cast(images, tf.float32) / 255.0)
        return {name: unit_to_uint8(value) for name, value in out.items()}

    def complete_bytes(self, image_bytes):
        """Encoded images ``[N]`` string (any size) -> ``{"completed_png_bytes": [N] string}``:
        each decoded, centre-square cropped and resized to ``S`` (:func:`pipeline.decode_image`),
        completed at the centre, PNG-encoded."""
        s = self.config.image_size
        images = tf.map_fn(lambda b: (pipeline.decode_image(b, s) + 1.0) / 2.0, image_bytes,
                           fn_output_signature=tf.TensorSpec([s, s, 3], tf.float32))
        completed = unit_to_uint8(self.complete_centre(images)["completed"])
        pngs = tf.map_fn(tf.io.encode_png, completed, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"completed_png_bytes": pngs}


def next_version(base_dir: str) -> int:
    """One more than the largest integer-named directory in ``base_dir`` (1 if none)."""
    if not os.path.isdir(base_dir):
        return 1
    versions = [int(n) for n in os.listdir(base_dir)
                if n.isdigit() and os.path.isdir(os.path.join(base_dir, n))]
    return max(versions, default=0) + 1


def write_config(config: ModelConfig, out_dir: str) -> str:
    """Write ``out_dir/config.json`` (the model's :class:`~ctxenc_tf.config.ModelConfig`)
    atomically; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, CONFIG_FILE)
    config.save_json(path)
    return path


def export_saved_model(model: ContextEncoder, out_dir: str, version: int | None = None,
                       warmup_images=None) -> str:
    """Write the four-signature SavedModel to ``out_dir/saved_model/<version>/`` (the
    layout TF Serving loads) and ``out_dir/config.json``; returns the version directory.

    ``version`` ``None`` takes the next free integer. The version directory is built under
    a temporary name and renamed when complete; it also carries
    ``assets.extra/config.json`` and TF Serving's warm-up requests
    (:mod:`~ctxenc_tf.export.warmup`), made of ``warmup_images`` ``[N, S, S, 3]`` in
    ``[0, 1]`` (default: 4 real images, :func:`~ctxenc_tf.data.samples.real_images`).
    Raises ``FileExistsError`` if the version exists and ``ValueError`` for a version below 1.
    """
    base = os.path.join(out_dir, SAVED_MODEL_DIR)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    path = os.path.join(base, str(version))
    if os.path.exists(path):
        raise FileExistsError(errno.EEXIST, "this model version already exists; pass another "
                                            "version or none for the next free one", path)
    if warmup_images is None:
        warmup_images = real_images(model.config, 4)
    module = InpaintingModule(float32_generator(model), model.config)
    with atomic.atomic_directory(path) as tmp:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        write_warmup(tmp, warmup_images, model.config)
        write_config(model.config, os.path.join(tmp, "assets.extra"))
    write_config(model.config, out_dir)
    return path
