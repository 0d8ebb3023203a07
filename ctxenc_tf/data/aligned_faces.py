"""Aligned faces from ordinary photos (``train.py --data-dir PHOTOS --prepare DIR
--align-faces``): every face found in a folder of photos, cut out as CelebA's
``img_align_celeba`` crops are, so that ``train.py --data-dir DIR`` trains on it as on CelebA.

Layout of an aligned directory (written to a temporary directory, then renamed)::

    DIR/<stem>_<k>.jpg    face k (1 = the largest kept) of PHOTOS/<stem>.<ext>: 178x218
                          RGB JPEG (quality 95), subfolders of PHOTOS kept
    DIR/faces.csv         one row per face: file, source photo, k, the detector's
                          confidence, the five landmarks in the source photo's pixels
                          (CelebA's names) and in the aligned frame
    DIR/aligned.json      what was aligned from where, the settings, the detector, and
                          the counts: photos read, photos without a face (listed),
                          unreadable files (with reasons), faces written, too small,
                          beyond ``--max-faces``

Only ``.jpg`` files are images to the folder pipeline (:func:`sources.list_image_folder`),
so the CSV and JSON never become training data.
"""

import csv
import importlib.metadata
import json
import os

import numpy as np
from PIL import Image, ImageOps

from ctxenc_tf import schemas
from ctxenc_tf.data import records, sources
from ctxenc_tf.data.screening import IMAGE_EXTENSIONS, screen_file
from ctxenc_tf.errors import DataError
from ctxenc_tf.faces.alignment import CELEBA_LANDMARKS, CELEBA_SIZE, Frame, apply
from ctxenc_tf.faces.detector import MIN_CONFIDENCE, MIN_FACE, FaceDetector, select_faces
from ctxenc_tf.utils import atomic
from ctxenc_tf.utils.output_dir import unique_stems

FORMAT = schemas.ALIGNED_FORMAT

METADATA = "aligned.json"

LANDMARKS_CSV = "faces.csv"

JPEG_QUALITY = 95

# The columns of CelebA's list_landmarks_align_celeba.txt, in CELEBA_LANDMARKS' order.
LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")

CSV_HEADER = (["file", "source", "face", "confidence"]
              + [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]
              + [f"aligned_{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"])


def read_rgb(path: str) -> np.ndarray:
    """``path`` decoded upright (EXIF orientation applied) as ``[H, W, 3]`` uint8 RGB, from
    any mode (alpha dropped, grayscale replicated, 16-bit grayscale scaled to 8 bits).
    Raises :class:`DataError` with the reason when the file is not a usable image."""
    reason = screen_file(path)
    if reason:
        raise DataError(reason)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I;16"):
                # convert("RGB") would clip 16-bit values at 255: a white picture
                gray = np.rint(np.asarray(img, np.float64) / 257.0).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image ({str(e) or type(e).__name__})") from None


def _earlier_alignment(directory: str):
    """The ``aligned.json`` dict of an alignment into ``directory``, checked against its
    schema (:func:`ctxenc_tf.schemas.read_aligned`, which raises :class:`DataError` naming
    the field); ``None`` when ``directory`` holds none."""
    path = os.path.join(directory, METADATA)
    return schemas.read_aligned(path) if os.path.isfile(path) else None


def summary(meta: dict, out_dir: str) -> str:
    """The one line that reports an alignment's counts."""
    beyond = meta["faces_beyond_max"]
    return (f"aligned {meta['faces']} faces from {meta['photos_read']} photos into {out_dir} "
            f"({len(meta['without_face'])} photos without a face, {len(meta['unreadable'])} unreadable, "
            f"{meta['faces_too_small']} faces too small"
            + (f", {beyond} beyond --max-faces" if beyond else "") + ")")


def _photos(source: str, out_dir: str, exclude: str) -> list:
    """``(path, output stem)`` of every photo below ``source`` not matching ``exclude``;
    raises :class:`DataError` for a missing or empty source, or an ``out_dir`` inside it."""
    if not os.path.isdir(source):
        why = "not a directory" if os.path.exists(source) else "data directory does not exist"
        raise DataError(f"{source}: {why}")
    if os.path.commonpath([os.path.realpath(source), os.path.realpath(out_dir)]) == os.path.realpath(source):
        # its faces would become photos of the next alignment, and training data of PHOTOS
        raise DataError(f"{out_dir}: inside the photo folder {source}; choose a --prepare folder outside it")
    files = [p for p in sources.list_image_folder(source) if not sources.matches(p, exclude)]
    if not files:
        raise DataError(f"{source}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return list(zip(files, unique_stems([os.path.splitext(os.path.relpath(p, source))[0] for p in files])))


def _write_face(path: str, rgb: np.ndarray, face) -> list:
    """Write ``face`` (a :class:`~ctxenc_tf.faces.detector.Face`) of the photo ``rgb``
    (``[H, W, 3]`` uint8) aligned to ``path``, a 178x218 JPEG; returns the CSV columns
    from ``confidence`` on: the confidence, the ten landmark coordinates in the photo's
    pixels, then the same ten in the aligned frame's."""
    frame = Frame.celeba(face.landmarks)
    pixels = np.clip(np.rint(frame.to_frame(rgb)), 0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, quality=JPEG_QUALITY)
    return ([f"{face.confidence:.4f}"] + [f"{v:.2f}" for v in face.landmarks.ravel()]
            + [f"{v:.2f}" for v in apply(frame.matrix, face.landmarks).ravel()])


def align_faces(source: str, out_dir: str, max_faces: int | None = None, min_face: float = MIN_FACE,
                face_confidence: float = MIN_CONFIDENCE, exclude: str = "", log=print, progress=iter,
                detector=None) -> dict:
    """Find the faces in every photo below ``source`` (searched recursively; the bundled
    faces when empty; files matching the comma-separated ``exclude`` patterns left out)
    with a :class:`~ctxenc_tf.faces.detector.FaceDetector` of ``face_confidence`` (``detector``,
    when one is already loaded), keep those :func:`~ctxenc_tf.faces.detector.select_faces`
    keeps for ``max_faces`` and ``min_face``, and write each one as a 178x218 aligned JPEG
    into ``out_dir``, with ``faces.csv`` and ``aligned.json`` (the module docstring has the
    layout).

    ``out_dir`` is written as a temporary directory renamed when complete: it is either
    absent or whole. An ``out_dir`` aligned before from the same source with the same
    settings is left alone (no detector is loaded for that). ``log`` takes one line at a
    time (unreadable files as they come, the summary); ``progress`` wraps the list of
    photos (e.g. a tqdm bar). Returns the ``aligned.json`` dict. Raises
    :class:`DataError` if ``out_dir`` holds anything else or no face is found at all.
    """
    source = os.path.abspath(records.source_folder(source or sources.BUNDLED_FACES))
    settings = {"max_faces": max_faces, "min_face": min_face, "face_confidence": face_confidence,
                "exclude": exclude}
    existing = _earlier_alignment(out_dir)
    if existing is not None:
        if existing["source"] != source:
            raise DataError(f"{out_dir}: already holds faces aligned from {existing['source']}; "
                            "choose another --prepare directory")
        changed = [f"--{k.replace('_', '-')} {existing['settings'].get(k)} (not {v})"
                   for k, v in settings.items() if existing["settings"].get(k) != v]
        if changed:
            raise DataError(f"{out_dir}: aligned with {', '.join(changed)}; choose another --prepare directory")
        log(f"{out_dir}: already aligned ({existing['faces']} faces from {existing['photos_read']} photos "
            f"of {source}), nothing to do")
        return existing
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise DataError(f"{out_dir}: exists and is not an empty directory; --prepare needs a new one")
    photos = _photos(source, out_dir, exclude)
    detector = detector or FaceDetector(face_confidence)
    if detector.min_confidence != face_confidence:
        raise ValueError(f"the detector's min_confidence {detector.min_confidence} is not {face_confidence}")
    log(f"aligning the faces in {len(photos)} image files of {source} into {out_dir}")
    meta = {"format": FORMAT, "source": source, "settings": settings,
            "detector": {"name": "MTCNN", "package": f"mtcnn {importlib.metadata.version('mtcnn')}",
                         "detection_side": detector.detection_side},
            "frame": {"size": list(CELEBA_SIZE), "landmarks": CELEBA_LANDMARKS.tolist()},
            "photos_read": 0, "faces": 0, "faces_too_small": 0, "faces_beyond_max": 0,
            "without_face": [], "unreadable": []}
    rows = []
    if os.path.isdir(out_dir):
        os.rmdir(out_dir)  # empty: atomic_directory renames the finished directory onto it
    with atomic.atomic_directory(out_dir) as tmp:
        for path, stem in progress(photos):
            relative = os.path.relpath(path, source)
            try:
                rgb = read_rgb(path)
            except DataError as e:
                meta["unreadable"].append([relative, str(e)])
                log(f"skipped {path}: {e}")
                continue
            meta["photos_read"] += 1
            found = detector.detect(rgb)
            kept, _ = select_faces(found, max_faces, min_face)
            too_small = sum(face.size < min_face for face in found)
            meta["faces_too_small"] += too_small
            meta["faces_beyond_max"] += len(found) - too_small - len(kept)
            if not found:
                meta["without_face"].append(relative)
            for k, face in enumerate(kept, 1):  # 1 = the largest, as inpaint and the app count
                name = f"{stem}_{k}.jpg"
                rows.append([name, relative, k] + _write_face(os.path.join(tmp, name), rgb, face))
        meta["faces"] = len(rows)
        if not rows:
            raise DataError(f"{source}: no face found in {meta['photos_read']} readable photos "
                            f"({len(meta['unreadable'])} unreadable, {meta['faces_too_small']} faces "
                            "too small); nothing written")
        with open(os.path.join(tmp, LANDMARKS_CSV), "w", newline="") as f:
            csv.writer(f).writerows([CSV_HEADER] + rows)
        with open(os.path.join(tmp, METADATA), "w") as f:
            json.dump(meta, f, indent=1)
    log(summary(meta, out_dir))
    return meta
