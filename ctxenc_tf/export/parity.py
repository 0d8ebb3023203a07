"""Parity of every export with Keras: each format run through the one model runner
(:mod:`ctxenc_tf.inference.runner`) on the same real images, differences tabulated."""

import os

import numpy as np

from ctxenc_tf.inference.runner import KerasRunner, load_runner
from ctxenc_tf.model import metrics
from ctxenc_tf.model.context_encoder import ContextEncoder


def compare(reference: dict, got: dict, images: np.ndarray, hole: np.ndarray) -> dict:
    """Pixel differences of ``got`` vs ``reference`` (dicts of ``completed`` and
    ``prediction`` in ``[0, 1]``), measured on ``prediction``: ``max_abs``, ``mean_abs``,
    ``psnr`` (dB, mean over images, capped at 100), plus ``completed_max_abs``; and
    ``outside_max_abs``, the largest change ``got["completed"]`` makes to ``images``
    (``[N, S, S, 3]``) outside ``hole`` (``[N, S, S, 1]``, 1 = hole): 0 when the context
    is kept exactly."""
    ref, out = reference["prediction"], got["prediction"]
    diff = np.abs(out.astype(np.float64) - ref)
    region = np.ones(ref.shape[:3] + (1,), np.float32)
    psnr = metrics.masked_psnr(out * 2.0 - 1.0, ref * 2.0 - 1.0, region)
    outside = np.broadcast_to(np.asarray(hole) == 0, images.shape)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
            "psnr": float(np.mean(psnr)),
            "completed_max_abs": float(np.abs(got["completed"] - reference["completed"]).max()),
            "outside_max_abs": float(np.abs(got["completed"][outside] - images[outside]).max())}


def path_size(path: str) -> int:
    """Bytes of a file, or of every file below a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(path) for n in names)


def measure_parity(model: ContextEncoder, exported: dict, images: np.ndarray) -> list:
    """Run each export in ``exported`` (``{name: path}``; ``"saved_model"`` or a TFLite
    variant) on ``images`` (``[N, S, S, 3]`` float32 in ``[0, 1]``, centre hole) and
    compare with Keras. Returns rows ``{"name", "path", "bytes", **compare(...)}``, the
    first for Keras itself."""
    keras_runner = KerasRunner(model)
    hole = keras_runner.centre_masks(len(images))
    reference = dict(zip(("completed", "prediction"), keras_runner.inpaint(images, hole)))
    rows = [{"name": "keras", "path": keras_runner.path, "bytes": 0, **compare(reference, reference, images, hole)}]
    for name, path in exported.items():
        got = dict(zip(("completed", "prediction"), load_runner(path).inpaint(images, hole)))
        rows.append({"name": name, "path": path, "bytes": path_size(path),
                     **compare(reference, got, images, hole)})
    return rows


def format_table(rows: list, image_count: int) -> str:
    """Markdown table of :func:`measure_parity` rows (sizes in MB, differences in [0, 1] pixels)."""
    lines = [f"parity vs Keras on {image_count} real images (predicted region, pixels in [0, 1]; "
             "PSNR capped at 100 dB; last column: largest change to the input outside the hole, "
             "0 = context kept exactly):",
             "| export | size (MB) | max abs diff | mean abs diff | PSNR vs Keras (dB) | outside the hole |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        size = f"{r['bytes'] / 1e6:.2f}" if r["bytes"] else "-"
        lines.append(f"| {r['name']} | {size} | {r['max_abs']:.2e} | "
                     f"{r['mean_abs']:.2e} | {r['psnr']:.1f} | {r['outside_max_abs']:.0e} |")
    return "\n".join(lines)
