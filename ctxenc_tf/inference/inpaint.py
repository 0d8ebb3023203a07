"""Inpainting photos with a model runner: inputs collected, filled in batches, encoded
as lossless PNGs beside nothing of the user's. The inpaint command and the web app both
fill through :func:`fill_jobs` and :func:`filled_png`."""

import os

import numpy as np

from ctxenc_tf.data import screening, sources
from ctxenc_tf.errors import DataError
from ctxenc_tf.inference.photos import Job, encode_png, finish, to_pixels
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


def fill_jobs(runner, jobs) -> list:
    """Fill prepared photos (:func:`~ctxenc_tf.inference.photos.prepare`) in one model call;
    returns each photo's ``[H, W, 3]`` uint8 result, equal to it outside ``job.hole``."""
    completed, prediction = runner.inpaint(np.stack([j.image for j in jobs]),
                                           np.stack([j.mask for j in jobs]))
    return [finish(job, c, p, runner.config) for job, c, p in zip(jobs, completed, prediction)]


def filled_png(job: Job, filled) -> bytes:
    """The PNG to write for ``job``: ``filled`` (from :func:`fill_jobs`) in the photo's own
    mode, alpha and colour profile."""
    return encode_png(to_pixels(job.photo, filled, job.hole), job.photo.icc_profile)
