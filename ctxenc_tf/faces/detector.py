"""Finding faces: MTCNN (Zhang et al. 2016, the ``mtcnn`` package, whose wheel carries its
weights: nothing is downloaded) gives each face a box, a confidence and CelebA's five
landmarks. docs/faces.md compares it with the other detectors measured for this.

Detection runs on a copy of the photo reduced to at most :data:`DETECTION_SIDE` pixels
on its longer side: it finds the same faces as at full size (MTCNN's smallest face is
20 pixels of that copy) at a fraction of the cost, and the landmarks are scaled back to
the photo's own pixels.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from ctxenc_tf.errors import ConfigError

DETECTION_SIDE = 1024

# MTCNN scores real faces 0.98-1.0 and its false faces (hands, patterns) about 0.8.
MIN_CONFIDENCE = 0.95

MIN_FACE = 32  # pixels of box side: below it the model would see the face upsampled over 1.7x


@dataclass(frozen=True)
class Face:
    """One detected face in photo pixel coordinates: ``box`` ``(x0, y0, x1, y1)``,
    ``confidence`` in ``[0, 1]``, ``landmarks`` ``[5, 2]`` (x, y): left eye, right eye, nose
    tip, left and right mouth corner (left = the image's left, as in CelebA)."""

    box: tuple
    confidence: float
    landmarks: np.ndarray

    @property
    def size(self) -> float:
        """The box's shorter side in pixels."""
        x0, y0, x1, y1 = self.box
        return float(min(x1 - x0, y1 - y0))

    @property
    def centre(self) -> tuple:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


class FaceDetector:
    """MTCNN over a reduced copy of each photo. ``min_confidence`` drops weaker
    detections (false faces score lower); faces come largest first."""

    def __init__(self, min_confidence: float = MIN_CONFIDENCE, detection_side: int = DETECTION_SIDE):
        try:
            from mtcnn import MTCNN  # imports TensorFlow: only when faces are wanted
        except ImportError as e:
            raise ConfigError("finding faces needs the mtcnn package: pip install -r requirements.txt") from e
        self.min_confidence = min_confidence
        self.detection_side = detection_side
        self._mtcnn = MTCNN()

    def detect(self, rgb: np.ndarray) -> list:
        """Faces in ``rgb`` ``[H, W, 3]`` uint8, largest first, as :class:`Face` objects."""
        h, w = rgb.shape[:2]
        factor = min(1.0, self.detection_side / max(h, w))
        small = rgb if factor == 1.0 else cv2.resize(
            rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) < 12:  # below MTCNN's smallest window
            return []
        rows = self._mtcnn.detect_faces(np.ascontiguousarray(small), box_format="xyxy", output_type="numpy")
        # rows: [image, x0, y0, x1, y1, confidence, 5 x's, 5 y's] in the reduced copy's pixels
        sx, sy = w / small.shape[1], h / small.shape[0]
        faces = []
        for row in np.asarray(rows, np.float64).reshape(-1, 16):
            if row[5] < self.min_confidence:
                continue
            box = (row[1] * sx, row[2] * sy, row[3] * sx, row[4] * sy)
            # pixel centres: reduced pixel q covers photo pixels around (q + 0.5) * step - 0.5
            landmarks = (row[6:16].reshape(2, 5).T + 0.5) * (sx, sy) - 0.5
            faces.append(Face(box, float(row[5]), landmarks))
        return sorted(faces, key=lambda f: -f.size)


def select_faces(faces, max_faces: int | None = None, min_face: float = MIN_FACE) -> tuple:
    """``(kept, notes)``: the faces (largest first) at least ``min_face`` pixels on their
    box's shorter side, at most ``max_faces`` of them, and one line for each face left out."""
    kept, notes = [], []
    for face in faces:
        x, y = (round(v) for v in face.centre)
        if face.size < min_face:
            notes.append(f"face at ({x}, {y}) is {face.size:.0f} px, below --min-face {min_face:g}: "
                         "too small to fill")
        elif max_faces is not None and len(kept) >= max_faces:
            notes.append(f"face at ({x}, {y}) is beyond --max-faces {max_faces}")
        else:
            kept.append(face)
    return kept, notes
