"""Parity of every export with Keras: each format run through the one model runner
(:mod:`ctxenc_tf.inference.runner`) on the same real images, differences tabulated."""

import os

import numpy as np

from ctxenc_tf.inference.runner import KerasRunner, load_runner
from ctxenc_tf.model import metrics
from ctxenc_tf.model.context_encoder import ContextEncoder


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


def measure_parity(model: ContextEncoder, exported: dict, images: np.ndarray) -> list:
    """Run each export in ``exported`` (``{name: path}``; ``"saved_model"`` or a TFLite
    variant) on ``images`` (``[N, S, S, 3]`` float32 in ``[0, 1]``, centre hole) and
    compare with Keras. Returns rows ``{"name", "path", "bytes", **compare(...)}``."""
    keras_runner = KerasRunner(model)
    hole = keras_runner.centre_masks(len(images))
    reference = dict(zip(("completed", "prediction"), keras_runner.inpaint(images, hole)))
    rows = []
    for name, path in exported.items():
        got = dict(zip(("completed", "prediction"), load_runner(path).inpaint(images, hole)))
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
