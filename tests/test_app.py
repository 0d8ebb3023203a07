"""The web app (``python -m ctxenc_tf app``) driven in a real headless Chromium through
Playwright: a photo uploaded, a stroke painted, the fill downloaded and compared pixel for
pixel with the inpaint command's output for the same photo and mask; a two-face photo's
faces listed, one switched off and the other filled; bad uploads get a line in the page and
the app keeps serving. The start-up refusals and face mode's functions run without a
browser: face mode fills exactly what ``plan_faces`` + ``fill_jobs`` fill for the ticked
faces and leaves every other pixel as it was (untrained tiny models: where they paint
matters, not what)."""

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.cli import app
from ctxenc_tf.cli import inpaint as inpaint_cli
from ctxenc_tf.faces.detector import FaceDetector
from ctxenc_tf.inference.face_jobs import plan_faces
from ctxenc_tf.inference.inpaint import fill_jobs
from ctxenc_tf.inference.photos import photo_job, read_photo
from ctxenc_tf.inference.runner import load_runner
from face_photos import background, face_files, load, paste, similarity, unaligned_photo
from helpers import REPO, exit_code, free_port, not_installed

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it)
# Without the networking flags Chromium waits on services a closed network never answers.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_SECONDS = 120


def rotated_photo(path):
    """A 300x400 (wide x high) noise photo stored turned on its side with EXIF orientation 6; returns
    its upright pixels ``[400, 300, 3]`` uint8 (as viewers, and the inpaint command, see it)."""
    upright = np.random.default_rng(1).integers(0, 256, (400, 300, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    return upright


def two_faces(path):
    """A 960x720 photo of two bundled people (face 1 the larger, in the middle; face 2
    small, top right) saved at ``path``; returns its pixels ``[720, 960, 3]`` uint8."""
    photo, _ = unaligned_photo(0, 15, 2.0, canvas=(720, 960), centre=(480, 360))
    photo = paste(photo, load(face_files()[200]), similarity(-10, 1.0, 840, 190))
    Image.fromarray(photo).save(path)
    return photo


@pytest.fixture(scope="module")
def face_mode():
    return app.FaceMode(FaceDetector())


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    """The app on a free port, started as the user starts it, with no --model in a folder
    whose runs/ holds the random-mask model: ``(url, process, its first lines, its stderr file)``."""
    home = tmp_path_factory.mktemp("home")
    os.makedirs(home / "runs" / "tiny")
    shutil.copy(models["random"], home / "runs" / "tiny" / "best.keras")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": REPO}
    stderr = open(home / "stderr.txt", "w")
    process = subprocess.Popen([sys.executable, "-m", "ctxenc_tf", "app", "--port", str(port)], cwd=home,
                               env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    printed = queue.Queue()  # read in a thread: a readline here could wait for ever
    threading.Thread(target=lambda: [printed.put(line) for line in process.stdout] + [printed.put(None)],
                     daemon=True).start()
    lines, deadline = [], time.monotonic() + START_SECONDS
    while not any(line.startswith("ctxenc-tf app on") for line in lines):
        try:
            line = printed.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        if line is None:
            process.kill()
            pytest.fail(f"the app did not start within {START_SECONDS} s: "
                        f"{(home / 'stderr.txt').read_text()[-2000:]}")
        lines.append(line.strip())
    yield f"http://127.0.0.1:{port}/", process, lines, home / "stderr.txt"
    process.terminate()
    assert process.wait(30) == 0  # stopped as by Ctrl+C: its upload folder removed
    stderr.close()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium page for the module, and every URL it requested."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        not_installed(f"Debian's chromium ({CHROMIUM})", "apt-get install -y chromium (.ci/run does this)")

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="chromium-"), executable_path=CHROMIUM, args=CHROMIUM_ARGS,
            headless=True, accept_downloads=True, viewport={"width": 1200, "height": 1000})
        page, requested = context.new_page(), []
        page.on("request", lambda request: requested.append(request.url))
        yield page, requested
        context.close()


def upload(page, path, expect, find_faces=None):
    """Upload ``path`` as the photo (replacing the one shown, once the page has taken in
    its removal), face mode first switched on or off when ``find_faces`` says; returns the
    status line once it holds ``expect``."""
    clear = page.locator("#photo button[aria-label=Clear]")
    if clear.count():
        clear.click()
        page.wait_for_function("document.querySelector('#status').innerText.trim() === ''")
    switch = page.locator("#face-mode input[type=checkbox]")
    if find_faces is not None and switch.is_checked() != find_faces:
        # Queued before the upload's own event (the page may hold it back until the upload
        # is done, and then send either first): the upload's result comes last.
        with page.expect_response(lambda response: "queue/join" in response.url):
            switch.set_checked(find_faces)
    page.locator("#photo input[type=file]").set_input_files(str(path))
    # The status shows its text a moment before the event's end takes the progress line away.
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t) && "
                           "!document.querySelector('#status .progress-text')", arg=expect)
    return page.locator("#status").inner_text()


def page_at(browser, url):
    """The module's page, at ``url``: the one the test before left is reused (each load
    takes seconds)."""
    page, _ = browser
    if page.url != url:
        page.goto(url)
    return page


def press_fill(page) -> str:
    """Press Fill on a page without a result yet; returns the status once it has one."""
    page.locator("#fill").click()
    page.wait_for_function("['Filled', 'error:'].some(t => document.querySelector('#status').innerText.includes(t))")
    return page.locator("#status").inner_text()


def paint_stroke(page):
    """A short diagonal brush stroke across the middle of the photo on the canvas (two
    moves: each one redraws the canvas, slow in a browser without a GPU)."""
    page.get_by_label("Brush", exact=True).click()
    box = page.locator("#canvas canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 10, y - 5)
    page.mouse.down()
    page.mouse.move(x, y)
    page.mouse.move(x + 10, y + 5)
    page.mouse.up()


@pytest.mark.slow
def test_paint_fill_download_matches_inpaint(models, served, browser, tmp_path):
    url, process, lines, _ = served
    assert lines[0] == "no --model: using the newest checkpoint under runs/, runs/tiny/best.keras"
    assert lines[-1].startswith(f"ctxenc-tf app on {url}")
    page, requested = browser
    page.goto(url)
    upright = rotated_photo(tmp_path / "photo.png")
    assert upload(page, tmp_path / "photo.png", "Paint", find_faces=False).startswith("300x400 RGB photo.")
    paint_stroke(page)
    assert press_fill(page).startswith("Filled")
    links = page.locator("#downloads a[download]")
    links.first.wait_for()
    saved = {}
    for i in range(links.count()):
        with page.expect_download() as download:
            links.nth(i).click()
        saved[download.value.suggested_filename] = tmp_path / download.value.suggested_filename
        download.value.save_as(saved[download.value.suggested_filename])
    assert sorted(saved) == ["photo_filled.png", "photo_hole.png"]

    filled = np.asarray(Image.open(saved["photo_filled.png"]))
    hole = np.asarray(Image.open(saved["photo_hole.png"])) > 0
    assert filled.shape == upright.shape and hole.shape == upright.shape[:2]
    assert 0 < hole.mean() < 0.5
    np.testing.assert_array_equal(filled[~hole], upright[~hole])
    assert exit_code(inpaint_cli.main, ["--model", models["random"],
                                        str(tmp_path / "photo.png"), "--mask", str(saved["photo_hole.png"]),
                                        "--out", str(tmp_path / "cli"), "--progress", "off"]) == 0
    np.testing.assert_array_equal(filled, np.asarray(Image.open(tmp_path / "cli" / "photo_filled.png")))


@pytest.mark.slow
def test_faces_listed_one_switched_off_the_other_filled(served, browser, tmp_path):
    page = page_at(browser, served[0])
    two_faces(tmp_path / "two.png")
    assert "2 faces to fill" in upload(page, tmp_path / "two.png", "faces to fill", find_faces=True)
    faces = page.locator("#faces")
    faces.locator("input[type=checkbox]").nth(1).wait_for()  # shown just after the status
    assert faces.locator("input[type=checkbox]").count() == 2
    paint_stroke(page)  # over face 1, in the middle of the photo
    faces.get_by_label("2", exact=True).uncheck()  # the status says so; the canvas keeps the stroke
    page.wait_for_function("document.querySelector('#status').innerText.includes('switched off: 2')")
    status = press_fill(page)
    assert status.startswith("Filled 1 face (1; switched off: 2)"), status
    faces.get_by_label("1", exact=True).uncheck()
    page.locator("#fill").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('nothing to fill')")


@pytest.mark.slow
def test_bad_uploads_get_a_line_in_the_page(served, browser, tmp_path):
    url, process, _, stderr = served
    page, requested = page_at(browser, url), browser[1]
    (tmp_path / "notes.png").write_text("not an image")
    refused = upload(page, tmp_path / "notes.png", "error: notes.png")
    assert refused.startswith("error: notes.png: cannot read image") and "/" not in refused
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert "16-bit" in upload(page, tmp_path / "deep.png", "error: deep.png")
    rotated_photo(tmp_path / "fine.png")
    upload(page, tmp_path / "fine.png", "Paint", find_faces=False)  # still serving
    paint_stroke(page)
    page.locator("#clear").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Hole cleared')")
    page.locator("#fill").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('paint over')")
    assert process.poll() is None and "Traceback" not in stderr.read_text()
    assert requested and all(u.startswith(url) or u.startswith(("data:", "blob:")) for u in requested), \
        "the page fetched something from elsewhere (fonts, analytics)"


def test_without_a_model_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert exit_code(app.main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint under runs/" in err[0] and "python -m ctxenc_tf train" in err[0]
    assert exit_code(app.main, ["--serving-url", "http://localhost:8501/v1/models/ctxenc"]) == 2
    assert "--serving-url needs --model" in capsys.readouterr().err


def test_newest_checkpoint(tmp_path):
    for i, name in enumerate(("a/best.keras", "b/final.keras", "c/backup/state.keras")):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, (i, i))
    assert app.newest_checkpoint(str(tmp_path)) == str(tmp_path / "b/final.keras")
    assert app.newest_checkpoint(str(tmp_path / "missing")) is None


def test_centre_model_page_has_no_brush(models, tmp_path, monkeypatch):
    """A centre-hole model: the upload shows the hole it fills and the page says why there
    is no brush; the fill is the inpaint command's; too many pixels is one line."""
    runner = load_runner(models["centre"])
    page = app.build(runner, str(tmp_path))
    kinds = {type(block).__name__ for block in page.blocks.values()}
    assert "ImageEditor" not in kinds
    assert any("centre holes only" in str(getattr(block, "value", "")) for block in page.blocks.values())
    upright = rotated_photo(tmp_path / "photo.png")
    canvas, status, _, _ = app.show_photo(runner.config, str(tmp_path / "photo.png"))
    assert canvas.shape == upright.shape and "outlined square" in status
    status, _, _, files = app.fill_photo(runner, str(tmp_path), str(tmp_path / "photo.png"), None)
    assert exit_code(inpaint_cli.main, ["--model", models["centre"], str(tmp_path / "photo.png"),
                                        "--out", str(tmp_path / "cli"), "--progress", "off"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])),
                                  np.asarray(Image.open(tmp_path / "cli" / "photo_filled.png")))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 120000 pixels: over twice the limit
    _, status, _, _ = app.show_photo(runner.config, str(tmp_path / "photo.png"))
    assert status.startswith("**error:** photo.png: cannot read image") and "\n" not in status


def test_only_the_newest_fills_downloads_are_kept(models, tmp_path):
    """A long-running app keeps the downloads of its last KEEP_FILLS fills, not every one."""
    runner = load_runner(models["centre"])
    rotated_photo(tmp_path / "photo.png")
    work = tmp_path / "work"
    work.mkdir()
    kept = []
    for _ in range(app.KEEP_FILLS + 3):
        kept.append(app.fill_photo(runner, str(work), str(tmp_path / "photo.png"), None)[3])
    folders = [p for p in os.listdir(work) if p.startswith(app.FILL_PREFIX)]
    assert len(folders) == app.KEEP_FILLS
    assert all(os.path.exists(f) for files in kept[-app.KEEP_FILLS:] for f in files)
    assert not any(os.path.exists(f) for files in kept[:3] for f in files)


def test_a_file_name_cannot_become_markup_in_the_page():
    name = "/upload/[x](javascript:alert(1)) *b*.png"
    assert app.error_line(f"{name}: cannot read image", name) == \
        "**error:** \\[x\\](javascript:alert(1)) \\*b\\*.png: cannot read image"


def test_face_mode_fills_the_ticked_faces_exactly(models, face_mode, tmp_path):
    """Two faces found on upload and outlined; with face 2 switched off the fill is, bit for
    bit, what plan_faces + fill_jobs give for face 1 alone: only face 1's hole changes
    (face 2's is kept as it was), and the hole download is face 1's hole."""
    runner = load_runner(models["centre"])
    path = str(tmp_path / "two.png")
    photo = two_faces(path)
    canvas, status, faces, numbers = app.show_photo(runner.config, path, face_mode)
    assert numbers == [1, 2] and "2 faces to fill" in status and canvas.shape == photo.shape
    grey = (canvas == app.SWITCHED_OFF).all(axis=-1).sum()
    canvas, status, _, _ = app.show_photo(runner.config, path, face_mode, faces, [1])
    assert "switched off: 2" in status and (canvas == app.SWITCHED_OFF).all(axis=-1).sum() > grey

    status, _, _, files = app.fill_photo(runner, str(tmp_path), path, None, face_mode, faces, [1])
    assert status.startswith("Filled 1 face (1; switched off: 2)")
    filled, hole = np.asarray(Image.open(files[0])), np.asarray(Image.open(files[1])) > 0
    [face1], _ = plan_faces(read_photo(path), faces[:1], runner.config)
    np.testing.assert_array_equal(filled, fill_jobs(runner, [[face1]])[0])
    np.testing.assert_array_equal(hole, face1.hole)
    np.testing.assert_array_equal(filled[~hole], photo[~hole])
    assert (filled != photo).any(axis=-1)[hole].mean() > 0.5, "face 1 was not filled"
    both, _ = plan_faces(read_photo(path), faces, runner.config)
    assert both[1].hole.sum() > 1000 and not (both[1].hole & hole).any()  # face 2's hole: in ~hole
    # Every face ticked: the jobs, and so the file, of inpaint --faces.
    status, _, _, files = app.fill_photo(runner, str(tmp_path), path, None, face_mode, faces)
    assert status.startswith("Filled 2 faces (1, 2), a ")
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])), fill_jobs(runner, [both])[0])


def test_face_mode_fills_a_painted_hole_through_the_faces_frames(models, face_mode, tmp_path):
    """A random-mask model: the hole painted over both faces is filled as ``inpaint --faces
    --mask`` fills it; with face 1 switched off only face 2's part is; with both off, one line."""
    runner = load_runner(models["random"])
    path = str(tmp_path / "two.png")
    two_faces(path)
    canvas, status, faces, numbers = app.show_photo(runner.config, path, face_mode)
    assert numbers == [1, 2] and "numbered square" in status
    strokes = np.zeros((720, 960, 4), np.uint8)  # the page's copy is the photo's size
    strokes[380:420, 460:500, 3] = 255  # face 1's nose
    strokes[190:210, 830:850, 3] = 255  # face 2's
    painted = {**canvas, "layers": [strokes]}
    jobs, _ = plan_faces(read_photo(path), faces, runner.config, strokes[..., 3] > 0)
    assert len(jobs) == 2
    for ticked, filled_jobs, said in (([1, 2], jobs, "Filled 2 faces (1, 2)"),
                                      ([2], jobs[1:], "Filled 1 face (2; switched off: 1)")):
        status, _, _, files = app.fill_photo(runner, str(tmp_path), path, painted, face_mode, faces, ticked)
        assert status.startswith(said)
        np.testing.assert_array_equal(np.asarray(Image.open(files[0])), fill_jobs(runner, [filled_jobs])[0])
    status = app.fill_photo(runner, str(tmp_path), path, painted, face_mode, faces, [])[0]
    assert status == ("**error:** nothing to fill: every face with a hole (1, 2) is switched off "
                      "under Faces to fill")


def test_a_photo_without_a_face_is_refused_never_filled_at_the_centre(models, face_mode, tmp_path):
    runner = load_runner(models["centre"])
    path = str(tmp_path / "wall.png")
    Image.fromarray(background((720, 960), 7)).save(path)
    canvas, status, faces, numbers = app.show_photo(runner.config, path, face_mode)
    assert faces == [] and numbers == [] and canvas.shape == (720, 960, 3)
    assert status == ('**error:** no face found; switch off "Find faces" to fill the centre square '
                      'without looking for faces')
    work = tmp_path / "work"
    work.mkdir()
    assert app.fill_photo(runner, str(work), path, None, face_mode, faces) == (status, None, None, None)
    assert not os.listdir(work)


def test_face_mode_off_fills_the_centre_as_before(models, face_mode, tmp_path):
    """Switched off, face mode changes nothing: the centre square of a photo with faces,
    filled through photo_job + fill_jobs as the inpaint command fills it."""
    runner = load_runner(models["centre"])
    path = str(tmp_path / "two.png")
    two_faces(path)
    faces = app.show_photo(runner.config, path, face_mode)[2]
    canvas, status, kept, numbers = app.show_photo(runner.config, path, None, faces)
    assert kept is faces and numbers == [] and "outlined square" in status
    status, _, _, files = app.fill_photo(runner, str(tmp_path), path, None, None, faces, [1])
    assert status.startswith("Filled a ")
    [centre] = fill_jobs(runner, [[photo_job(read_photo(path), runner.config)]])
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])), centre)


def test_face_mode_switch_on_the_page(models, face_mode, tmp_path):
    """On by default with a detector; without one (mtcnn missing) the page has none to show."""
    runner = load_runner(models["centre"])
    for given, shown in ((face_mode, True), (None, False)):
        page = app.build(runner, str(tmp_path), given)
        [switch] = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "face-mode"]
        assert switch.label == "Find faces (for models trained on faces)"
        assert switch.value is shown and switch.visible is shown
