"""Inpainting photos with a model runner: inputs collected, filled in batches, encoded
as lossless PNGs beside nothing of the user's. The inpaint command and the web app both
fill through :func:`fill_jobs` and :func:`filled_png`."""

import os

import numpy as np

from ctxenc_tf.data import screening, sources
from ctxenc_tf.errors import DataError
from ctxenc_tf.inference.photos import encode_png, to_pixels
from ctxenc_tf.utils.output_dir import unique_stems

OUTPUT_SUFFIXES = ("_filled.png", "_side_by_side.png")


def collect_inputs(paths, out_dir: str):
    """``(input, relative output stem)`` pairs for files and folders (searched recursively,
    skipping this command's earlier outputs inside ``out_dir``). Raises
    ``FileNotFoundError`` / :class:`DataError`."""
    out_real = os.path.realpath(out_dir)

    def earlier_output(f):
        return (os.path.realpath(f).startswith(out_real + os.sep)
                and f.endswith(OUTPUT_SUFFIXES))

    found = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(2, "no such file or directory", path)
        if os.path.isdir(path):
            files = [f for f in sources.list_image_folder(path) if not earlier_output(f)]
            if not files:
                raise DataError(f"{path}: no image files ({', '.join(screening.IMAGE_EXTENSIONS)})")
            found += [(f, os.path.splitext(os.path.relpath(f, path))[0]) for f in files]
        else:
            found.append((path, os.path.splitext(os.path.basename(path))[0]))
    return list(zip([path for path, _ in found], unique_stems([stem for _, stem in found])))


def fill_jobs(runner, photos_jobs) -> list:
    """Fill photos in one model call. ``photos_jobs``: for each photo the list of its jobs
    (one :func:`~ctxenc_tf.inference.photos.photo_job` job, or one
    :class:`~ctxenc_tf.inference.face_jobs.FaceJob` per face, largest first). Returns each
    photo's ``[H, W, 3]`` uint8 result, equal to it outside its jobs' holes; the jobs of one
    photo are blended in order, each over the result of the ones before."""
    jobs = [job for group in photos_jobs for job in group]
    completed, prediction = runner.inpaint(np.stack([j.image for j in jobs]),
                                           np.stack([j.mask for j in jobs]))
    outputs, results = iter(zip(completed, prediction)), []
    for group in photos_jobs:
        out = group[0].photo.rgb.copy()
        for job in group:
            job.blend(out, *next(outputs), runner.config)
        results.append(out)
    return results


def joint_hole(jobs) -> np.ndarray:
    """``[H, W]`` bool: every pixel one of a photo's ``jobs`` may change."""
    return np.logical_or.reduce([job.hole for job in jobs])


def filled_png(jobs, filled) -> bytes:
    """The PNG to write for a photo's ``jobs``: ``filled`` (from :func:`fill_jobs`) in the
    photo's own mode, alpha and colour profile."""
    photo = jobs[0].photo
    return encode_png(to_pixels(photo, filled, joint_hole(jobs)), photo.icc_profile)
