"""Atomic file output: write to a temporary path beside the target, then rename, so a
crash or a full disk never leaves a half-written checkpoint, export or image behind."""

import contextlib
import os
import shutil
import tempfile


def _umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temporary path in ``path``'s directory; on success rename it onto ``path``
    (``os.replace``, atomic on POSIX), on failure delete it and leave ``path`` untouched.
    ``suffix`` keeps extensions that writers insist on (e.g. ``.keras``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file open()'s usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from e  # name the file (a full disk)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path: str):
    """Yield a fresh temporary directory beside ``path``; on success rename it to ``path``
    (which must not exist yet), on failure remove it. Readers (e.g. TF Serving polling a
    model base path) never see a partly written directory."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; readable like os.makedirs' dirs
    try:
        yield tmp
        os.rename(tmp, path)
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from e
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def save_model(model, path: str) -> None:
    """``model.save(path)`` (``.keras``) atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
