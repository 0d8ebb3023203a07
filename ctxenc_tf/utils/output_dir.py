"""Output folders and file names: checked before work starts, never colliding."""

import errno
import os
import shutil
import tempfile

CHECKPOINT_COPIES = 4  # best.keras, final.keras, the resume state, one temp file while replacing


def check_output_dir(path: str) -> None:
    """Create ``path`` and prove it is writable before any training time is spent.
    Raises ``PermissionError``/``OSError`` naming the directory."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PermissionError(e.errno, f"output directory is not writable ({e.strerror})", path) from e


def check_disk_space(path: str, checkpoint_bytes: int, copies: int = CHECKPOINT_COPIES) -> None:
    """Raise ``OSError(ENOSPC)`` naming ``path`` if its file system has room for fewer than
    ``copies`` checkpoints of ``checkpoint_bytes`` each, before any training time is spent."""
    free, need = shutil.disk_usage(path).free, copies * checkpoint_bytes
    if free < need:
        raise OSError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free; the checkpoints of this model "
                      f"need about {need / 2**20:.1f} MiB ({copies} x {checkpoint_bytes / 2**20:.1f} MiB)", path)


def unique_stems(stems) -> list:
    """Output file-name stems with repeats numbered (``a``, ``a_2``, ``a_3``), so that two
    inputs with one name never write the same output file."""
    seen, unique = {}, []
    for stem in stems:
        n = seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if n == 1 else f"{stem}_{n}")
    return unique
