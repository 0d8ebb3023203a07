"""Classical hole filling to compare the context encoder against.

Each baseline sees what the network sees: the image with the hidden region (the hole
eroded by the overlap, :func:`ctxenc_tf.model.masks.hidden_region`) removed, and fills that
region only. Images are NHWC float32 in ``[0, 1]``; ``hidden`` is ``[N, H, W, 1]`` in
``{0, 1}`` (1 = unknown). Pixels outside ``hidden`` are returned unchanged.

* ``mean``: every hidden pixel takes the image's mean colour over its known pixels.
* ``telea``: OpenCV's fast-marching diffusion inpainting (Telea 2004). OpenCV
  (``opencv-python-headless``) is needed for this baseline only and imported lazily.
"""

import numpy as np

TELEA_RADIUS = 3  # pixels; OpenCV's documented example value
OPENCV_HINT = "pip install opencv-python-headless"


def mean_fill(images, hidden) -> np.ndarray:
    """Fill ``hidden`` with each image's mean known colour. Returns ``[N, H, W, 3]`` float32
    in ``[0, 1]``."""
    images = np.asarray(images, np.float32)
    hidden = np.asarray(hidden, np.float32)
    known = 1.0 - hidden
    mean = (images * known).sum(axis=(1, 2)) / np.maximum(known.sum(axis=(1, 2)), 1.0)
    return images * known + mean[:, None, None, :] * hidden


def require_opencv():
    """Import and return ``cv2``; ``ImportError`` with the install command if missing."""
    try:
        import cv2
    except ImportError as e:
        raise ImportError(f"the Telea baseline needs OpenCV ({OPENCV_HINT}), "
                          "or leave it out with --baselines mean") from e
    return cv2


def telea_fill(images, hidden, radius: int = TELEA_RADIUS) -> np.ndarray:
    """Fill ``hidden`` with ``cv2.inpaint(..., cv2.INPAINT_TELEA)`` on the 8-bit image.
    Returns ``[N, H, W, 3]`` float32 in ``[0, 1]``; known pixels keep their float values."""
    cv2 = require_opencv()
    images = np.asarray(images, np.float32)
    hidden = np.asarray(hidden, np.float32)
    filled = np.empty_like(images)
    for i, (image, region) in enumerate(zip(images, hidden)):
        image8 = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        mask8 = (region[..., 0] > 0.5).astype(np.uint8)
        filled[i] = cv2.inpaint(image8, mask8, radius, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    return images * (1.0 - hidden) + filled * hidden


BASELINES = {"mean": mean_fill, "telea": telea_fill}
