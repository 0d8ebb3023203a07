"""train.py --prepare DIR --align-faces: a folder of unaligned photos (made from the bundled
crops with known similarity transforms, tests/face_photos.py) becomes img_align_celeba-like
crops, a landmark CSV and counts, written atomically and once; train.py then trains on it."""

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.cli.train import main as train_main
from ctxenc_tf.data import aligned_faces, sources
from ctxenc_tf.data.aligned_faces import METADATA, align_faces
from ctxenc_tf.errors import DataError
from ctxenc_tf.faces import alignment
from face_photos import background, face_files, load, paste, similarity, template_residual, unaligned_photo
from helpers import exit_code, tiny_config

# How far (178x218 pixels) the recovered alignment may put each template landmark from
# where it belongs. It bounds MTCNN's landmark error plus the bundled crops' own
# misalignment (they were aligned by the eyes alone, so nose and mouth sit a few pixels off
# the template): 0.3 to 4.6 px on these faces, chosen among crops that are 1.4 to 4.1 px
# off on their own (the carphone clip's small crops reach 10). Float rounding is a
# thousandth of a pixel.
TEMPLATE_BOUND = 10.0

EXPECTED_FILES = ["group_1.jpg", "group_2.jpg", "rotated_1.jpg", "scan_1.jpg", "sideways_1.jpg",
                  os.path.join("sub", "large_1.jpg")]


def _save(photo, path, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(photo).save(path, **options)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """``(folder, truth)``: a folder of photos and, per face photo (relative path), the
    ``[2, 3]`` maps from each bundled crop's 178x218 frame to the upright photo, largest
    face first. Beside them a face-free photo, a broken JPEG and a text file."""
    root = str(tmp_path_factory.mktemp("photos"))
    truth = {}
    photo, matrix = unaligned_photo(60, 20, 0.6, canvas=(360, 480), seed=1)
    truth["rotated.jpg"] = [matrix]
    _save(photo, os.path.join(root, "rotated.jpg"))
    photo, matrix = unaligned_photo(100, -15, 2.0, canvas=(600, 800), seed=2)
    truth["sub/large.png"] = [matrix]
    _save(np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)]), os.path.join(root, "sub", "large.png"))
    photo, big = unaligned_photo(210, 10, 1.1, canvas=(420, 720), centre=(220, 210), seed=3)
    small = similarity(-10, 0.7, 540, 220)
    truth["group.jpg"] = [big, small]
    _save(paste(photo, load(face_files()[290]), small), os.path.join(root, "group.jpg"))
    # Stored turned a quarter to the left with the EXIF tag that turns it upright
    # (orientation 6); the landmarks must come out in the upright photo's pixels.
    photo, matrix = unaligned_photo(280, 0, 1.0, canvas=(320, 420), seed=4)
    truth["sideways.jpg"] = [matrix]
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(np.ascontiguousarray(np.rot90(photo)), os.path.join(root, "sideways.jpg"), exif=exif)
    photo, matrix = unaligned_photo(170, -25, 0.9, canvas=(360, 360), seed=5)
    truth["scan.png"] = [matrix]
    gray16 = np.rint(photo.mean(axis=2) * 257).astype(np.uint16)  # a 16-bit grayscale scan
    _save(gray16, os.path.join(root, "scan.png"))
    _save(background((300, 400), 6), os.path.join(root, "no_face.jpg"))
    with open(os.path.join(root, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + b"garbage" * 50 + b"\xff\xd9")
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not a photo")
    return root, truth


@pytest.fixture(scope="module")
def detector():
    from ctxenc_tf.faces.detector import FaceDetector

    return FaceDetector()  # loading MTCNN's weights takes about a second: once per module


@pytest.fixture(scope="module")
def aligned(photos, detector, tmp_path_factory):
    """``(out_dir, meta, log lines)`` of aligning :func:`photos` with the defaults."""
    out = str(tmp_path_factory.mktemp("aligned") / "faces")
    lines = []
    meta = align_faces(photos[0], out, detector=detector, log=lines.append)
    return out, meta, lines


def _rows(out):
    with open(os.path.join(out, "faces.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _landmarks(row, prefix=""):
    names = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
    return np.array([[float(row[f"{prefix}{n}_{axis}"]) for axis in "xy"] for n in names])


def test_one_aligned_jpeg_per_face_and_only_those_are_training_images(aligned):
    out, meta, _ = aligned
    jpegs = sorted(os.path.relpath(os.path.join(root, n), out) for root, _, names in os.walk(out)
                   for n in names if n.endswith(".jpg"))
    assert jpegs == EXPECTED_FILES
    assert sorted(os.listdir(out)) == sorted(["aligned.json", "faces.csv", "sub"]
                                             + [f for f in EXPECTED_FILES if os.sep not in f])
    for name in jpegs:
        with Image.open(os.path.join(out, name)) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (178, 218)), name
    assert not [p for p in os.listdir(os.path.dirname(out)) if p.endswith(".tmp")]
    # The folder pipeline lists the JPEGs alone: the CSV and the JSON are no training data.
    split = sources.find_split(tiny_config(data_dir=out))
    assert sorted(os.path.relpath(p, out) for p in split.train + split.val) == EXPECTED_FILES
    assert not split.skipped


def test_csv_names_each_face_its_photo_and_celeba_landmarks(aligned):
    out, _, _ = aligned
    with open(os.path.join(out, "faces.csv")) as f:
        header = f.readline().strip().split(",")
    celeba = ["lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
              "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"]
    assert header == ["file", "source", "face", "confidence"] + celeba + ["aligned_" + c for c in celeba]
    rows = _rows(out)
    assert sorted((r["file"], r["source"], r["face"]) for r in rows) == [
        ("group_1.jpg", "group.jpg", "1"), ("group_2.jpg", "group.jpg", "2"),
        ("rotated_1.jpg", "rotated.jpg", "1"), ("scan_1.jpg", "scan.png", "1"),
        ("sideways_1.jpg", "sideways.jpg", "1"),
        (os.path.join("sub", "large_1.jpg"), os.path.join("sub", "large.png"), "1")]
    for row in rows:
        assert 0.95 <= float(row["confidence"]) <= 1.0
        # The aligned columns are the photo's landmarks mapped into the frame. Both are
        # written with two decimals (0.005 px of rounding); the photo's reach the frame
        # magnified by at most 1 / 0.6 (the smallest face), once through the points and once
        # through the transform fitted to them: under 0.04 px in all.
        expected = alignment.apply(alignment.celeba_alignment(_landmarks(row)), _landmarks(row))
        np.testing.assert_allclose(_landmarks(row, "aligned_"), expected, atol=0.05)


def test_each_generated_face_is_aligned_onto_celeba_template(aligned, photos):
    out, _, _ = aligned
    _, truth = photos
    residuals = {}
    for row in _rows(out):
        recovered = alignment.celeba_alignment(_landmarks(row))  # photo -> 178x218 frame
        matrix = truth[row["source"].replace(os.sep, "/")][int(row["face"]) - 1]
        residuals[row["file"]] = template_residual(recovered, matrix)
    assert len(residuals) == 6
    assert all((r <= TEMPLATE_BOUND).all() for r in residuals.values()), residuals
    # Each file holds its row's frame of the photo, up to JPEG's quantisation at quality 95
    # (about one grey level on average); a frame one pixel off differs by about five, one
    # with red and blue swapped by about ten.
    for row in _rows(out):
        photo = aligned_faces.read_rgb(os.path.join(photos[0], row["source"]))
        frame = alignment.Frame.celeba(_landmarks(row)).to_frame(photo)
        written = load(os.path.join(out, row["file"])).astype(np.float64)
        assert np.abs(written - frame).mean() <= 2.0, row["file"]


def test_faceless_and_unreadable_photos_are_counted_and_listed(aligned, photos, detector):
    out, meta, lines = aligned
    with open(os.path.join(out, "aligned.json")) as f:
        assert json.load(f) == meta
    assert (meta["photos_read"], meta["faces"], meta["faces_too_small"], meta["faces_beyond_max"]) == (6, 6, 0, 0)
    assert meta["without_face"] == ["no_face.jpg"]
    assert [path for path, _ in meta["unreadable"]] == ["broken.jpg"]
    assert meta["settings"] == {"max_faces": None, "min_face": aligned_faces.MIN_FACE,
                                "face_confidence": detector.min_confidence, "exclude": ""}
    assert meta["detector"]["name"] == "MTCNN" and meta["frame"]["size"] == [178, 218]
    assert f"skipped {os.path.join(photos[0], 'broken.jpg')}: cannot read image" in "\n".join(lines)
    assert lines[-1] == (f"aligned 6 faces from 6 photos into {out} "
                         "(1 photos without a face, 1 unreadable, 0 faces too small)")


def test_aligning_again_does_nothing_and_other_settings_are_refused(aligned, photos, monkeypatch):
    out, meta, _ = aligned
    stamps = {n: os.path.getmtime(os.path.join(out, n)) for n in ("aligned.json", "faces.csv", "group_1.jpg")}
    lines = []
    # The existing alignment is recognised before a detector would be loaded.
    monkeypatch.setattr(aligned_faces, "FaceDetector", lambda *a: pytest.fail("a detector was loaded"))
    assert align_faces(photos[0], out, log=lines.append) == meta
    assert lines == [f"{out}: already aligned (6 faces from 6 photos of {photos[0]}), nothing to do"]
    assert stamps == {n: os.path.getmtime(os.path.join(out, n)) for n in stamps}
    with pytest.raises(DataError, match=r"aligned with --min-face \S+ \(not 99\); choose another"):
        align_faces(photos[0], out, min_face=99)
    with pytest.raises(DataError, match="already holds faces aligned from"):
        align_faces(os.path.join(photos[0], "sub"), out)


def test_min_face_and_max_faces_skip_and_count_faces(photos, detector, tmp_path):
    group = tmp_path / "group"
    group.mkdir()
    shutil.copy(os.path.join(photos[0], "group.jpg"), group)
    lines = []
    # The two faces' boxes are about 90 and 56 px.
    meta = align_faces(str(group), str(tmp_path / "big"), min_face=73, detector=detector, log=lines.append)
    assert sorted(os.listdir(tmp_path / "big")) == ["aligned.json", "faces.csv", "group_1.jpg"]
    assert (meta["faces"], meta["faces_too_small"], meta["without_face"]) == (1, 1, [])
    assert lines[-1].endswith("(0 photos without a face, 0 unreadable, 1 faces too small)")
    meta = align_faces(str(group), str(tmp_path / "one"), max_faces=1, detector=detector, log=lines.append)
    assert (meta["faces"], meta["faces_too_small"], meta["faces_beyond_max"]) == (1, 0, 1)
    assert lines[-1].endswith("0 faces too small, 1 beyond --max-faces)")


def test_no_face_anywhere_writes_nothing(photos, detector, tmp_path):
    folder = tmp_path / "no_faces"
    folder.mkdir()
    for name in ("no_face.jpg", "broken.jpg"):
        shutil.copy(os.path.join(photos[0], name), folder)
    with pytest.raises(DataError, match="no face found in 1 readable photos .1 unreadable"):
        align_faces(str(folder), str(tmp_path / "out"), detector=detector, log=lambda line: None)
    assert sorted(os.listdir(tmp_path)) == ["no_faces"]


def test_bundled_faces_align_again(detector, tmp_path, monkeypatch):
    """Without a source the bundled faces are aligned: already CelebA-like crops, their
    recovered frame is near the identity."""
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for k in (0, 120, 240):
        shutil.copy(face_files()[k], bundled)
    monkeypatch.setattr(sources, "BUNDLED_FACES", str(bundled))
    out = str(tmp_path / "out")
    meta = align_faces("", out, detector=detector, log=lambda line: None)
    assert meta["source"] == str(bundled) and meta["faces"] == 3
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for row in _rows(out):
        assert row["face"] == "1"
        assert (template_residual(alignment.celeba_alignment(_landmarks(row)), identity) <= TEMPLATE_BOUND).all()


def _one_error_line(capsys, argv) -> str:
    assert exit_code(train_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_existing_directory_is_refused_untouched(photos, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    line = _one_error_line(capsys, ["--data-dir", photos[0], "--prepare", str(out), "--align-faces"])
    assert f"{out}: exists and is not an empty directory" in line
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["mine"]
    line = _one_error_line(capsys, ["--data-dir", photos[0], "--prepare", os.path.join(photos[0], "aligned"),
                                    "--align-faces"])
    assert "inside the photo folder" in line and not os.path.exists(os.path.join(photos[0], "aligned"))



@pytest.mark.parametrize("field,value", [("settings", "x"), ("faces", "three"), ("source", None)])
def test_an_edited_aligned_json_gets_one_line(aligned, photos, tmp_path, capsys, field, value):
    """An aligned.json that parses but holds a field of the wrong type is not taken as an
    earlier alignment: one line naming the file and the field, the folder untouched."""
    out = tmp_path / "edited"
    out.mkdir()
    meta = {**json.loads(open(os.path.join(aligned[0], METADATA)).read()), field: value}
    (out / METADATA).write_text(json.dumps(meta))
    line = _one_error_line(capsys, ["--data-dir", photos[0], "--prepare", str(out), "--align-faces"])
    assert f"{out / METADATA}: field '{field}': expected " in line
    assert json.loads((out / METADATA).read_text()) == meta


def test_align_faces_needs_prepare_and_max_faces_needs_align_faces(capsys):
    assert "--align-faces: needs --prepare DIR" in _one_error_line(capsys, ["--align-faces"])
    assert "--max-faces: needs --align-faces" in _one_error_line(capsys, ["--max-faces", "2"])


@pytest.mark.slow
def test_train_py_aligns_then_trains_on_the_aligned_folder(photos, tmp_path, capsys):
    from ctxenc_tf.training.fit import train

    out = str(tmp_path / "faces")
    assert exit_code(train_main, ["--data-dir", photos[0], "--prepare", out, "--align-faces"]) == 0
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[-2:] == [f"aligned 6 faces from 6 photos into {out} "
                           "(1 photos without a face, 1 unreadable, 0 faces too small)",
                           f"train from it with: python train.py --data-dir {out}"]
    config = tiny_config(data_dir=out, output_dir=str(tmp_path / "run"), batch_size=2,
                         cache=str(tmp_path / "cache"))
    _, history, paths = train(config, log=lambda *a: None)
    assert len(history.epoch) == 1 and os.path.isfile(paths.best)
    assert np.isfinite(history.history["val_rec_loss"]).all()
