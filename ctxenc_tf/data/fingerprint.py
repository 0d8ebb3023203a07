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



def split_names(names) -> list:
    """File names of a split as a run records them: paths relative to the common folder of
    ``names`` (so the record survives moving the data; subfolders kept, since ``a/1.jpg``
    and ``b/1.jpg`` are two images), or ``names`` as they are when they have no folder (the
    source names of prepared records)."""
    names = list(names)
    if not any(os.sep in n for n in names):
        return names
    paths = [os.path.abspath(n) for n in names]
    root = os.path.commonpath(paths)
    if len(paths) == 1:
        root = os.path.dirname(root)
    return [os.path.relpath(p, root) for p in paths]


def split_record(train_names, val_names) -> dict:
    """What a run records of its split in ``ModelConfig.trained_on["split"]``, so that
    ``evaluate`` can tell the run's split from one rebuilt out of files that changed:
    ``{"train": count, "val": count, "digest": hex}``, the digest over the
    :func:`split_names` of ``train_names`` and ``val_names`` (paths, or the source names of
    prepared records) taken together, in order."""
    names = split_names(list(train_names) + list(val_names))
    digest = hashlib.sha256()
    for name in names[:len(train_names)] + ["[val]"] + names[len(train_names):]:
        digest.update(os.fsencode(name) + b"\n")
    return {"train": len(train_names), "val": len(val_names), "digest": digest.hexdigest()[:24]}
