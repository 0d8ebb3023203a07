"""Screening of image files before TensorFlow sees them: type by magic bytes, size from
the header, and no truncated files, so that one bad file is skipped and named, never fatal."""

import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

MAX_FILE_BYTES = 64 * 1024 * 1024

MAX_PIXELS = 100_000_000  # a decoded 10000x10000 RGB image is 300 MB (1.2 GB as float32)

HEADER_BYTES = (4096, 65536)  # read this much to find the pixel size; more if EXIF pushes it back


# ... and this much of the end to find the end marker: cameras and editors may append data
# after a JPEG's EOI; scan data never holds FF D9, so a wider window cannot hide truncation.
TAIL_BYTES = 4096

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def _jpeg_size(head: bytes):
    """``(width, height)`` from the frame header among JPEG ``head``'s first segments,
    ``None`` if the frame header lies beyond ``head``; raises ``ValueError`` if the
    segment structure is broken."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            raise ValueError("corrupt JPEG header")
        marker = head[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, no-length markers
            i += 1 if marker == 0xFF else 2
            continue
        if marker == 0xDA:  # scan data before any frame header
            raise ValueError("corrupt JPEG header (no frame header)")
        length = int.from_bytes(head[i + 2:i + 4], "big")
        if length < 2:
            raise ValueError("corrupt JPEG header")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            if i + 9 > len(head):
                return None
            return int.from_bytes(head[i + 7:i + 9], "big"), int.from_bytes(head[i + 5:i + 7], "big")
        i += 2 + length
    return None


def _pixel_size(head: bytes):
    """``(width, height)`` read from an image header (JPEG, PNG, GIF, BMP), ``None`` when
    not within ``head``; raises ``ValueError`` for a broken header."""
    if head.startswith(b"\x89PNG"):
        if head[12:16] != b"IHDR":
            raise ValueError("corrupt PNG header")
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head.startswith(b"GIF"):
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head.startswith(b"BM"):
        return abs(int.from_bytes(head[18:22], "little", signed=True)), \
            abs(int.from_bytes(head[22:26], "little", signed=True))
    return _jpeg_size(head)


def screen_file(path: str):
    """Cheap check of one file without decoding its pixels: ``None`` if it looks like a
    complete image, else the reason (missing, empty, too large a file, not an image,
    corrupt header, zero or more than :data:`MAX_PIXELS` pixels, truncated, or not a
    regular file: reading a named pipe or a device would block or never end)."""
    try:
        if os.path.exists(path) and not os.path.isfile(path):
            return "not a regular file"
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        if size > MAX_FILE_BYTES:
            return f"file larger than {MAX_FILE_BYTES // 2**20} MiB"
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES[0])
            if not head.startswith(_MAGIC):
                return "not a JPEG/PNG/GIF/BMP image"
            try:
                dims = _pixel_size(head)
                if dims is None and size > len(head):
                    head += f.read(HEADER_BYTES[1] - len(head))
                    dims = _pixel_size(head)
            except ValueError as e:
                return str(e)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as e:
        return e.strerror or str(e)
    if dims and (dims[0] * dims[1] == 0 or dims[0] * dims[1] > MAX_PIXELS):
        return f"{dims[0]}x{dims[1]} pixels ({'none' if 0 in dims else f'over {MAX_PIXELS // 10**6} megapixels'})"
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        return "truncated JPEG"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG"
    return None


def screen_files(paths):
    """Split ``paths`` into ``(good, skipped)``; ``skipped`` is a list of ``(path, reason)``."""
    good, skipped = [], []
    for p in paths:
        reason = screen_file(p)
        (skipped.append((p, reason)) if reason else good.append(p))
    return good, skipped
