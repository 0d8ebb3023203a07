"""The web app (``python -m ctxenc_tf app``) driven in a real headless Chromium through
Playwright: a photo uploaded, a stroke painted, the fill downloaded and compared pixel for
pixel with the inpaint command's output for the same photo and mask; bad uploads get a
line in the page and the app keeps serving. The start-up refusals run without a browser."""

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, exit_code, not_installed
from ctxenc_tf.cli import app
from ctxenc_tf.cli import inpaint as inpaint_cli
from ctxenc_tf.inference.runner import load_runner

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it)
# Without the networking flags Chromium waits on services a closed network never answers.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_SECONDS = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rotated_photo(path):
    """A 300x400 (wide x high) noise photo stored turned on its side with EXIF orientation 6; returns
    its upright pixels ``[400, 300, 3]`` uint8 (as viewers, and the inpaint command, see it)."""
    upright = np.random.default_rng(1).integers(0, 256, (400, 300, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    return upright


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


def upload(page, path, expect):
    """Upload ``path`` as the photo (replacing the one shown, once the page has taken in
    its removal); returns the status line once it holds ``expect``."""
    clear = page.locator("#photo button[aria-label=Clear]")
    if clear.count():
        clear.click()
        page.wait_for_function("document.querySelector('#status').innerText.trim() === ''")
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.wait_for_function("t => document.querySelector('#status').innerText.includes(t)", arg=expect)
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
    assert upload(page, tmp_path / "photo.png", "Paint").startswith("300x400 RGB photo.")
    paint_stroke(page)
    page.locator("#fill").click()
    page.wait_for_function("['Filled', 'error:'].some(t => document.querySelector('#status').innerText.includes(t))")
    assert page.locator("#status").inner_text().startswith("Filled")
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
                                        "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    np.testing.assert_array_equal(filled, np.asarray(Image.open(tmp_path / "cli" / "photo_filled.png")))


@pytest.mark.slow
def test_bad_uploads_get_a_line_in_the_page(served, browser, tmp_path):
    url, process, _, stderr = served
    page, requested = browser
    if page.url != url:  # the page the test before left is reused (each load takes seconds)
        page.goto(url)
    (tmp_path / "notes.png").write_text("not an image")
    refused = upload(page, tmp_path / "notes.png", "error: notes.png")
    assert refused.startswith("error: notes.png: cannot read image") and "/" not in refused
    Image.fromarray(np.full((20, 30), 40000, np.uint16)).save(tmp_path / "deep.png")
    assert "16-bit" in upload(page, tmp_path / "deep.png", "error: deep.png")
    rotated_photo(tmp_path / "fine.png")
    upload(page, tmp_path / "fine.png", "Paint")  # still serving
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
    canvas, status = app.show_photo(runner.config, str(tmp_path / "photo.png"))
    assert canvas.shape == upright.shape and "outlined square" in status
    status, _, _, files = app.fill_photo(runner, str(tmp_path), str(tmp_path / "photo.png"), None)
    assert exit_code(inpaint_cli.main, ["--model", models["centre"], str(tmp_path / "photo.png"),
                                        "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(files[0])),
                                  np.asarray(Image.open(tmp_path / "cli" / "photo_filled.png")))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 120000 pixels: over twice the limit
    _, status = app.show_photo(runner.config, str(tmp_path / "photo.png"))
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
