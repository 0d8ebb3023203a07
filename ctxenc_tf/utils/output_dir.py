"""Output folders and file names: checked before work starts, never colliding, one writer
at a time."""

import contextlib
import errno
import fcntl
import os
import re
import shutil
import tempfile

from ctxenc_tf.errors import ConfigError, CtxencError

LOCK_FILE = ".ctxenc.lock"

# The temporary names of utils/atomic.py: "." + target name + "." + mkstemp's 8 random
# characters + ".tmp" (+ the target's extension).
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\..*)?$")


class OutputBusyError(CtxencError, RuntimeError):
    """Another process is writing to the same output directory; the message names it."""


@contextlib.contextmanager
def file_lock(path: str, command: str, what: str):
    """Hold the advisory lock (``flock``) of the file ``path`` while the block runs; it is
    released when the block ends or the process dies, so a lock left by a killed process
    is simply taken over. The file names the holder (``command`` and pid). Raises
    :class:`OutputBusyError` ``"<what>: <holder> is writing here; ..."`` when held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise OutputBusyError(f"{what}: {other} is writing here; wait for it to finish "
                                  "or choose another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{command} (pid {os.getpid()})\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_output(directory: str, command: str, subdirs=()):
    """Hold ``directory`` for this process while the block runs (:func:`file_lock` on a
    file inside it), then remove the temporary files a killed writer left in
    ``directory`` and its ``subdirs``. Raises :class:`OutputBusyError` naming the other
    process (its ``command`` and pid)."""
    os.makedirs(directory, exist_ok=True)
    with file_lock(os.path.join(directory, LOCK_FILE), command, directory):
        for folder in (directory, *(os.path.join(directory, d) for d in subdirs)):
            remove_temporary_files(folder)
        yield


def remove_temporary_files(directory: str, targets=None) -> list:
    """Delete what :mod:`ctxenc_tf.utils.atomic` left in ``directory`` when a writer was
    killed (temporary files and folders), all of them or only those of the file names
    ``targets``; returns their paths. Call it while holding the directory
    (:func:`exclusive_output`), or through :func:`claim_targets` for the files this
    process is about to write, so no live writer's file is touched."""
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        ours = targets is None or any(name.startswith(f".{t}.") for t in targets)
        if ours and _TEMP_NAME.match(name) and not os.path.islink(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            removed.append(path)
    return removed

def check_output_path(path: str, argument: str, kind: str = "folder") -> None:
    """Prove, before any work is done, that the output ``path`` given as ``argument`` (the
    flag, e.g. ``"--out"``) can be written as ``kind`` says: a ``"folder"`` that files are
    written into, a ``"file"`` (not a folder), or a ``"new folder"`` built beside ``path``
    and renamed onto it (what an existing folder holds is left to the command). The folder
    to write into, or the nearest one above it that exists (the others are made when
    written), must take a new file; nothing is left behind. Raises :class:`ConfigError`
    ``"<argument>=<path>: <why>"``."""
    if kind == "file" and os.path.isdir(path):
        raise ConfigError(f"{argument}={path}: is a directory; give a file name")
    if kind == "new folder" and os.path.exists(path):
        if os.path.isdir(path):
            return
        raise ConfigError(f"{argument}={path}: is a file, not a directory")
    given = os.path.abspath(path)
    folder = given if kind == "folder" else os.path.dirname(given)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    named = "" if folder == given else f"{folder} "
    if not os.path.isdir(folder):
        raise ConfigError(f"{argument}={path}: {named}is a file, not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"{argument}={path}: {named}is not writable ({e.strerror or e})") from None


def space_needed(item_bytes: int, copies: int, items: str) -> str:
    """``"the <items> of this model need about N MiB (<copies> x M MiB)"``, for messages."""
    return (f"the {items} of this model need about {copies * item_bytes / 2**20:.1f} MiB "
            f"({copies} x {item_bytes / 2**20:.1f} MiB)")


def check_disk_space(path: str, item_bytes: int, copies: int, items: str = "checkpoints") -> None:
    """Raise ``OSError(ENOSPC)`` naming ``path`` if its file system has room for fewer than
    ``copies`` files (``items``, e.g. checkpoints) of ``item_bytes`` each, before any
    time is spent making them."""
    free = shutil.disk_usage(path).free
    if free < copies * item_bytes:
        raise OSError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free; {space_needed(item_bytes, copies, items)}",
                      path)


def unique_stems(stems) -> list:
    """Output file-name stems with repeats numbered (``a``, ``a_2``, ``a_3``), so that two
    inputs never write the same output file, even when an input is itself named like a
    numbered repeat (``a.jpg a.png a_2.jpg`` -> ``a``, ``a_2``, ``a_2_2``)."""
    used, unique = set(), []
    for stem in stems:
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        unique.append(name)
    return unique


def claim_targets(targets, inputs, overwrite: bool = False) -> None:
    """Before a command writes the files ``targets``: refuse to write any of them over one
    of ``inputs`` (never, whatever ``overwrite`` says) or over an existing file (unless
    ``overwrite``), raising ``FileExistsError`` naming the first such target; then remove
    what a killed run left half written of exactly these targets (no other writer's
    temporary file is touched)."""
    sources = {os.path.realpath(p) for p in inputs}
    for target in targets:
        if os.path.realpath(target) in sources:
            raise FileExistsError(errno.EEXIST, "is one of the inputs; choose another --out", target)
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists; pass --overwrite to replace it, or choose "
                                  "another --out", target)
    folders = {}
    for target in targets:
        folders.setdefault(os.path.dirname(os.path.abspath(target)), []).append(os.path.basename(target))
    for folder, names in folders.items():
        remove_temporary_files(folder, names)
