"""TF Serving warm-up records: ``assets.extra/tf_serving_warmup_requests`` in each
SavedModel version, the ``PredictionLog`` TFRecord file TF Serving replays when it loads
a version, before it marks the version available. Without it the first requests after
every load pay for building each signature's graph and the kernels of each batch shape.
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import hole_masks
from ctxenc_tf.inference.photos import encode_png
from ctxenc_tf.inference.serving_client import tensor_proto

WARMUP_FILE = "tf_serving_warmup_requests"

# The batch shapes TF Serving's batcher forms: ``allowed_batch_sizes`` in
# serving/batching_parameters.txt (a test keeps the two equal). Each is warmed once.
BATCH_SIZES = (1, 2, 4, 8, 12, 16, 24, 32)


def _log(signature_name: str, inputs: dict) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def warmup_logs(images: np.ndarray, config: ModelConfig) -> list:
    """The warm-up requests for the four signatures of
    :class:`~ctxenc_tf.export.saved_model.InpaintingModule`, from real ``images``
    ``[N, S, S, 3]`` float32 in ``[0, 1]`` (N >= 1; reused in turn where more are needed).

    Each signature gets a request of one image (``inpaint`` with the centre hole);
    ``serving_bytes``, the one clients use by default, also one of every size in
    :data:`BATCH_SIZES`, PNG-encoded. Returns ``PredictionLog`` protos in replay order.
    """
    images = np.asarray(images, np.float32)
    as_uint8 = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    hole = hole_masks.center_mask(config.image_size, config.hole_size).numpy()[None].astype(np.float32)
    logs = [
        _log("serving_default", {"images": images[:1]}),
        _log("serving_uint8", {"images": as_uint8[:1]}),
        _log("inpaint", {"images": images[:1], "masks": hole}),
    ]
    for size in BATCH_SIZES:
        pngs = np.array([encode_png(as_uint8[i % len(as_uint8)]) for i in range(size)], dtype=object)
        logs.append(_log("serving_bytes", {"image_bytes": pngs}))
    return logs


def write_warmup(version_dir: str, images: np.ndarray, config: ModelConfig) -> str:
    """Write :func:`warmup_logs` to ``version_dir/assets.extra/``; returns the file's path."""
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    path = os.path.join(extra, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_logs(images, config):
            writer.write(log.SerializeToString())
    return path

