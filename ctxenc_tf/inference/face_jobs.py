"""Faces in a photo as model inputs, and their fills put back: each face is warped into
the model's square as CelebA's aligned crops are framed (:mod:`ctxenc_tf.faces.alignment`),
filled there, and the fill warped back by the inverse transform and blended into the
photo at full resolution. Every pixel outside the holes' footprints keeps its exact value.

``inpaint --faces``, ``evaluate --faces``, the app's face mode and ``--align-faces``
data preparation all choose faces with :func:`~ctxenc_tf.faces.detector.select_faces`.
"""

from dataclasses import dataclass

import numpy as np

from ctxenc_tf.config import ModelConfig
from ctxenc_tf.data import hole_masks
from ctxenc_tf.faces.alignment import Frame, apply, invert
from ctxenc_tf.faces.detector import MIN_FACE, Face, select_faces
from ctxenc_tf.inference.photos import Photo, PhotoError, blend_into, bounds, centre_window, model_output


@dataclass
class FaceJob:
    """One face prepared for the model: its ``frame`` (photo -> model square), the
    photo-space ``hole`` ``[H, W]`` bool this job may write (its footprint), and the model
    inputs ``image`` ``[S, S, 3]`` float32 in ``[0, 1]`` and ``mask`` ``[S, S, 1]`` float32
    in ``{0, 1}``."""

    photo: Photo
    face: Face
    frame: Frame
    hole: np.ndarray
    image: np.ndarray
    mask: np.ndarray

    def blend(self, out: np.ndarray, completed: np.ndarray, prediction: np.ndarray, config: ModelConfig) -> None:
        """Warp this face's fill (``completed`` ``[S, S, 3]``, ``prediction`` ``[O, O, 3]``,
        in ``[0, 1]``) back into ``out`` (``[H, W, 3]`` uint8, changed in place), inside
        ``self.hole`` only."""
        full, alpha = model_output(self.mask, completed, prediction, config)
        box = bounds(self.hole)
        y0, y1, x0, x1 = box
        blend_into(out, box, self.hole[y0:y1, x0:x1],
                   self.frame.to_photo(full * 255.0, box), self.frame.to_photo(alpha, box))


def _inside_frame(frame: Frame, box) -> np.ndarray:
    """``[h, w]`` bool over photo ``box``: pixels whose bilinear sample lies wholly inside
    ``frame`` (so its fill has no border sample)."""
    ones = np.ones((frame.height, frame.width, 1), np.float32)
    return frame.to_photo(ones, box)[..., 0] >= 1.0


def face_job(photo: Photo, face: Face, config: ModelConfig, hole: np.ndarray | None = None,
             claimed: np.ndarray | None = None) -> FaceJob | None:
    """The model input of ``face``: its centre hole (``hole`` ``None``), or the part of the
    user's photo-space ``hole`` ``[H, W]`` bool its frame sees, less the ``claimed`` pixels an
    earlier face fills. ``None`` when the face's frame holds none of ``hole``. Raises
    :class:`PhotoError` when a drawn hole is larger than the square the model fills."""
    s = config.image_size
    shape = photo.rgb.shape[:2]
    frame = Frame.for_face(face.landmarks, s)
    footprint = np.zeros(shape, bool)
    if hole is None:
        mask = hole_masks.center_mask(s, config.hole_size).numpy()
        a, b = config.hole_offset, config.hole_offset + config.hole_size
        box = frame.footprint_box(shape, (a, b, a, b))
        if box is None:
            return None
        y0, y1, x0, x1 = box
        footprint[y0:y1, x0:x1] = frame.to_photo(mask, box)[..., 0] > 0
    else:
        frame_hole = frame.mask_to_frame(hole)
        box = frame.footprint_box(shape)
        if not frame_hole.any() or box is None:
            return None
        y0, y1, x0, x1 = box
        footprint[y0:y1, x0:x1] = hole[y0:y1, x0:x1] & _inside_frame(frame, box)
        if claimed is not None:
            footprint &= ~claimed
        mask = frame_hole[..., None].astype(np.float32)
    if not footprint.any():
        return None
    if hole is not None and not config.predicts_full_image:  # the model fills one hole_size square
        fy0, fy1, fx0, fx1 = bounds(frame_hole)
        if max(fy1 - fy0, fx1 - fx0) > config.hole_size:
            raise PhotoError(f"the hole is {fx1 - fx0}x{fy1 - fy0} pixels in the frame of the face at "
                             f"({round(face.centre[0])}, {round(face.centre[1])}), more than the "
                             f"{config.hole_size}x{config.hole_size} square the model fills")
    return FaceJob(photo, face, frame, footprint, face_image(photo.rgb, frame), mask.astype(np.float32))


def face_image(rgb: np.ndarray, frame: Frame) -> np.ndarray:
    """The model's input of one face: ``rgb`` ``[H, W, 3]`` uint8 seen through ``frame``,
    ``[S, S, 3]`` float32 in ``[0, 1]``."""
    return np.clip(frame.to_frame(rgb) / 255.0, 0.0, 1.0).astype(np.float32)


def plan_faces(photo: Photo, faces, config: ModelConfig, hole: np.ndarray | None = None,
               max_faces: int | None = None, min_face: float = MIN_FACE) -> tuple:
    """``(jobs, notes)`` for a photo's detected ``faces``: one :class:`FaceJob` per usable
    face (largest first; see :func:`~ctxenc_tf.faces.detector.select_faces`), and one line per face left out. With a
    drawn ``hole``, each hole pixel is filled by the largest face whose frame holds it;
    pixels in no face's frame are left as they are (a note says how many). Raises
    :class:`PhotoError` when no face is found or none is usable."""
    if not faces:
        raise PhotoError("no face found; without --faces the model fills the photo's centre")
    kept, notes = select_faces(faces, max_faces, min_face)
    jobs, claimed = [], np.zeros(photo.rgb.shape[:2], bool)
    for face in kept:
        job = face_job(photo, face, config, hole, claimed)
        if job is not None:
            jobs.append(job)
            claimed |= job.hole
    if not jobs:
        if hole is None:
            raise PhotoError(f"no usable face ({'; '.join(notes) or 'every face lies outside the photo'})")
        raise PhotoError("no usable face's frame holds the hole" + (f" ({'; '.join(notes)})" if notes else ""))
    if hole is not None and (hole & ~claimed).any():
        notes.append(f"{int((hole & ~claimed).sum())} hole pixel(s) lie in no face's frame and "
                     "were left as they are")
    return jobs, notes


def centre_hole_misses(shape, faces, config: ModelConfig) -> str | None:
    """Why the model's centre hole of a photo of ``shape`` ``(H, W)`` would miss its
    largest face, or ``None`` when it falls where the face's own hole would (its centre
    inside the centre hole, its side within a factor of two), or there is no face."""
    if not faces:
        return None
    face = faces[0]
    top, left, side = centre_window(shape)
    hole_side = side * config.hole_size / config.image_size
    frame = Frame.for_face(face.landmarks, config.image_size)
    middle = (config.image_size - 1) / 2.0
    (fx, fy), = apply(invert(frame.matrix), [[middle, middle]])
    face_side = config.hole_size / frame.scale
    cx, cy = left + (side - 1) / 2.0, top + (side - 1) / 2.0
    if max(abs(fx - cx), abs(fy - cy)) > hole_side / 2 or not 0.5 <= face_side / hole_side <= 2.0:
        return (f"the centre hole misses the face at ({round(face.centre[0])}, {round(face.centre[1])}) "
                f"(its hole would be {face_side:.0f} px at ({fx:.0f}, {fy:.0f}), the centre hole is "
                f"{hole_side:.0f} px at ({cx:.0f}, {cy:.0f}))")
    return None
