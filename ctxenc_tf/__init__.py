"""ctxenc-tf: Context Encoders (Pathak et al., CVPR 2016) for image inpainting in TensorFlow/Keras 3."""

import os
import sys

__version__ = "0.1.0"


def _import_tensorflow_quietly():
    """Import TensorFlow with the C++ start-up chatter (absl pre-init lines, CUDA probing on
    machines without a GPU) kept off stderr, so our one-line errors stay readable.
    Python exceptions from the import still propagate."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()
