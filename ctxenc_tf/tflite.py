"""TFLite export of the generator in four precisions, and its parity with Keras.

Every ``.tflite`` file has two named signatures, both with float32 I/O in ``[0, 1]``:
``serving_default`` (``images`` ``[1, S, S, 3]`` -> ``completed`` ``[1, S, S, 3]``,
``prediction`` ``[1, O, O, 3]``; centre hole) and ``inpaint`` (``images``, ``masks``
``[1, S, S, 1]`` (1 = hole) -> the same outputs). The graph is the one of
:class:`ctxenc_tf.export.InpaintingModule` with a static batch of 1.

Variants: ``float32``; ``float16`` (weights stored as float16); ``dynamic_int8`` (int8
weights, float activations); ``full_int8`` (int8 weights and activations calibrated on
real images, float32 in/out through quantize/dequantize ops).
"""

import os
import tempfile
import warnings

import numpy as np
import tensorflow as tf

from ctxenc_tf import atomic, data, masks, metrics
from ctxenc_tf.config import Config
from ctxenc_tf.export import InpaintingModule, float32_generator, write_config
from ctxenc_tf.trainer import ContextEncoder, paste_prediction

TFLITE_DIR = "tflite"
VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")
TFLITE_SIGNATURES = ("serving_default", "inpaint")
CALIBRATION_IMAGES = 64


def tflite_path(out_dir: str, variant: str) -> str:
    """``out_dir/tflite/ctxenc_<variant>.tflite``."""
    return os.path.join(out_dir, TFLITE_DIR, f"ctxenc_{variant}.tflite")


def load_images(files, image_size: int) -> np.ndarray:
    """Decode image files (centre-square crop + resize, :func:`data.load_image`) to
    ``[N, S, S, 3]`` float32 in ``[0, 1]``. A file that cannot be decoded raises
    :class:`~ctxenc_tf.data.DataError` naming it."""
    images = []
    for f in files:
        try:
            images.append((data.load_image(f, image_size).numpy() + 1.0) / 2.0)
        except tf.errors.InvalidArgumentError as e:
            raise data.DataError(f"{f}: cannot decode image ({e.message.strip().splitlines()[-1][:200]})") from e
    return np.stack(images)


def real_images(config: Config, count: int, skip: int = 0, data_dir: str | None = None) -> np.ndarray:
    """``count`` real images after the first ``skip``, from ``data_dir`` (default the
    model's training data when it exists here, else the bundled faces), training split.
    Returns ``[count, S, S, 3]`` float32 in ``[0, 1]``; raises :class:`data.DataError`."""
    if data_dir is None:
        data_dir = config.data_dir if config.data_dir and os.path.isdir(config.data_dir) else ""
    split = data.find_split(config.replace(data_dir=data_dir, train_limit=skip + count, val_limit=1))
    files = split.train[skip:skip + count]
    if not files:
        raise data.DataError(f"{data_dir or data.BUNDLED_FACES}: fewer than {skip + 1} usable images")
    return load_images(files, config.image_size)


def calibration_masks(config: Config, count: int) -> np.ndarray:
    """``count`` masks of the model's own type (seeded), ``[count, S, S, 1]`` float32."""
    return np.stack([masks.make_mask(config.mask_type, config.image_size, config.hole_size,
                                     seed=tf.constant([i, config.seed], tf.int32)).numpy()
                     for i in range(count)])


def _representative_dataset(config: Config, images: np.ndarray):
    """Calibration samples for both signatures: ``(signature_key, {input: [1, ...]})``."""
    hole = calibration_masks(config, len(images))

    def generate():
        for image, mask in zip(images, hole):
            yield "serving_default", {"images": image[None]}
            yield "inpaint", {"images": image[None], "masks": mask[None]}

    return generate


def _converter(saved_model_dir: str, variant: str, config: Config, images):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=list(TFLITE_SIGNATURES))
    if variant == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "full_int8":
        converter.representative_dataset = _representative_dataset(config, images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def export_tflite(model: ContextEncoder, out_dir: str, variants=VARIANTS, representative_images=None) -> dict:
    """Convert the model to ``out_dir/tflite/ctxenc_<variant>.tflite`` for each of
    ``variants`` (see :data:`VARIANTS`), each written atomically; also writes
    ``out_dir/config.json``. Returns ``{variant: path}``.

    ``representative_images``: ``[N, S, S, 3]`` float32 in ``[0, 1]`` calibrating
    ``full_int8``; ``None`` takes :data:`CALIBRATION_IMAGES` real images
    (:func:`real_images`).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; choose from {VARIANTS}")
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
                flatbuffer = _converter(tmp, variant, config, representative_images).convert()
            paths[variant] = tflite_path(out_dir, variant)
            atomic.write_bytes(paths[variant], flatbuffer)
    write_config(config, out_dir)
    return paths


def run_tflite(path: str, images: np.ndarray, masks=None, num_threads: int | None = None) -> dict:
    """Run a ``.tflite`` file through the LiteRT interpreter, one image at a time:
    ``images`` ``[N, S, S, 3]`` float32 in ``[0, 1]`` (and ``masks`` ``[N, S, S, 1]`` for
    the ``inpaint`` signature, else ``serving_default``). Returns ``{"completed":
    [N, S, S, 3], "prediction": [N, O, O, 3]}`` float32 in ``[0, 1]``."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads or os.cpu_count())
    runner = interpreter.get_signature_runner("serving_default" if masks is None else "inpaint")
    outputs = []
    for i in range(len(images)):
        feed = {"images": images[i:i + 1].astype(np.float32)}
        if masks is not None:
            feed["masks"] = masks[i:i + 1].astype(np.float32)
        outputs.append(runner(**feed))
    return {k: np.concatenate([o[k] for o in outputs]) for k in ("completed", "prediction")}


# ---- parity with Keras ----------------------------------------------------------------

def keras_reference(model: ContextEncoder, images: np.ndarray, hole=None, batch_size: int = 16) -> dict:
    """What Keras computes for ``images`` ``[N, S, S, 3]`` float32 in ``[0, 1]`` with
    ``hole`` ``[N, S, S, 1]`` (default the centre mask): ``{"completed": [N, S, S, 3],
    "prediction": [N, O, O, 3]}`` float32 in ``[0, 1]`` (float32 generator,
    :func:`trainer.paste_prediction`)."""
    config = model.config
    generator = float32_generator(model)
    if hole is None:
        hole = np.broadcast_to(masks.center_mask(config.image_size, config.hole_size).numpy()[None],
                               (len(images), config.image_size, config.image_size, 1))
    out = {"completed": [], "prediction": []}
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size] * 2.0 - 1.0
        m = np.asarray(hole[i:i + batch_size], np.float32)
        prediction = generator([x, m], training=False)
        out["prediction"].append((np.asarray(prediction) + 1.0) / 2.0)
        out["completed"].append((np.asarray(paste_prediction(x, prediction, m, config)) + 1.0) / 2.0)
    return {k: np.concatenate(v) for k, v in out.items()}


def compare(reference: dict, got: dict) -> dict:
    """Pixel differences of ``got`` vs ``reference`` (dicts of ``completed`` and
    ``prediction`` in ``[0, 1]``), measured on ``prediction``: ``max_abs``, ``mean_abs``,
    ``psnr`` (dB, mean over images, capped at 100), plus ``completed_max_abs``."""
    ref, out = reference["prediction"], got["prediction"]
    diff = np.abs(out.astype(np.float64) - ref)
    region = np.ones(ref.shape[:3] + (1,), np.float32)
    psnr = metrics.masked_psnr(out * 2.0 - 1.0, ref * 2.0 - 1.0, region)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "psnr": float(np.mean(psnr)),
            "completed_max_abs": float(np.abs(got["completed"] - reference["completed"]).max())}


def path_size(path: str) -> int:
    """Bytes of a file, or of every file below a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(path) for n in names)


def run_saved_model(path: str, images: np.ndarray) -> dict:
    """``serving_default`` of the SavedModel at ``path`` reloaded with
    ``tf.saved_model.load``; ``images`` ``[N, S, S, 3]`` float32 in ``[0, 1]``."""
    signature = tf.saved_model.load(path).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(images=tf.constant(images, tf.float32)).items()}


def measure_parity(model: ContextEncoder, exported: dict, images: np.ndarray) -> list:
    """Run each export in ``exported`` (``{name: path}``; ``"saved_model"`` or a TFLite
    variant) on ``images`` (``[N, S, S, 3]`` float32 in ``[0, 1]``, centre hole) and
    compare with Keras. Returns rows ``{"name", "path", "bytes", **compare(...)}``."""
    reference = keras_reference(model, images)
    rows = []
    for name, path in exported.items():
        got = run_saved_model(path, images) if name == "saved_model" else run_tflite(path, images)
        rows.append({"name": name, "path": path, "bytes": path_size(path), **compare(reference, got)})
    return rows


def format_table(rows: list, image_count: int) -> str:
    """Markdown table of :func:`measure_parity` rows (sizes in MB, differences in [0, 1] pixels)."""
    lines = [f"parity vs Keras on {image_count} real images (predicted region, pixels in [0, 1]; "
             "PSNR capped at 100 dB):",
             "| export | size (MB) | max abs diff | mean abs diff | PSNR vs Keras (dB) |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['bytes'] / 1e6:.2f} | {r['max_abs']:.2e} | "
                     f"{r['mean_abs']:.2e} | {r['psnr']:.1f} |")
    return "\n".join(lines)
