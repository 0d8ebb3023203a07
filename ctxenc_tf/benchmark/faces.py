"""What the face path costs on a photo: detection, alignment (the faces' frames, warped
from the full-resolution photo) and the fill (the model and the warp back), each timed
on its own, side by side, for photos of 1 and 12 megapixels with one face and 12
megapixels with three. Reading and writing the photo are left out (writing a 12-megapixel
PNG alone takes about 2 s)."""

import statistics

import cv2
import numpy as np
from PIL import Image

from ctxenc_tf.benchmark.timing import Table, timed
from ctxenc_tf.data import sources
from ctxenc_tf.faces import alignment
from ctxenc_tf.faces.detector import FaceDetector
from ctxenc_tf.inference.face_jobs import plan_faces
from ctxenc_tf.inference.inpaint import fill_jobs
from ctxenc_tf.inference.photos import Photo

# (width, height, faces): each face a bundled crop at a third of the photo's height
PHOTOS = ((1152, 864, 1), (4000, 3000, 1), (4000, 3000, 3))


def face_photo(width: int, height: int, faces: int) -> np.ndarray:
    """``[height, width, 3]`` uint8: a grey gradient with ``faces`` bundled face crops in a
    row, each a third of the photo high and turned by a few degrees."""
    ramp = np.linspace(60, 180, width, dtype=np.float32)
    photo = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2).astype(np.uint8)
    crops = sources.list_image_folder(sources.BUNDLED_FACES)
    width_frame, height_frame = alignment.CELEBA_SIZE
    scale = height / 3 / height_frame
    for k in range(faces):
        angle = np.deg2rad(8 * (k - 1))
        linear = scale * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        centre = np.array([(k + 0.5) * width / faces, height / 2])
        offset = centre - linear @ (np.array([width_frame, height_frame]) / 2)
        crop = np.asarray(Image.open(crops[(0, 130, 220)[k % 3]]).convert("RGB"))
        cv2.warpAffine(crop, np.concatenate([linear, offset[:, None]], axis=1),
                       (width, height), dst=photo, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    return photo


def face_rows(table: Table, runner, repeats: int) -> None:
    """One row per photo of :data:`PHOTOS`: median milliseconds of detection, alignment
    and fill over ``repeats`` calls (after one warm-up), per megapixel and per face."""
    detector = FaceDetector()
    for width, height, count in PHOTOS:
        photo = Photo(face_photo(width, height, count), None, "RGB")
        megapixels = width * height / 1e6
        faces = detector.detect(photo.rgb)
        if len(faces) != count:
            table.add("faces", f"{megapixels:.0f} MP, {count} face(s)", f"found {len(faces)} face(s): not timed")
            continue

        def align():
            return plan_faces(photo, faces, runner.config)[0]

        jobs = align()
        steps = {"detect": lambda: detector.detect(photo.rgb), "align": align,
                 "fill": lambda: fill_jobs(runner, [jobs])}
        ms = {}
        for name, step in steps.items():
            step()
            ms[name] = 1000 * statistics.median(timed(step) for _ in range(repeats))
        total = sum(ms.values())
        table.add("faces", f"{width}x{height} ({megapixels:.1f} MP), {count} face(s): detect + align + fill",
                  f"{total:.0f} ms ({ms['detect']:.0f} + {ms['align']:.0f} + {ms['fill']:.0f})",
                  f"detection {ms['detect'] / megapixels:.0f} ms/MP, alignment {ms['align'] / count:.1f} ms/face, "
                  f"fill {ms['fill'] / count:.0f} ms/face", values={**{f"{k}_ms": v for k, v in ms.items()},
                                                                    "megapixels": megapixels, "faces": count})
