"""The inpaint command and the predictor: pixels outside the hole survive byte for byte,
any size and mode works, and the three model formats agree."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.cli import inpaint as inpaint_cli
from ctxenc_tf.inference import photos
from ctxenc_tf.inference.runner import load_runner
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.utils import atomic
from helpers import FILL, REPO, exit_code, tiny_model, write_images


def run(argv):
    """``python -m ctxenc_tf inpaint argv``; returns the exit status."""
    return exit_code(inpaint_cli.main, argv)


def noise_photo(path, size, mode, seed=0):
    """A random-noise photo (every pixel distinct from any smooth fill) saved losslessly."""
    w, h = size
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return np.asarray(Image.open(path))


def expected_hole(width, height, image_size=32, hole_size=16):
    """The centre hole mapped to the photo's central square, worked out independently."""
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    a = round((image_size - hole_size) / 2 * side / image_size)
    b = round((image_size + hole_size) / 2 * side / image_size)
    hole = np.zeros((height, width), bool)
    hole[top + a:top + b, left + a:left + b] = True
    return hole


@pytest.mark.parametrize("size,mode", [((77, 51), "RGB"), ((45, 61), "RGBA"),
                                       ((63, 41), "L"), ((33, 35), "LA"), ((640, 480), "RGB")])
def test_only_the_hole_changes(models, tmp_path, size, mode):
    original = noise_photo(tmp_path / "photo.png", size, mode)
    assert run(["--model", models["centre"], str(tmp_path / "photo.png"), "--out",
                str(tmp_path / "out"), "--progress", "off"]) == 0
    result = Image.open(tmp_path / "out" / "photo_filled.png")
    assert result.mode == mode and result.size == size
    out = np.asarray(result)
    hole = expected_hole(*size)
    changed = (out != original).reshape(*hole.shape, -1).any(axis=-1)
    assert not changed[~hole].any(), "a pixel outside the hole changed"
    assert changed[hole].mean() > 0.9, "the hole was not filled"
    if mode in ("RGBA", "LA"):
        np.testing.assert_array_equal(out[..., -1], original[..., -1])  # alpha untouched


def test_exif_rotation_and_side_by_side(models, tmp_path):
    upright = np.asarray(Image.open(write_images(str(tmp_path / "src"), 1, size=(30, 50),
                                                 ext="png")[0]))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    stored.save(tmp_path / "rotated.png", exif=exif)
    assert run(["--model", models["centre"], str(tmp_path / "rotated.png"), "--out",
                str(tmp_path / "out"), "--side-by-side", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "rotated_filled.png"))
    assert out.shape == upright.shape  # 50 high, 30 wide: upright, as viewers show it
    hole = expected_hole(30, 50)
    np.testing.assert_array_equal(out[~hole], upright[~hole])
    panels = Image.open(tmp_path / "out" / "rotated_side_by_side.png")
    assert panels.size == (3 * 30, 50)
    np.testing.assert_array_equal(np.asarray(panels)[:, 60:], out)
    # the middle panel paints the whole hole, overlap ring included, in the model's fill
    # colour (docs/evaluation.md), and keeps the rest of the photo
    middle = np.asarray(panels)[:, 30:60]
    np.testing.assert_array_equal(middle[~hole], upright[~hole])
    assert (middle[hole] == np.rint((np.asarray(FILL) + 1.0) * 127.5)).all()


def test_finish_blends_the_ring(tmp_path):
    """A black photo and an all-white prediction: the hidden core turns white, the
    overlap ring ramps up towards it, everything else stays black."""
    config = tiny_model(fill_value=FILL)  # 32x32, hole 16, overlap 2
    photo = photos.Photo(np.zeros((64, 64, 3), np.uint8), None, "RGB")
    job = photos.photo_job(photo, config)
    out = photos.finish(job, np.zeros((32, 32, 3), np.float32),
                         np.ones((16, 16, 3), np.float32), config)
    row = out[32, :, 0].astype(int)  # through the centre, photo scale 2: hole = [16, 48)
    assert (row[:16] == 0).all() and (row[48:] == 0).all()
    assert (row[24:40] == 255).all()  # hidden core (16 - 2*2 model px = 24 photo px wide)
    ring = row[16:24]
    assert 0 < ring[0] < 255 and (np.diff(ring) >= 0).all() and ring[-1] > ring[0]


def test_user_mask(models, tmp_path):
    original = noise_photo(tmp_path / "photo.png", (90, 70), "RGB")
    mask = np.zeros((70, 90), np.uint8)
    mask[5:20, 60:80] = 255  # a hole near the top-right corner, far from the centre
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert run(["--model", models["random"], str(tmp_path / "photo.png"), "--mask",
                str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"), "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "photo_filled.png"))
    changed = (out != original).any(axis=-1)
    hole = mask > 0
    assert not changed[~hole].any() and changed[hole].mean() > 0.9


def test_user_mask_needs_random_mask_model(models, tmp_path, capsys):
    noise_photo(tmp_path / "photo.png", (40, 40), "RGB")
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "mask.png")
    code = run(["--model", models["centre"], str(tmp_path / "photo.png"), "--mask",
                str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--mask" in err and len(err.splitlines()) == 1


def test_folders_bad_files_and_name_clashes(models, tmp_path, capsys):
    write_images(str(tmp_path / "in"), 3, size=(41, 37))
    write_images(str(tmp_path / "in" / "sub"), 1, size=(50, 50), ext="png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    noise_photo(tmp_path / "img_0000.png", (36, 36), "RGB")  # same stem as in/img_0000.jpg
    code = run(["--model", models["centre"], str(tmp_path / "in"), str(tmp_path / "img_0000.png"),
                "--out", str(tmp_path / "out"), "--progress", "off", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 1 and "broken.jpg" in captured.err
    written = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "out")
                     for d, _, fs in os.walk(tmp_path / "out") for f in fs)
    assert written == ["img_0000_2_filled.png", "img_0000_filled.png", "img_0001_filled.png",
                       "img_0002_filled.png", os.path.join("sub", "img_0000_filled.png")]
    assert Image.open(tmp_path / "out" / "img_0000_2_filled.png").size == (36, 36)


@pytest.mark.parametrize("make", [
    lambda d: d / "missing.keras",
    lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
    lambda d: (d / "empty").mkdir() or d / "empty",
    lambda d: (d / "fake.tflite").write_bytes(b"\0\0\0\0TFL3 not a flatbuffer") and d / "fake.tflite",
    lambda d: saved_model_without_inpaint(d / "export"),
])
def test_wrong_model_is_one_line_error(tmp_path, capsys, make):
    model = make(tmp_path)
    noise_photo(tmp_path / "photo.png", (20, 20), "RGB")
    code = run(["--model", str(model), str(tmp_path / "photo.png"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and str(model) in err
    assert len(err.splitlines()) == 1


def saved_model_without_inpaint(directory):
    """A SavedModel (with a config beside it) that only has a ``serving_default``."""
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(directory / "saved_model" / "1"), signatures=module.f)
    tiny_model().save_json(str(directory / "config.json"))
    return directory


def test_outputs_in_the_input_folder(models, tmp_path):
    """--out inside (or equal to) the input folder: the photos there are inpainted, earlier
    outputs are not inpainted again, and an existing output is replaced only with
    --overwrite (it could be a file of the user's named like one)."""
    noise_photo(tmp_path / "a.png", (40, 40), "RGB")
    argv = ["--model", models["centre"], str(tmp_path), "--out", str(tmp_path), "--progress", "off"]
    assert run(argv) == 0
    first = (tmp_path / "a_filled.png").read_bytes()
    assert run(argv) == 2  # refused: a_filled.png exists
    assert (tmp_path / "a_filled.png").read_bytes() == first
    assert run(argv + ["--overwrite"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_filled.png"]
    umask = os.umask(0o022)
    os.umask(umask)  # written with open()'s usual permissions, not mkstemp's private 0600
    assert os.stat(tmp_path / "a_filled.png").st_mode & 0o777 == 0o666 & ~umask


def test_16_bit_photos_are_skipped_not_truncated(models, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    deep = np.random.default_rng(0).integers(0, 65536, (30, 30, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep_rgb.png"), deep)
    Image.fromarray(deep[..., 0]).save(tmp_path / "deep_gray.png")  # mode I;16
    noise_photo(tmp_path / "ok.png", (30, 30), "RGB")
    code = run(["--model", models["centre"], str(tmp_path), "--out", str(tmp_path / "out"),
                "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 1 and "deep_rgb.png" in err and "deep_gray.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok_filled.png"]


def test_empty_mask_is_one_line_error(models, tmp_path, capsys):
    noise_photo(tmp_path / "photo.png", (40, 40), "RGB")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "mask.png")
    code = run(["--model", models["random"], str(tmp_path / "photo.png"), "--mask",
                str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"), "--progress", "off"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "mask.png" in err and "no hole" in err and len(err.splitlines()) == 1


def test_missing_input_is_one_line_error(models, tmp_path, capsys):
    code = run(["--model", models["centre"], str(tmp_path / "nope.jpg"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nope.jpg" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_output_sent_to_a_log_file_has_no_progress_bar_unless_asked(models, tmp_path):
    """``inpaint ... > log 2>&1``: tqdm's bar would be redrawn there with ``\r`` (and
    ``\x1b`` moves); by default the log gets plain lines only, ``--progress bar`` forces it."""
    photos = write_images(str(tmp_path / "photos"), 2)
    logs = {}
    for progress in ("auto", "bar"):
        logs[progress] = tmp_path / f"{progress}.log"
        with open(logs[progress], "w") as log:
            r = subprocess.run([sys.executable, "-m", "ctxenc_tf", "inpaint", "--model", models["centre"], *photos,
                                "--out", str(tmp_path / progress), "--progress", progress],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=300)
        assert r.returncode == 0, logs[progress].read_text()[-2000:]
    text = logs["auto"].read_bytes().decode()  # read_text() would turn \r into \n
    assert not {"\r", "\b", "\x1b"} & set(text), repr(text)
    assert text.splitlines()[-1] == f"wrote 2 filled image(s) to {tmp_path / 'auto'}"
    assert "\r" in logs["bar"].read_bytes().decode()


@pytest.mark.slow
def test_savedmodel_and_tflite_match_keras(tmp_path):
    """The same photo through a .keras checkpoint, its SavedModel and its float32 .tflite
    gives (almost) the same filled image, and each predictor reports the model's config."""
    from ctxenc_tf.export.saved_model import export_saved_model
    from ctxenc_tf.export.tflite import export_tflite

    model = ContextEncoder(tiny_model(fill_value=FILL))
    keras_path = str(tmp_path / "model.keras")
    atomic.save_model(model, keras_path)
    version_dir = export_saved_model(model, str(tmp_path / "export"))
    tflite_path = export_tflite(model, str(tmp_path / "export"), variants=("float32",))["float32"]
    noise_photo(tmp_path / "photo.png", (48, 40), "RGB")
    outputs = {}
    for name, path in (("keras", keras_path), ("saved_model", str(tmp_path / "export")),
                       ("saved_model_version", version_dir), ("tflite", tflite_path)):
        predictor = load_runner(path)
        assert predictor.config.to_dict() == model.config.to_dict()
        assert run(["--model", path, str(tmp_path / "photo.png"), "--out",
                    str(tmp_path / name), "--progress", "off"]) == 0
        outputs[name] = np.asarray(Image.open(tmp_path / name / "photo_filled.png")).astype(int)
    for name in ("saved_model", "saved_model_version", "tflite"):
        assert np.abs(outputs[name] - outputs["keras"]).max() <= 2, name
