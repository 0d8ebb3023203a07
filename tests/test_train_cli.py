"""train.py end to end in a subprocess: outputs written, help, one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO

TINY_FLAGS = ["--image-size", "32", "--bottleneck", "16", "--gen-filters", "8", "--disc-filters", "8",
              "--batch-size", "8", "--epochs", "2", "--train-limit", "16", "--val-limit", "8",
              "--no-jit-compile"]


def run_train(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_train_on_bundled_faces_writes_checkpoint_grid_and_logs(tmp_path):
    out = tmp_path / "run"
    r = run_train(*TINY_FLAGS, "--epochs", "4", "--sample-every", "3",
                  "--data-dir", os.path.join(REPO, "ctxenc_tf", "assets", "faces"), "--output-dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""  # no TensorFlow log lines without --verbose
    for name in ("best.keras", "final.keras", "config.json", "log.csv", "samples/latest.png"):
        assert (out / name).is_file(), name
    # grids of the first epoch, every 3rd and the last
    assert sorted(p.name for p in (out / "samples").glob("epoch_*.png")) == \
        ["epoch_001.png", "epoch_003.png", "epoch_004.png"]
    assert list((out / "logs").rglob("events.out.tfevents*"))
    # the sample grids are in TensorBoard's Images tab too, one per epoch
    import tensorflow as tf
    steps = [event.step for path in (out / "logs" / "samples").glob("events.out.tfevents*")
             for event in tf.compat.v1.train.summary_iterator(str(path))
             for value in event.summary.value if value.tag == "samples"]
    assert steps == [1, 2, 3, 4]
    # checkpoints hold the networks, not the optimisers (those are in the resume state)
    from ctxenc_tf.model.checkpoint import load_context_encoder
    model = load_context_encoder(str(out / "best.keras"))
    weight_bytes = sum(w.numpy().nbytes for w in model.weights)
    for name in ("best.keras", "final.keras"):
        assert (out / name).stat().st_size < 1.2 * weight_bytes + 200_000, name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["image_size"] == 32 and cfg["model"]["hole_size"] == 16 and len(cfg["model"]["fill_value"]) == 3
    assert "best checkpoint" in r.stdout
    lines = (out / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[0] == "epoch" and len(lines) == 5 and "val_rec_loss" in header
    assert [row.split(",")[header.index("partial")] for row in lines[1:]] == ["0"] * 4


@pytest.mark.slow
def test_training_into_a_file_writes_one_plain_line_per_epoch(tmp_path):
    """With stdout in a file (a log, CI) Keras' bar would be redrawn there with \\b and \\r."""
    log = tmp_path / "train.log"
    with open(log, "w") as stdout:
        r = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *TINY_FLAGS, "--data-dir",
                            os.path.join(REPO, "ctxenc_tf", "assets", "faces"), "--output-dir", str(tmp_path / "run")],
                           cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    text = log.read_bytes().decode()  # read_text() would turn \r into \n
    assert not {"\r", "\b", "\x1b"} & set(text), repr(text[:500])
    assert len([line for line in text.splitlines() if "val_rec_loss:" in line]) == 2, text


def test_progress_bar_only_on_a_terminal_unless_asked():
    from ctxenc_tf.cli.common import fit_verbose, shows_bar

    assert [fit_verbose("auto", terminal) for terminal in (True, False)] == [1, 2]  # Keras' verbose
    assert [fit_verbose(progress, False) for progress in ("bar", "lines", "off")] == [1, 2, 0]
    assert [shows_bar("auto", terminal) for terminal in (True, False)] == [True, False]  # tqdm's
    assert [shows_bar(progress, True) for progress in ("bar", "lines", "off")] == [True, False, False]


@pytest.mark.slow
def test_help_documents_every_flag():
    r = run_train("--help")
    assert r.returncode == 0
    for flag in ("--data-dir", "--image-size", "--hole-size", "--overlap", "--mask-type", "--bottleneck",
                 "--reconstruction-loss", "--adversarial-loss", "--discriminator", "--rec-weight",
                 "--adv-weight", "--learning-rate", "--g-lr-multiplier", "--beta-1", "--batch-size",
                 "--epochs", "--train-limit", "--val-limit", "--preset", "--output-dir", "--seed"):
        assert flag in r.stdout, flag


@pytest.mark.parametrize("args,needle", [
    (["--data-dir", "/nonexistent/celeba"], "/nonexistent/celeba: data directory does not exist"),
    (["--image-size", "100"], "--image-size=100"),
    (["--hole-size", "128"], "--hole-size=128"),
    (["--mask-type", "circle"], "--mask-type='circle'"),
])
@pytest.mark.slow
def test_bad_arguments_give_one_error_line(args, needle):
    r = run_train(*args, timeout=120)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip() and not _tf_noise(line)]
    assert lines == [lines[0]] and lines[0].startswith("error:") and needle in lines[0], r.stderr


def _tf_noise(line):
    return line.startswith(("WARNING: All log messages", "I0000", "E0000", "W0000"))


@pytest.mark.slow
def test_seed_preset_trains_exports_and_inpaints_end_to_end(tmp_path):
    """``--preset seed`` on the bundled faces, then export and inpaint with a drawn hole
    off the centre (the seed's model fills a square wherever the hole is)."""
    from PIL import Image

    out = tmp_path / "run"
    r = run_train("--preset", "seed", "--image-size", "32", "--bottleneck", "16", "--gen-filters", "8",
                  "--disc-filters", "8", "--epochs", "1", "--train-limit", "16", "--val-limit", "8",
                  "--no-jit-compile", "--output-dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    run = json.loads((out / "config.json").read_text())
    model = run["model"]
    assert (model["generator"], model["discriminator"], model["reconstruction_loss"],
            model["adversarial_loss"], model["mask_type"], model["overlap"], model["fill_value"]) == \
        ("seed", "patchgan", "l1", "lsgan", "random_square", 0, [1.0, 1.0, 1.0])
    assert (run["batch_size"], run["g_lr_multiplier"], run["resize"], run["val_mask"]) == (8, 1.0, "stretch", "center")
    exported = tmp_path / "export"
    r = subprocess.run([sys.executable, os.path.join(REPO, "export.py"), "--checkpoint", str(out / "best.keras"),
                        "--out", str(exported), "--variants", "float32", "--parity-images", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    face = os.path.join(REPO, "ctxenc_tf", "assets", "faces", "video-carphone_pristine__0002__0.jpg")
    mask = np.zeros((218, 178), np.uint8)
    mask[20:60, 100:150] = 255  # top right, away from the centre
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = subprocess.run([sys.executable, "-m", "ctxenc_tf", "inpaint", "--model",
                        str(exported / "tflite" / "ctxenc_float32.tflite"), face, "--mask",
                        str(tmp_path / "mask.png"), "--out", str(tmp_path / "filled"), "--progress", "off"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr == ""  # not even TFLite's "Created TensorFlow Lite XNNPACK delegate"
    original = np.asarray(Image.open(face).convert("RGB"))
    filled = np.asarray(Image.open(next((tmp_path / "filled").glob("*.png"))).convert("RGB"))
    hole = mask > 0
    np.testing.assert_array_equal(filled[~hole], original[~hole])
    assert (filled[hole] != original[hole]).any()
