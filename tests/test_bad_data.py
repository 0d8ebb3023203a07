"""A dataset with corrupt, truncated, zero-byte, non-image and huge files trains on the good
images and reports how many files were skipped and which; one with no usable image stops
with one clear error line."""

import os
import struct
import subprocess
import sys
import zlib

import pytest

from ctxenc_tf.data import screening
from ctxenc_tf.errors import DataError
from helpers import FACES, REPO, tiny_config, write_images


def _png_header(width, height):
    """A PNG signature and IHDR chunk claiming ``width`` x ``height`` (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _with_exif(jpeg_path, out_path, exif_bytes=10000):
    """Save ``jpeg_path`` again with a large EXIF block before its frame header."""
    from PIL import Image
    with Image.open(jpeg_path) as im:
        im.save(out_path, exif=b"Exif\x00\x00" + b"\x00" * exif_bytes)
    return open(out_path, "rb").read()


def _claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the baseline frame header (SOF0) claiming ``width`` x ``height``."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[:i + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[i + 9:]


def write_bad_files(directory, good_jpeg, good_png):
    """Write one file of each kind of damage; returns ``{name: expected reason}``."""
    os.makedirs(directory, exist_ok=True)
    jpeg, png = open(good_jpeg, "rb").read(), open(good_png, "rb").read()
    exif_jpeg = _with_exif(good_jpeg, os.path.join(directory, "exif_bomb.jpg"))
    files = {
        "zero.jpg": (b"", "empty file"),
        "notes.jpg": (b"this is a text file, not a photo\n", "not a JPEG/PNG/GIF/BMP image"),
        "cut.jpg": (jpeg[:len(jpeg) // 2], "truncated JPEG"),
        "cut.png": (png[:len(png) // 2], "truncated PNG"),
        "garbled.jpg": (jpeg[:4] + b"\x00" * 64 + jpeg[68:], "corrupt JPEG header"),
        "bomb.png": (_png_header(30000, 30000) + b"IEND\xaeB`\x82", "30000x30000 pixels"),
        # frame header beyond the first 4 KiB, behind EXIF
        "exif_bomb.jpg": (_claim_size(exif_jpeg, 20000, 20000), "20000x20000 pixels"),
    }
    for name, (content, _) in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)
    huge = os.path.join(directory, "huge.jpg")  # sparse: 65 MiB on paper, no disk used
    with open(huge, "wb") as f:
        f.write(jpeg[:16])
        f.truncate(65 * 2**20)
    reasons = {name: why for name, (_, why) in files.items()}
    reasons["huge.jpg"] = "file larger than 64 MiB"
    return reasons


@pytest.fixture
def damaged_folder(tmp_path):
    d = tmp_path / "images"
    good = write_images(str(d), 30)
    png = write_images(str(tmp_path / "png"), 1, ext="png")[0]
    reasons = write_bad_files(str(d), good[0], png)
    return str(d), reasons


def test_screen_file_names_each_kind_of_damage(damaged_folder):
    folder, reasons = damaged_folder
    for name, why in reasons.items():
        assert why in (screening.screen_file(os.path.join(folder, name)) or ""), name
    assert screening.screen_file(os.path.join(folder, "missing.jpg")) == "No such file or directory"
    assert screening.screen_file(os.path.join(folder, "img_0000.jpg")) is None
    big_exif = os.path.join(folder, "..", "exif.jpg")
    assert len(_with_exif(os.path.join(folder, "img_0001.jpg"), big_exif)) > 8192
    assert screening.screen_file(big_exif) is None


@pytest.mark.slow
def test_training_uses_the_good_images_and_reports_the_skipped(damaged_folder, tmp_path):
    from ctxenc_tf.training.fit import train
    folder, reasons = damaged_folder
    lines = []
    _, history, paths = train(tiny_config(data_dir=folder, output_dir=str(tmp_path / "run"), batch_size=4),
                              log=lines.append)
    assert len(history.epoch) == 1 and os.path.isfile(paths.final)
    text = "\n".join(lines)
    assert f"skipped {len(reasons)} unreadable image file(s):" in text
    shown = [line.strip().split(": ", 1) for line in lines if line.startswith("  ") and not line.startswith("  ...")]
    assert len(shown) == 5
    for path, why in shown:  # full path and reason of the first few
        assert os.path.dirname(path) == folder and reasons[os.path.basename(path)] in why
    assert f"... and {len(reasons) - 5} more" in text
    # train + val counts add up to the 30 good images
    counts = [line for line in lines if line.startswith("data:")][0]
    n_train, n_val = (int(w) for w in counts.split(": ")[-1].replace(" val images", "").split(" train / "))
    assert n_train + n_val == 30


def test_no_usable_image_is_one_clear_error(tmp_path):
    folder = tmp_path / "bad"
    good = write_images(str(tmp_path / "tmp"), 1)[0]
    png = write_images(str(tmp_path / "tmp"), 1, ext="png")[0]
    reasons = write_bad_files(str(folder), good, png)
    r = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--data-dir", str(folder),
                        "--output-dir", str(tmp_path / "run")], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    noise = ("WARNING: All log", "I0000", "E0000", "W0000")
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith(noise)]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {folder}: no usable training image (")
    assert "skipped as unreadable, e.g. " in lines[0] and any(name in lines[0] for name in reasons)
    assert not (tmp_path / "run" / "backup").exists()


def test_undecodable_jpeg_behind_a_good_header_is_named(tmp_path):
    # Header and trailer pass the screen; a broken Huffman table fails only at decode time.
    from ctxenc_tf.data import samples

    good = open(os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0]), "rb").read()
    dht = good.index(b"\xff\xc4")
    bad = good[:dht + 4] + b"\xff" * 40 + good[dht + 44:]
    path = tmp_path / "broken.jpg"
    path.write_bytes(bad)
    assert screening.screen_file(str(path)) is None
    with pytest.raises(DataError, match="broken.jpg: cannot decode image"):
        samples.load_images([str(path)], 32)
