"""The ``--cache`` file of decoded training images: named after the data it holds, held
by one run at a time, and cleared of what a killed run left half written."""

import contextlib
import glob
import os

from ctxenc_tf.utils.output_dir import file_lock


def cache_prefix(prefix: str, fingerprint: str, image_size: int, stretch: bool) -> str:
    """The file prefix ``tf.data`` caches into for ``prefix``: it names the data (its
    :func:`~ctxenc_tf.data.fingerprint.data_fingerprint`) and the image geometry, so a
    cache of other images is never read back for these."""
    return f"{prefix}.{fingerprint[:16]}.{image_size}{'s' if stretch else 'c'}"


@contextlib.contextmanager
def held_cache(path: str, command: str = "train.py"):
    """Hold the cache ``path`` (a ``tf.data`` file prefix) while the block runs; first
    delete what a killed writer left (``tf.data``'s lock file and partial shards, kept
    until the cache's index is complete). Raises
    :class:`~ctxenc_tf.utils.output_dir.OutputBusyError` when another run holds it."""
    with file_lock(f"{path}.ctxenc.lock", command, f"--cache {path}"):
        if not os.path.exists(f"{path}.index"):
            for leftover in glob.glob(glob.escape(path) + "_*"):
                os.remove(leftover)
        yield path
