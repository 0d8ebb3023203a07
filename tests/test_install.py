"""README's install line installs the package, so that people run it from where their photos
are: ``cd ~/photos && ctxenc-tf inpaint --faces ...`` and ``python -m ctxenc_tf ...`` work in
any folder, and run this checkout's code."""

import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from helpers import REPO, not_installed

PORTRAIT = os.path.join(REPO, "ctxenc_tf", "assets", "photos", "astronaut.png")
HOW = "pip install -r requirements.txt -e . (README's install line)"


def _environment() -> dict:
    # Nothing may point Python at the checkout: only the installed package counts.
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_installed_package_is_this_checkout(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import ctxenc_tf; print(ctxenc_tf.__file__)"], cwd=tmp_path,
                       env=_environment(), capture_output=True, text=True, timeout=120)
    if "No module named 'ctxenc_tf'" in r.stderr:
        not_installed("the ctxenc-tf package", HOW)
    assert r.returncode == 0, r.stderr[-2000:]
    assert os.path.realpath(r.stdout.strip()) == os.path.realpath(os.path.join(REPO, "ctxenc_tf", "__init__.py"))


def test_commands_run_from_the_photos_folder(models, tmp_path):
    script = shutil.which("ctxenc-tf", path=os.path.dirname(sys.executable))
    if script is None:
        not_installed("the ctxenc-tf console script", HOW)
    photos = tmp_path / "my photos"
    photos.mkdir()
    shutil.copy(PORTRAIT, photos / "me.png")
    for command in ([script], [sys.executable, "-m", "ctxenc_tf"]):
        r = subprocess.run(command + ["inpaint", "--faces", "--model", models["centre"], "me.png", "--out", "filled",
                                      "--overwrite", "--progress", "off"], cwd=photos, env=_environment(),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert r.stdout.strip() == "wrote 1 filled image(s) to filled"
    out = np.asarray(Image.open(photos / "filled" / "me_filled.png"))
    assert out.shape == (512, 512, 3) and (out != np.asarray(Image.open(PORTRAIT))).any()
