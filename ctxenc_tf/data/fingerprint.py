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


def split_names(names, root: str) -> list:
    """File names of a split as a run records them: the paths ``names`` relative to the data
    folder ``root`` (so the record survives moving the data; subfolders kept, since
    ``a/1.jpg`` and ``b/1.jpg`` are two images), or ``names`` as they are when they have no
    folder (the source names of prepared records)."""
    return [os.path.relpath(os.path.abspath(n), os.path.abspath(root)) if os.sep in n else n for n in names]


def split_record(train_names, val_names, root: str) -> dict:
    """What a run records of its split in ``ModelConfig.trained_on["split"]``, so that
    ``evaluate`` can tell the run's split from one rebuilt out of files that changed:
    ``{"train": count, "val": count, "digest": hex}``, the digest over the
    :func:`split_names` (below ``root``) of ``train_names`` and ``val_names`` (paths, or the
    source names of prepared records), in order."""
    digest = hashlib.sha256()
    for name in split_names(train_names, root) + ["[val]"] + split_names(val_names, root):
        digest.update(os.fsencode(name) + b"\n")
    return {"train": len(train_names), "val": len(val_names), "digest": digest.hexdigest()[:24]}
