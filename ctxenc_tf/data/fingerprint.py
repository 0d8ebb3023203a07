"""What identifies a run's data: a hash of the ordered train and validation file lists
with each file's size and modification time, so resuming can tell the same data (even
moved to another folder) from data that changed."""

import hashlib
import os

from ctxenc_tf.data.records import Records


def _paths(files) -> list:
    """The files a split reads: image paths, or a prepared split's shards."""
    return list(files.shards) if isinstance(files, Records) else list(files)


def data_fingerprint(train, val) -> str:
    """Hex digest over ``train`` and ``val`` (lists of image paths or :class:`Records`):
    each file's path relative to their common folder, size and modification time, in
    order (the order decides the batches), plus a prepared split's per-shard counts.
    Raises ``OSError`` if a file cannot be stat'ed."""
    everything = _paths(train) + _paths(val)
    root = os.path.commonpath([os.path.abspath(p) for p in everything]) if everything else ""
    if len(everything) == 1:
        root = os.path.dirname(root)
    digest = hashlib.sha256()
    for name, files in (("train", train), ("val", val)):
        digest.update(f"[{name}]\n".encode())
        for path in _paths(files):
            st = os.stat(path)
            rel = os.path.relpath(os.path.abspath(path), root)
            digest.update(os.fsencode(rel) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if isinstance(files, Records):
            digest.update(repr(files.counts).encode())
    return digest.hexdigest()[:24]
