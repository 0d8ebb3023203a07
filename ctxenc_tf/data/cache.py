"""The ``--cache`` file of decoded training images: named after the data it holds, held
by one run at a time, and cleared of what a killed run left half written."""

import contextlib
import glob
import os

from ctxenc_tf.utils.output_dir import file_lock


def cache_prefix(prefix: str, fingerprint: str, image_size: int, stretch: bool) -> str:
    """The cache's own prefix for the user's ``prefix``: it names the data (its
    :func:`~ctxenc_tf.data.fingerprint.data_fingerprint`) and the image geometry, so a
    cache of other images is never read back for these."""
    return f"{prefix}.{fingerprint[:16]}.{image_size}{'s' if stretch else 'c'}"


def part_path(path: str, part: int) -> str:
    """The file prefix ``tf.data`` caches part ``part`` of the training images into, below
    the cache ``path`` (one cache per part, so that each epoch reads the parts in its own order)."""
    return f"{path}.part{part:05d}"


@contextlib.contextmanager
def held_cache(path: str, command: str = "train.py"):
    """Hold the cache ``path`` (:func:`cache_prefix`) while the block runs; first delete
    what a killed writer left of its parts (``tf.data``'s lock file and partial shards,
    ``<part>_*``, which a finished part no longer has). Raises
    :class:`~ctxenc_tf.utils.output_dir.OutputBusyError` when another run holds it."""
    with file_lock(f"{path}.ctxenc.lock", command, f"--cache {path}"):
        for leftover in glob.glob(glob.escape(path) + ".part*_*"):
            os.remove(leftover)
        yield path
