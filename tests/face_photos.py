"""Unaligned photos made from the bundled aligned faces with known similarity transforms,
for the face tests and for docs/faces.md's detector comparison: each face is rotated,
scaled and moved onto a larger canvas whose background is another bundled image, blurred
and stretched so that it holds no face."""

import glob
import os

import cv2
import numpy as np
from PIL import Image

from ctxenc_tf.faces import alignment

FACES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ctxenc_tf", "assets", "faces")


def face_files() -> list:
    return sorted(glob.glob(os.path.join(FACES, "*.jpg")))


def load(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def similarity(angle_deg: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """The ``[2, 3]`` map: rotate by ``angle_deg`` (counter-clockwise on screen) and scale
    about the 178x218 frame's centre, then put that centre at ``(dx, dy)``."""
    a = np.deg2rad(angle_deg)
    linear = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    centre = np.array(alignment.CELEBA_SIZE, np.float64) / 2 - 0.5
    return np.concatenate([linear, (np.array([dx, dy]) - linear @ centre)[:, None]], axis=1)


def background(shape, seed: int) -> np.ndarray:
    """``[H, W, 3]`` uint8: a bundled image blurred far past recognition and stretched."""
    files = face_files()
    source = load(files[seed % len(files)])
    blurred = cv2.GaussianBlur(source, (0, 0), 12)
    return cv2.resize(blurred, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def paste(canvas: np.ndarray, face: np.ndarray, matrix) -> np.ndarray:
    """``face`` (``[218, 178, 3]`` uint8) drawn on ``canvas`` by ``matrix`` (178x218 frame ->
    canvas pixels), its edge feathered over 6 frame pixels so that no seam looks like an
    edge of a face."""
    h, w = canvas.shape[:2]
    fh, fw = face.shape[:2]
    yy, xx = np.mgrid[0:fh, 0:fw]
    edge = np.minimum.reduce([xx + 1, yy + 1, fw - xx, fh - yy]).astype(np.float32)
    alpha = np.clip(edge / 6.0, 0, 1)
    flags = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    warped = cv2.warpAffine(face.astype(np.float32), np.asarray(matrix, np.float64), (w, h), **flags)
    weight = cv2.warpAffine(alpha, np.asarray(matrix, np.float64), (w, h), **flags)[..., None]
    return np.clip(np.rint(canvas * (1 - weight) + warped * weight), 0, 255).astype(np.uint8)


def unaligned_photo(face_index: int, angle_deg: float, scale: float, canvas=(720, 960),
                    centre=None, seed: int = 0):
    """One bundled face on a ``canvas`` ``(H, W)`` photo: ``(photo [H, W, 3] uint8,
    matrix [2, 3] from the face's 178x218 frame to the photo)``."""
    h, w = canvas
    cx, cy = centre if centre is not None else (w / 2, h / 2)
    matrix = similarity(angle_deg, scale, cx, cy)
    files = face_files()
    photo = paste(background(canvas, seed + 101), load(files[face_index % len(files)]), matrix)
    return photo, matrix


def template_residual(recovered, matrix) -> np.ndarray:
    """Per landmark, in 178x218 pixels: how far the recovered alignment (photo -> frame)
    puts CelebA's template points of the source crop from where they belong, i.e.
    ``|recovered(matrix(t)) - t|`` for each template point ``t``. Zero for a perfect
    detector on a perfectly aligned source crop; the bundled crops are aligned by eye
    positions only, so a few pixels of it are theirs."""
    template = alignment.CELEBA_LANDMARKS
    mapped = alignment.apply(alignment.compose(recovered, matrix), template)
    return np.linalg.norm(mapped - template, axis=1)
