"""TFLite export of the generator in four precisions, and its parity with Keras.

Every ``.tflite`` file has two named signatures, both with float32 I/O in ``[0, 1]``:
``serving_default`` (``images`` ``[1, S, S, 3]`` -> ``completed`` ``[1, S, S, 3]``,
``prediction`` ``[1, O, O, 3]``; centre hole) and ``inpaint`` (``images``, ``masks``
``[1, S, S, 1]`` (1 = hole) -> the same outputs). The graph is the one of
:class:`ctxenc_tf.export.saved_model.InpaintingModule` with a static batch of 1.

Variants: ``float32``; ``float16`` (weights stored as float16); ``dynamic_int8`` (int8
weights, float activations); ``full_int8`` (int8 weights and activations calibrated on
real images, float32 in/out through quantize/dequantize ops; the final paste stays float).
In every variant ``completed`` equals ``images`` outside the hole, bit for bit.
"""

import tempfile
import warnings

import numpy as np
import tensorflow as tf

from ctxenc_tf.config import TFLITE_VARIANTS, ModelConfig
from ctxenc_tf.data import hole_masks
from ctxenc_tf.data.samples import real_images
from ctxenc_tf.export.saved_model import InpaintingModule, write_config
from ctxenc_tf.inference.formats import TFLITE_SIGNATURES, tflite_path
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.model.precision import float32_generator
from ctxenc_tf.utils import atomic

CALIBRATION_IMAGES = 64


def calibration_masks(config: ModelConfig, count: int) -> np.ndarray:
    """``count`` masks of the model's own type (seeded), ``[count, S, S, 1]`` float32."""
    return np.stack([hole_masks.make_mask(config.mask_type, config.image_size, config.hole_size,
                                     seed=tf.constant([i, config.trained_on.get("seed", 0)], tf.int32)).numpy()
                     for i in range(count)])


def _representative_dataset(config: ModelConfig, images: np.ndarray):
    """Calibration samples for both signatures: ``(signature_key, {input: [1, ...]})``."""
    hole = calibration_masks(config, len(images))

    def generate():
        for image, mask in zip(images, hole):
            yield "serving_default", {"images": image[None]}
            yield "inpaint", {"images": image[None], "masks": mask[None]}

    return generate


def _converter(saved_model_dir: str, variant: str, config: ModelConfig, images):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=list(TFLITE_SIGNATURES))
    if variant == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "full_int8":
        converter.representative_dataset = _representative_dataset(config, images)
        # Integer kernels everywhere except the ops denied below, which stay float.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert(saved_model_dir: str, variant: str, config: ModelConfig, images) -> bytes:
    """The ``.tflite`` flatbuffer of ``variant``. ``full_int8`` keeps the final paste (the
    graph's only SELECT_V2, :func:`~ctxenc_tf.model.context_encoder.paste_prediction`) in
    float on the float input, so the context outside the hole is the input bit for bit
    (quantised, the paste moved those pixels too). The quantization
    debugger is TFLite's public way to keep chosen ops out of quantization."""
    converter = _converter(saved_model_dir, variant, config, images)
    if variant != "full_int8":
        return converter.convert()
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=_representative_dataset(config, images),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["SELECT_V2"]))
    return debugger.get_nondebug_quantized_model()


def export_tflite(model: ContextEncoder, out_dir: str, variants=TFLITE_VARIANTS, representative_images=None) -> dict:
    """Convert the model to ``out_dir/tflite/ctxenc_<variant>.tflite`` for each of
    ``variants`` (see :data:`TFLITE_VARIANTS`), each written atomically; also writes
    ``out_dir/config.json``. Returns ``{variant: path}``.

    ``representative_images``: ``[N, S, S, 3]`` float32 in ``[0, 1]`` calibrating
    ``full_int8``; ``None`` takes :data:`CALIBRATION_IMAGES` real images
    (:func:`real_images`).
    """
    unknown = [v for v in variants if v not in TFLITE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; choose from {TFLITE_VARIANTS}")
    config = model.config
    if "full_int8" in variants and representative_images is None:
        representative_images = real_images(config, CALIBRATION_IMAGES)
    module = InpaintingModule(float32_generator(model), config, batch_size=1, signatures=TFLITE_SIGNATURES)
    paths = {}
    with tempfile.TemporaryDirectory(prefix="ctxenc-tflite-") as tmp:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        for variant in variants:
            with warnings.catch_warnings():  # the calibrator still uses tf.lite.Interpreter
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                flatbuffer = _convert(tmp, variant, config, representative_images)
            paths[variant] = tflite_path(out_dir, variant)
            atomic.write_bytes(paths[variant], flatbuffer)
    write_config(config, out_dir)
    return paths
