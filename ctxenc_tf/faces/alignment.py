"""The one place that maps a photo to a face's aligned frame and back, for pixels and
for masks.

CelebA's ``img_align_celeba`` crops are 178x218 with five landmarks at nearly fixed
places. :data:`CELEBA_LANDMARKS` are the means of ``list_landmarks_align_celeba.txt``
(rounded to pixels; the same numbers head the CelebA alignment scripts of ALAE,
Pidhorskyi et al., CVPR 2020, ``dataset_preparation/``). A face is aligned by the
least-squares similarity transform (rotation, uniform scale, translation; Umeyama 1991)
that takes its five detected landmarks onto them; the model's square crop of that frame
follows, as :func:`ctxenc_tf.data.pipeline.square_resize` takes it from a 178x218 file.

Pixels the frame needs beyond the photo's border are mirrored from inside it
(:data:`BORDER_RULE`, OpenCV's ``BORDER_REFLECT_101``: ``dcb|abcd|cba``), so that a face
cut by the border gets plausible context rather than a flat colour the model never saw.
"""

from dataclasses import dataclass

import cv2
import numpy as np

# (x, y) in the 178x218 frame: left eye, right eye, nose tip, left and right mouth corner
# ("left" is the image's left, as in CelebA's file).
CELEBA_LANDMARKS = np.array([[69, 111], [108, 111], [88, 136], [72, 152], [105, 152]], np.float64)

CELEBA_SIZE = (178, 218)  # (width, height) of img_align_celeba

BORDER_RULE = cv2.BORDER_REFLECT_101


def similarity_transform(source, target) -> np.ndarray:
    """The least-squares similarity transform taking ``source`` points onto ``target``.

    ``source``, ``target``: ``[K, 2]`` (x, y), K >= 2, ``source`` not all one point.
    Returns the ``[2, 3]`` float64 matrix ``M`` minimising ``sum |M @ [s, 1] - t|^2`` over
    rotations (no reflection), uniform scales and translations (Umeyama 1991, closed form).
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    ms, mt = source.mean(axis=0), target.mean(axis=0)
    s, t = source - ms, target - mt
    variance = (s ** 2).sum()
    if variance == 0:
        raise ValueError("the source points are all one point")
    # With points as complex numbers the optimum is one complex factor a + bi.
    a = (s[:, 0] * t[:, 0] + s[:, 1] * t[:, 1]).sum() / variance
    b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum() / variance
    linear = np.array([[a, -b], [b, a]])
    return np.concatenate([linear, (mt - linear @ ms)[:, None]], axis=1)


def apply(matrix, points) -> np.ndarray:
    """``[K, 2]`` points mapped by a ``[2, 3]`` affine ``matrix``."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def invert(matrix) -> np.ndarray:
    """The inverse of a ``[2, 3]`` affine ``matrix``."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def compose(outer, inner) -> np.ndarray:
    """The ``[2, 3]`` affine map ``outer(inner(p))``."""
    outer, inner = np.asarray(outer, np.float64), np.asarray(inner, np.float64)
    return np.concatenate([outer[:, :2] @ inner[:, :2],
                           (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], axis=1)


def celeba_alignment(landmarks) -> np.ndarray:
    """Photo -> 178x218 aligned frame: the ``[2, 3]`` similarity taking ``landmarks``
    (``[5, 2]`` in :data:`CELEBA_LANDMARKS`' order) onto CelebA's mean positions."""
    return similarity_transform(landmarks, CELEBA_LANDMARKS)


def square_crop(image_size: int) -> np.ndarray:
    """178x218 frame -> the model's ``image_size`` square: the central 178x178 square
    (rows 20 to 197), scaled, as the training pipeline crops a 178x218 file."""
    width, height = CELEBA_SIZE
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    scale = image_size / side
    return np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])


def scale_of(matrix) -> float:
    """The uniform scale of a similarity ``[2, 3]`` ``matrix`` (output px per input px)."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


@dataclass(frozen=True)
class Frame:
    """A ``width`` x ``height`` frame placed on a photo by ``matrix``, the ``[2, 3]``
    similarity from photo pixel coordinates to frame pixel coordinates (pixel centres at
    integers, as OpenCV's ``warpAffine``)."""

    matrix: np.ndarray
    width: int
    height: int

    @classmethod
    def for_face(cls, landmarks, image_size: int) -> "Frame":
        """The model's ``image_size`` square of a face (``landmarks`` ``[5, 2]``) aligned as
        CelebA's crops are, then cropped as the training pipeline crops them."""
        return cls(compose(square_crop(image_size), celeba_alignment(landmarks)), image_size, image_size)

    @classmethod
    def celeba(cls, landmarks) -> "Frame":
        """The 178x218 frame of ``img_align_celeba`` for a face (``landmarks`` ``[5, 2]``)."""
        return cls(celeba_alignment(landmarks), *CELEBA_SIZE)

    @property
    def scale(self) -> float:
        return scale_of(self.matrix)

    def corners(self) -> np.ndarray:
        """The frame's four corners in photo coordinates, ``[4, 2]``."""
        x, y = self.width - 0.5, self.height - 0.5
        return apply(invert(self.matrix), [[-0.5, -0.5], [x, -0.5], [x, y], [-0.5, y]])

    def footprint_box(self, shape, frame_box=None) -> tuple | None:
        """The photo pixels ``(y0, y1, x0, x1)`` (ends exclusive, clipped to a photo of
        ``shape`` ``(H, W)``) whose centres the frame's box ``frame_box`` ``(y0, y1, x0,
        x1)`` (default: the whole frame) covers, with one pixel to spare for bilinear
        sampling; ``None`` when it misses the photo."""
        y0, y1, x0, x1 = frame_box or (0, self.height, 0, self.width)
        corners = apply(invert(self.matrix), [[x0 - 1, y0 - 1], [x1, y0 - 1], [x1, y1], [x0 - 1, y1]])
        h, w = shape
        left, top = np.floor(corners.min(axis=0)).astype(int)
        right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 1
        box = max(top, 0), min(bottom, h), max(left, 0), min(right, w)
        return box if box[0] < box[1] and box[2] < box[3] else None

    def to_frame(self, rgb: np.ndarray) -> np.ndarray:
        """The frame's pixels: ``[H, W, C]`` uint8 photo -> ``[height, width, C]`` float32 in
        ``[0, 255]``. A frame that shrinks the face is first reduced by area averaging
        (antialiased, as the training pipeline resizes), then sampled bilinearly; pixels
        beyond the photo follow :data:`BORDER_RULE`."""
        matrix, source = self.matrix, rgb
        shrink = self.scale
        if shrink < 1.0:
            # Reduce only the part of the photo the frame sees, with a margin the bilinear
            # sampling never crosses, so that a 12-megapixel photo costs what its face costs
            # and the border rule applies at the photo's own border alone.
            h, w = rgb.shape[:2]
            margin = int(np.ceil(2.0 / shrink))
            corners = self.corners()
            x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - margin, 0)
            x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + margin + 1, (w, h))
            size = (max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink)))
            source = cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
            # reduced pixel q -> photo pixel origin + (q + 0.5) * step - 0.5
            sx, sy = (x1 - x0) / size[0], (y1 - y0) / size[1]
            matrix = compose(self.matrix, [[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
        out = cv2.warpAffine(np.ascontiguousarray(source, np.float32), matrix, (self.width, self.height),
                             flags=cv2.INTER_LINEAR, borderMode=BORDER_RULE)
        return out.reshape(self.height, self.width, rgb.shape[2] if rgb.ndim == 3 else 1)

    def mask_to_frame(self, hole: np.ndarray) -> np.ndarray:
        """A photo-space ``[H, W]`` bool hole -> ``[height, width]`` bool: every frame pixel
        whose sample touches a hole pixel, however thin the hole and however much the frame
        shrinks the photo (nothing beyond the photo's border)."""
        hole = hole.astype(np.uint8)
        if self.scale < 1.0:
            # Frame samples lie 1/scale photo pixels apart and bilinear sampling touches only
            # the pixels next to each: grow the hole by half that spacing first, so that no
            # hole pixel falls between samples (the image itself is area-averaged, see to_frame).
            reach = int(np.ceil(0.5 / self.scale))
            hole = cv2.dilate(hole, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
        cover = cv2.warpAffine(hole.astype(np.float32), self.matrix, (self.width, self.height),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return cover > 0

    def to_photo(self, values: np.ndarray, box) -> np.ndarray:
        """Frame values ``[height, width, C]`` float32 sampled (bilinearly) at the photo pixels
        of ``box`` ``(y0, y1, x0, x1)``: ``[y1 - y0, x1 - x0, C]``, 0 beyond the frame."""
        y0, y1, x0, x1 = box
        to_box = compose([[1.0, 0.0, -x0], [0.0, 1.0, -y0]], invert(self.matrix))  # frame -> box
        out = cv2.warpAffine(np.ascontiguousarray(values, np.float32), to_box, (x1 - x0, y1 - y0),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out.reshape(y1 - y0, x1 - x0, values.shape[-1])
