"""Faces in ordinary photos: the alignment's geometry (exact), the detector on photos made
from the bundled faces with known transforms, and ``inpaint --faces``: every face filled,
every pixel outside the faces' holes unchanged byte for byte, photos without a usable face
refused with one line.

The photos come from :mod:`face_photos`: a bundled 178x218 crop rotated, scaled and moved
onto a larger canvas with a face-free background. The exactness checks use the untrained
tiny models of ``conftest.models``: what they paint does not matter, where they paint does.
"""

import os

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.cli import inpaint as inpaint_cli
from ctxenc_tf.faces import alignment
from ctxenc_tf.faces.detector import FaceDetector, select_faces
from ctxenc_tf.inference.face_jobs import centre_hole_misses, plan_faces
from ctxenc_tf.inference.inpaint import fill_jobs, joint_hole
from ctxenc_tf.inference.photos import Photo, PhotoError, read_photo
from ctxenc_tf.inference.runner import load_runner
from face_photos import background, face_files, load, paste, similarity, template_residual, unaligned_photo
from helpers import REPO, exit_code

# How far (in 178x218 pixels) the recovered alignment may put CelebA's template points of a
# generated face from where they belong. It bounds the detector's landmark error plus the
# bundled crops' own misalignment (they were aligned by the eyes alone: MTCNN finds their
# mouth corners 2-5 px off the template), not float rounding: the eyes are 39 px apart, and
# these photos measured 3-6 px (docs/faces.md).
LANDMARK_BOUND = 10.0

PORTRAIT = os.path.join(REPO, "ctxenc_tf", "assets", "photos", "astronaut.png")


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def run(argv):
    return exit_code(inpaint_cli.main, argv)


def group_photo(count: int, canvas=(900, 1200)) -> np.ndarray:
    """``count`` (2 or 3) bundled faces of different people, sizes and angles on one canvas."""
    photo, _ = unaligned_photo(0, 15, 2.0, canvas=canvas, centre=(350, 420))
    files = face_files()
    photo = paste(photo, load(files[200]), similarity(-20, 1.2, 850, 500))
    if count == 3:
        photo = paste(photo, load(files[300]), similarity(5, 0.8, 1040, 170))
    return photo


def as_photo(rgb) -> Photo:
    return Photo(rgb, None, "RGB")


def save(pixels, path, **kwargs) -> str:
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)


# --- geometry: exact by construction ------------------------------------------------------

def test_similarity_transform_recovers_a_known_similarity():
    """Points mapped by a known similarity give that similarity back. The only error is
    float64 rounding of sums of a few hundred-pixel products (about 1e-13 relative), hence 1e-9."""
    rng = np.random.default_rng(0)
    for angle, scale in ((-30, 0.3), (0, 1.0), (17, 2.5), (30, 3.0)):
        known = similarity(angle, scale, *rng.uniform(100, 900, 2))
        points = rng.uniform(0, 200, (5, 2))
        recovered = alignment.similarity_transform(points, alignment.apply(known, points))
        np.testing.assert_allclose(recovered, known, rtol=0, atol=1e-9)
        back = alignment.apply(alignment.compose(alignment.invert(known), known), points)
        np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)


def test_template_landmarks_align_onto_themselves():
    frame = alignment.Frame.celeba(alignment.CELEBA_LANDMARKS)
    np.testing.assert_allclose(frame.matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    square = alignment.Frame.for_face(alignment.CELEBA_LANDMARKS, 128)
    # The square is img_align_celeba's central 178x178 (rows 20-197), scaled to 128.
    np.testing.assert_allclose(alignment.apply(square.matrix, [[0, 20], [178, 198]]), [[0, 0], [128, 128]],
                               atol=1e-12)


def test_a_thin_drawn_hole_reaches_a_shrinking_frame():
    """A 2-pixel stroke over a face 5.6x larger than the frame's crop lands in the frame
    wherever it lies, though the frame's samples are 5.6 photo pixels apart."""
    landmarks = alignment.apply(similarity(6, 4.0, 460, 420), alignment.CELEBA_LANDMARKS)
    frame = alignment.Frame.for_face(landmarks, 128)
    assert frame.scale < 0.2
    for dx in range(6):
        hole = np.zeros((1000, 1000), bool)
        hole[300:500, 420 + dx:422 + dx] = True
        assert frame.mask_to_frame(hole).sum() >= 30, dx


# --- the detector on generated photos ------------------------------------------------------

@pytest.mark.parametrize("face,angle,scale", [(0, -30, 0.5), (120, 30, 1.5), (250, 0, 0.35), (60, 12, 3.0)])
def test_recovered_alignment_puts_landmarks_on_the_template(detector, face, angle, scale):
    photo, matrix = unaligned_photo(face, angle, scale, seed=face)
    faces = detector.detect(photo)
    assert len(faces) == 1 and faces[0].confidence > 0.95
    residual = template_residual(alignment.celeba_alignment(faces[0].landmarks), matrix)
    assert residual.max() <= LANDMARK_BOUND, residual


def test_a_real_portrait(detector):
    """The bundled unaligned portrait (ctxenc_tf/assets/photos): one face, hers, found where
    it is (by eye: x 160-290, y 40-190 of the 512x512 photo), not on the suit or the flag."""
    photo = read_photo(PORTRAIT)
    faces = detector.detect(photo.rgb)
    assert len(faces) == 1
    x, y = faces[0].centre
    assert 160 < x < 290 and 40 < y < 190


def test_select_faces_orders_and_bounds(detector):
    faces = detector.detect(group_photo(3))
    assert len(faces) == 3 and [f.size for f in faces] == sorted((f.size for f in faces), reverse=True)
    kept, notes = select_faces(faces, max_faces=2)
    assert kept == faces[:2] and len(notes) == 1 and "--max-faces 2" in notes[0]
    kept, notes = select_faces(faces, min_face=faces[1].size + 1)
    assert kept == faces[:1] and len(notes) == 2 and all("--min-face" in n for n in notes)


# --- inpaint --faces ------------------------------------------------------------------------

@pytest.mark.parametrize("count", [2, 3])
def test_every_face_filled_every_other_pixel_kept(models, detector, tmp_path, count):
    photo = group_photo(count)
    path = save(photo, tmp_path / "group.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces",
                "--side-by-side", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "group_filled.png"))
    jobs, _ = plan_faces(read_photo(path), detector.detect(photo), load_runner(models["centre"]).config)
    assert len(jobs) == count
    changed = (out != photo).any(axis=-1)
    assert not changed[~joint_hole(jobs)].any(), "a pixel outside the faces' holes changed"
    for job in jobs:
        assert changed[job.hole].mean() > 0.5, "a face's hole was not filled"
        # The hole lies over the nose and mouth: its centre, taken back into the face's own
        # aligned frame, is the centre of the model's square.
        ys, xs = np.nonzero(job.hole)
        centre = alignment.apply(job.frame.matrix, [[xs.mean(), ys.mean()]])[0]
        np.testing.assert_allclose(centre, [15.5, 15.5], atol=1.0)  # rasterising the tilted square
    assert Image.open(tmp_path / "out" / "group_side_by_side.png").size == (3 * 1200, 900)


def test_align_then_inverse_keeps_everything_outside_the_holes(models, detector):
    """Through the API: each face's fill, warped back, writes inside its own hole only,
    for one face and for two whose frames overlap."""
    photo = group_photo(2)
    runner = load_runner(models["centre"])
    jobs, _ = plan_faces(as_photo(photo), detector.detect(photo), runner.config)
    [filled] = fill_jobs(runner, [jobs])
    np.testing.assert_array_equal(filled[~joint_hole(jobs)], photo[~joint_hole(jobs)])
    [again] = fill_jobs(runner, [jobs[:1]])
    np.testing.assert_array_equal(again[~jobs[0].hole], photo[~jobs[0].hole])


def test_max_faces_and_min_face(models, tmp_path, capsys):
    photo = group_photo(3)
    path = save(photo, tmp_path / "group.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "two"), "--faces",
                "--max-faces", "2", "--progress", "off"]) == 0
    assert "beyond --max-faces 2" in capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "two" / "group_filled.png"))
    np.testing.assert_array_equal(out[60:280, 940:1140], photo[60:280, 940:1140])  # the third, smallest face
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "none"), "--faces",
                "--min-face", "5000", "--progress", "off"]) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "no usable face" in err and "--min-face 5000" in err
    assert not (tmp_path / "none" / "group_filled.png").exists()


def test_a_tiny_face_is_skipped_with_its_reason(models, detector, tmp_path, capsys):
    """A 24-pixel face beside a large one: found, left out below the default --min-face 32,
    its region untouched, the large face filled."""
    photo, _ = unaligned_photo(0, 0, 1.5, canvas=(720, 960), centre=(300, 360))
    photo = paste(photo, load(face_files()[200]), similarity(0, 0.3, 800, 200))
    sizes = [round(f.size) for f in detector.detect(photo)]
    assert len(sizes) == 2 and sizes[1] < 32 <= sizes[0]
    path = save(photo, tmp_path / "pair.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces", "--progress", "off"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "--min-face" in line]
    assert len(notes) == 1 and notes[0].startswith(f"{path}: face at (") and "below --min-face 32" in notes[0]
    out = np.asarray(Image.open(tmp_path / "out" / "pair_filled.png"))
    np.testing.assert_array_equal(out[150:250, 760:840], photo[150:250, 760:840])
    assert (out != photo).any()


def test_no_face_is_refused_never_filled_at_the_centre(models, tmp_path, capsys):
    path = save(background((480, 640), 7), tmp_path / "wall.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if "wall.png" in line]
    assert lines == [f"skipped {path}: no face found; without --faces the model fills the photo's centre"]
    assert not (tmp_path / "out" / "wall_filled.png").exists()


def test_exif_rotated_photo(models, detector, tmp_path):
    upright = group_photo(2)
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned; viewers turn it back 90 degrees counter-clockwise
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_270)
    stored.save(tmp_path / "turned.png", exif=exif)
    assert run(["--model", models["centre"], str(tmp_path / "turned.png"), "--out", str(tmp_path / "out"),
                "--faces", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "turned_filled.png"))
    assert out.shape == upright.shape
    jobs, _ = plan_faces(as_photo(upright), detector.detect(upright), load_runner(models["centre"]).config)
    assert len(jobs) == 2
    np.testing.assert_array_equal(out[~joint_hole(jobs)], upright[~joint_hole(jobs)])


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_alpha(models, tmp_path, mode):
    rgb = group_photo(2)
    pixels = np.asarray(Image.fromarray(rgb).convert(mode))
    if mode == "RGBA":
        pixels = pixels.copy()
        pixels[..., 3] = np.arange(pixels.shape[1], dtype=np.uint8)[None, :] | 1  # not constant
    path = save(pixels, tmp_path / "photo.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces", "--progress", "off"]) == 0
    result = Image.open(tmp_path / "out" / "photo_filled.png")
    assert result.mode == mode
    out = np.asarray(result)
    changed = (out != pixels).reshape(*rgb.shape[:2], -1).any(axis=-1)
    assert changed.any()
    if mode == "RGBA":
        np.testing.assert_array_equal(out[..., 3], pixels[..., 3])


def test_face_cut_by_the_border(models, detector, tmp_path):
    """A face whose frame reaches past the photo: the frame mirrors the photo there, the
    hole is clipped to the photo, and nothing outside it changes."""
    photo, _ = unaligned_photo(10, 0, 2.0, canvas=(500, 700), centre=(150, 250))
    photo = photo[:, 20:]  # the face's frame now starts left of the photo
    faces = detector.detect(photo)
    assert len(faces) == 1
    corners = alignment.Frame.for_face(faces[0].landmarks, 32).corners()
    assert corners[:, 0].min() < 0
    path = save(photo, tmp_path / "cut.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "cut_filled.png"))
    jobs, _ = plan_faces(as_photo(photo), faces, load_runner(models["centre"]).config)
    np.testing.assert_array_equal(out[~joint_hole(jobs)], photo[~joint_hole(jobs)])
    assert (out != photo).any(axis=-1)[jobs[0].hole].mean() > 0.5


@pytest.mark.slow
def test_twelve_megapixel_photo(models, detector, tmp_path):
    photo, _ = unaligned_photo(30, 10, 8.0, canvas=(3000, 4000), centre=(1500, 1300), seed=1)
    faces = detector.detect(photo)
    assert len(faces) == 1
    path = save(photo, tmp_path / "big.png", compress_level=1)
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--faces", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "big_filled.png"))
    jobs, _ = plan_faces(as_photo(photo), faces, load_runner(models["centre"]).config)
    np.testing.assert_array_equal(out[~jobs[0].hole], photo[~jobs[0].hole])
    # The hole is the model's 16/32 of the face's 178-px crop, at the photo's full resolution.
    ys, xs = np.nonzero(jobs[0].hole)
    assert 0.9 * 16 / 32 * 178 * 8 <= np.ptp(ys) + 1 <= 1.5 * 16 / 32 * 178 * 8


def test_drawn_hole_filled_in_each_faces_frame(models, detector, tmp_path):
    """A random-mask model with --faces --mask: the drawn hole over each face is filled in
    that face's frame; pixels of the mask in no face's frame are left and counted."""
    photo = group_photo(2)
    faces = detector.detect(photo)
    hole = np.zeros(photo.shape[:2], bool)
    for face in faces:  # a small blot on each nose
        x, y = np.rint(face.landmarks[2]).astype(int)
        hole[y - 10:y + 10, x - 10:x + 10] = True
    hole[5:15, 5:15] = True  # background, in no face's frame
    mask = save((hole * 255).astype(np.uint8), tmp_path / "mask.png")
    path = save(photo, tmp_path / "group.png")
    assert run(["--model", models["random"], path, "--mask", mask, "--out", str(tmp_path / "out"),
                "--faces", "--progress", "off"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "group_filled.png"))
    changed = (out != photo).any(axis=-1)
    assert not changed[~hole].any()
    assert not changed[5:15, 5:15].any()
    for face in faces:
        x, y = np.rint(face.landmarks[2]).astype(int)
        assert changed[y - 10:y + 10, x - 10:x + 10].mean() > 0.5


def test_hint_when_the_centre_hole_misses_the_face(models, detector, tmp_path, capsys):
    path = save(group_photo(2), tmp_path / "group.png")
    assert run(["--model", models["centre"], path, "--out", str(tmp_path / "out"), "--progress", "off"]) == 0
    hints = [line for line in capsys.readouterr().err.splitlines() if "--faces" in line]
    assert len(hints) == 1 and hints[0].startswith(f"{path}: the centre hole misses the face at")
    config = load_runner(models["centre"]).config
    aligned = load(face_files()[0])  # a CelebA-style crop: the centre hole is where it belongs
    assert centre_hole_misses(aligned.shape[:2], detector.detect(aligned), config) is None


def test_plan_faces_refuses_a_photo_without_faces():
    with pytest.raises(PhotoError, match="no face found"):
        plan_faces(as_photo(background((100, 120), 3)), [], None)


# --- evaluate --faces -----------------------------------------------------------------------

def test_evaluate_faces_measures_each_face_in_its_aligned_frame(models, detector, tmp_path):
    import json

    from ctxenc_tf.cli import evaluate as evaluate_cli
    from ctxenc_tf.inference.evaluation import face_batches

    folder = tmp_path / "photos"
    folder.mkdir()
    save(group_photo(2), folder / "group.png")
    save(unaligned_photo(90, -20, 1.0, seed=3)[0], folder / "one.png")
    save(background((300, 400), 5), folder / "wall.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "eval"
    assert exit_code(evaluate_cli.main, ["--model", models["centre"], "--data-dir", str(folder), "--faces",
                                         "--out", str(out), "--progress", "off"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 3 and report["faces"]["faces"] == 3
    assert report["faces"]["no_face"] == [str(folder / "wall.png")]
    assert set(report["metrics"]) == {"model", "mean", "telea"}
    rows = (out / "per_image.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["group.png#face1", "group.png#face2", "one.png#face1"]
    # The examples are the faces' aligned squares, the very pixels inpaint --faces gives the model.
    config = load_runner(models["centre"]).config
    labels, images, _ = next(face_batches([str(folder / "one.png")], config, detector, 8))
    photo = read_photo(str(folder / "one.png"))
    [job], _ = plan_faces(photo, detector.detect(photo.rgb), config)
    np.testing.assert_array_equal(images[0], job.image)
