"""What identifies a run's data: a hash of the ordered train and validation file lists
with each file's size and modification time, so resuming can tell the same data (even
moved to another folder) from data that changed."""

import hashlib
import os


def data_fingerprint(train, val) -> str:
    """Hex digest over ``train`` and ``val``
    (:class:`~ctxenc_tf.data.image_source.ImageSource` objects): each of their
    :attr:`~ctxenc_tf.data.image_source.ImageSource.files`' path relative to their common
    folder, size and modification time, in order (the order decides the batches), plus
    each source's :meth:`~ctxenc_tf.data.image_source.ImageSource.selection` (a prepared
    split's per-shard counts). Raises ``OSError`` if a file cannot be stat'ed."""
    everything = list(train.files) + list(val.files)
    root = os.path.commonpath([os.path.abspath(p) for p in everything]) if everything else ""
    if len(everything) == 1:
        root = os.path.dirname(root)
    digest = hashlib.sha256()
    for name, source in (("train", train), ("val", val)):
        digest.update(f"[{name}]\n".encode())
        for path in source.files:
            st = os.stat(path)
            rel = os.path.relpath(os.path.abspath(path), root)
            digest.update(os.fsencode(rel) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        digest.update(source.selection().encode())
    return digest.hexdigest()[:24]
