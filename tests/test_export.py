"""Export: SavedModel signatures and TFLite variants match Keras; versions are atomic;
export.py reports parity and fails with one line on bad checkpoints."""

import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from ctxenc_tf.config import TFLITE_VARIANTS, ModelConfig, training_data
from ctxenc_tf.data import hole_masks, pipeline, samples, sources
from ctxenc_tf.export import parity, tflite, warmup
from ctxenc_tf.export.saved_model import SIGNATURES, export_saved_model, next_version
from ctxenc_tf.inference.runner import KerasRunner, load_runner
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.utils import atomic
from helpers import FACES, REPO, run_model, tiny_config

# Every test here exports or trains (in subprocesses): slow (see pytest.ini).
pytestmark = pytest.mark.slow

FACE_FILES = sorted(glob.glob(os.path.join(FACES, "*.jpg")))

# Bounds for the quantised TFLite variants on the predicted region (pixels in [0, 1]):
# (max abs diff, min PSNR in dB vs Keras). They bound quantisation error (1e-3 to 1e-2 of
# a pixel, set by the weights and calibration), which is four or more orders of magnitude
# above the float32 kernel differences between CPUs. float32 TFLite must match within 1e-4:
# XNNPACK and oneDNN sum in different orders, which costs ~1e-6 of a pixel on any CPU.
QUANTISED_BOUNDS = {"float16": (2e-3, 50.0), "dynamic_int8": (0.05, 35.0), "full_int8": (0.1, 28.0)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained 32x32 model (real faces, so quantisation sees real activations)
    and its checkpoint path. In float32 on every CPU: the parity bounds below compare the
    Keras model with its float32 exports (a mixed-precision model exports its float32 copy)."""
    from ctxenc_tf.training.fit import train

    out = tmp_path_factory.mktemp("run")
    config = tiny_config(train_limit=64, val_limit=8, output_dir=str(out), precision="float32")
    model, _, paths = train(config, log=lambda *a: None)
    return model, paths.final


@pytest.fixture(scope="module")
def faces(trained):
    """16 real faces at the model's size, ``[16, 32, 32, 3]`` in [0, 1], none of the 32
    that calibrate test_tflite_variants_match_keras's full_int8."""
    config = trained[0].config
    files = samples.sample_files(config, {"calibration": 32, "parity": 16})["parity"]
    return samples.load_images(files, config.image_size)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export"))
    return out, export_saved_model(trained[0], out)


def keras_inpaint(model, images, hole):
    """Keras ``ContextEncoder.call`` and generator output, rescaled to [0, 1]."""
    x = images * 2.0 - 1.0
    completed = (model([x, hole]).numpy() + 1.0) / 2.0
    prediction = (model.generator([x, hole]).numpy() + 1.0) / 2.0
    return completed, prediction


def centre_masks(config, n):
    return np.broadcast_to(hole_masks.center_mask(config.image_size, config.hole_size).numpy()[None],
                           (n, config.image_size, config.image_size, 1)).astype(np.float32)


def test_saved_model_layout_and_signature_specs(trained, exported):
    model, _ = trained
    out, path = exported
    assert path == os.path.join(out, "saved_model", "1")
    assert json.load(open(os.path.join(out, "config.json")))["fill_value"] == list(model.config.fill_value)
    assert os.path.isfile(os.path.join(path, "assets.extra", "config.json"))
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")]  # no temp dirs

    sigs = tf.saved_model.load(path).signatures
    assert set(SIGNATURES) <= set(sigs)
    s, o = model.config.image_size, model.config.output_size

    def spec(name):
        inputs = sigs[name].structured_input_signature[1]
        return ({k: (v.dtype, tuple(v.shape)) for k, v in inputs.items()},
                {k: (v.dtype, tuple(v.shape)) for k, v in sigs[name].structured_outputs.items()})

    pixels = {"completed": (tf.float32, (None, s, s, 3)), "prediction": (tf.float32, (None, o, o, 3))}
    assert spec("serving_default") == ({"images": (tf.float32, (None, s, s, 3))}, pixels)
    assert spec("inpaint") == ({"images": (tf.float32, (None, s, s, 3)),
                                "masks": (tf.float32, (None, s, s, 1))}, pixels)
    assert spec("serving_uint8") == ({"images": (tf.uint8, (None, s, s, 3))},
                                     {k: (tf.uint8, v[1]) for k, v in pixels.items()})
    assert spec("serving_bytes") == ({"image_bytes": (tf.string, (None,))},
                                     {"completed_png_bytes": (tf.string, (None,))})


def test_saved_model_matches_keras(trained, exported, faces):
    model, _ = trained
    sigs = tf.saved_model.load(exported[1]).signatures
    n, config = len(faces), model.config

    out = sigs["serving_default"](images=tf.constant(faces))
    completed, prediction = keras_inpaint(model, faces, centre_masks(config, n))
    assert np.abs(out["completed"].numpy() - completed).max() <= 1e-5
    assert np.abs(out["prediction"].numpy() - prediction).max() <= 1e-5
    # the context outside the hole is the input bit for bit, for any float input
    hole = centre_masks(config, n).astype(bool)[..., 0]
    np.testing.assert_array_equal(out["completed"].numpy()[~hole], faces[~hole])
    noise = np.random.default_rng(1).uniform(0, 1, faces.shape).astype(np.float32)
    np.testing.assert_array_equal(sigs["serving_default"](images=tf.constant(noise))["completed"].numpy()[~hole],
                                  noise[~hole])

    # user-drawn holes anywhere (random squares) through `inpaint`
    hole = np.stack([hole_masks.random_square_mask(tf.constant([i, 7]), config.image_size, config.hole_size)
                     for i in range(n)]).astype(np.float32)
    out = sigs["inpaint"](images=tf.constant(faces), masks=tf.constant(hole))
    assert np.abs(out["completed"].numpy() - keras_inpaint(model, faces, hole)[0]).max() <= 1e-5

    as_uint8 = np.round(faces * 255).astype(np.uint8)
    out = sigs["serving_uint8"](images=tf.constant(as_uint8))
    expected = keras_inpaint(model, as_uint8 / np.float32(255), centre_masks(config, n))[0]
    assert out["completed"].dtype == tf.uint8
    np.testing.assert_array_equal(out["completed"].numpy()[~centre_masks(config, n).astype(bool)[..., 0]],
                                  as_uint8[~centre_masks(config, n).astype(bool)[..., 0]])
    assert np.abs(out["completed"].numpy().astype(int) - np.round(expected * 255)).max() <= 1


def test_warmup_requests_replay_on_the_saved_model(trained, exported):
    """Every request of the warm-up file TF Serving replays runs on its signature and gives
    what Keras gives for the same real images."""
    model, _ = trained
    config = model.config
    path = os.path.join(exported[1], "assets.extra", warmup.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    requests = [log.predict_log.request for log in logs]
    names = [r.model_spec.signature_name for r in requests]
    assert set(names) == set(SIGNATURES)
    assert [len(r.inputs["image_bytes"].string_val) for r in requests if r.model_spec.signature_name
            == "serving_bytes"] == list(warmup.BATCH_SIZES)
    real = samples.real_images(config, 4)  # what the export uses by default
    real_uint8 = np.round(real * 255).astype(np.uint8)
    sigs = tf.saved_model.load(exported[1]).signatures
    for name, request in zip(names, requests):
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = {k: v.numpy() for k, v in sigs[name](**{k: tf.constant(v) for k, v in inputs.items()}).items()}
        if name == "serving_bytes":
            sent = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in inputs["image_bytes"]])
            completed = np.stack([np.asarray(Image.open(io.BytesIO(p))) for p in outputs["completed_png_bytes"]])
        else:
            sent, completed = inputs["images"], outputs["completed"]
        n = len(sent)
        np.testing.assert_array_equal(sent, (real if sent.dtype == np.float32 else real_uint8)[np.arange(n) % 4])
        if name == "inpaint":
            np.testing.assert_array_equal(inputs["masks"], centre_masks(config, 1))
        unit = sent if sent.dtype == np.float32 else sent.astype(np.float32) / 255
        expected = keras_inpaint(model, unit, centre_masks(config, n))[0]
        # uint8 outputs are Keras rounded (one grey level); float ones match as in test_saved_model_matches_keras
        if completed.dtype == np.uint8:
            assert np.abs(completed - np.round(expected * 255)).max() <= 1
        else:
            assert np.abs(completed - expected).max() <= 1e-5


def test_serving_bytes_decodes_any_size_and_returns_png(trained, exported):
    model, _ = trained
    sig = tf.saved_model.load(exported[1]).signatures["serving_bytes"]
    face_jpeg = open(FACE_FILES[3], "rb").read()  # 178x218
    wide = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 90, 3), np.uint8)).save(wide, "PNG")
    photos = [face_jpeg, wide.getvalue()]

    pngs = sig(image_bytes=tf.constant(photos))["completed_png_bytes"].numpy()
    assert pngs.shape == (2,)
    for photo, png in zip(photos, pngs):
        got = np.asarray(Image.open(io.BytesIO(png)))
        s = model.config.image_size
        assert got.shape == (s, s, 3)
        image = ((pipeline.decode_image(photo, s).numpy() + 1) / 2)[None]
        expected = keras_inpaint(model, image, centre_masks(model.config, 1))[0][0]
        assert np.abs(got.astype(int) - np.round(expected * 255)).max() <= 1


def test_versions_are_numbered_and_atomic(trained, tmp_path, monkeypatch):
    model, _ = trained
    out = str(tmp_path / "exp")
    assert export_saved_model(model, out).endswith(os.path.join("saved_model", "1"))
    assert export_saved_model(model, out, version=5).endswith("5")
    assert next_version(os.path.join(out, "saved_model")) == 6
    with pytest.raises(FileExistsError):
        export_saved_model(model, out, version=5)

    def broken_save(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError):
        export_saved_model(model, out)
    # the failed version 6 left nothing behind that TF Serving could pick up
    assert sorted(os.listdir(os.path.join(out, "saved_model"))) == ["1", "5"]


def test_tflite_variants_match_keras(trained, faces, tmp_path):
    model, _ = trained
    calibration = samples.load_images(samples.sample_files(model.config, {"calibration": 32})["calibration"],
                                      model.config.image_size)
    paths = tflite.export_tflite(model, str(tmp_path), representative_images=calibration)
    assert set(paths) == set(TFLITE_VARIANTS)

    from ai_edge_litert.interpreter import Interpreter

    s, o = model.config.image_size, model.config.output_size
    for path in paths.values():
        interpreter = Interpreter(model_path=path)
        signatures = interpreter.get_signature_list()
        assert signatures["serving_default"] == {"inputs": ["images"], "outputs": ["completed", "prediction"]}
        assert sorted(signatures["inpaint"]["inputs"]) == ["images", "masks"]
        details = interpreter.get_signature_runner("inpaint").get_input_details()
        assert tuple(details["images"]["shape"]) == (1, s, s, 3)
        assert details["images"]["dtype"] == np.float32  # float I/O even for full_int8
        outputs = interpreter.get_signature_runner("serving_default").get_output_details()
        assert tuple(outputs["prediction"]["shape"]) == (1, o, o, 3)

    sizes = {v: os.path.getsize(p) for v, p in paths.items()}
    assert sizes["float16"] < sizes["float32"] and sizes["full_int8"] < sizes["float16"]

    rows = {r["name"]: r for r in parity.measure_parity(model, paths, faces)}
    print("\n" + parity.format_table(list(rows.values()), len(faces)))
    assert rows["float32"]["max_abs"] <= 1e-4 and rows["float32"]["completed_max_abs"] <= 1e-4
    # Every format, quantised ones included, keeps the context outside the hole exactly.
    assert {name: r["outside_max_abs"] for name, r in rows.items()} == {name: 0.0 for name in rows}
    for variant, (max_abs, min_psnr) in QUANTISED_BOUNDS.items():
        assert rows[variant]["max_abs"] <= max_abs, (variant, rows[variant])
        assert rows[variant]["psnr"] >= min_psnr, (variant, rows[variant])

    # the inpaint signature of the float32 file with user-drawn holes
    hole = np.stack([hole_masks.random_square_mask(tf.constant([i, 3]), s, model.config.hole_size)
                     for i in range(4)]).astype(np.float32)
    got = run_model(paths["float32"], faces[:4], hole)
    assert np.abs(got["completed"] - keras_inpaint(model, faces[:4], hole)[0]).max() <= 1e-4


def test_default_geometry_signatures(tmp_path):
    """The real 128/64/4 geometry (narrow layers to stay fast): shapes in SavedModel and TFLite."""
    config = ModelConfig(bottleneck=64, gen_filters=8, disc_filters=8, fill_value=(0.2, 0.0, -0.1))
    model = ContextEncoder(config)
    path = export_saved_model(model, str(tmp_path))
    sigs = tf.saved_model.load(path).signatures
    assert sigs["serving_default"].structured_outputs["completed"].shape.as_list() == [None, 128, 128, 3]
    assert sigs["serving_default"].structured_outputs["prediction"].shape.as_list() == [None, 64, 64, 3]
    face = open(FACE_FILES[0], "rb").read()
    png = sigs["serving_bytes"](image_bytes=tf.constant([face]))["completed_png_bytes"].numpy()[0]
    assert Image.open(io.BytesIO(png)).size == (128, 128)

    paths = tflite.export_tflite(model, str(tmp_path), variants=("float32",))
    images = samples.real_images(config, 2)
    got = run_model(paths["float32"], images)
    assert got["completed"].shape == (2, 128, 128, 3) and got["prediction"].shape == (2, 64, 64, 3)
    assert np.abs(got["completed"] - run_model(model, images)["completed"]).max() <= 1e-4


def run_export(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "export.py"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})


def test_export_cli_writes_everything_and_prints_parity(trained, tmp_path):
    out = str(tmp_path / "exp")
    result = run_export("--checkpoint", trained[1], "--out", out, "--variants", "float32", "full_int8",
                        "--calibration-images", "4", "--parity-images", "4")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no TensorFlow/TFLite log lines (quantisation, delegates) without --verbose
    assert os.path.isdir(os.path.join(out, "saved_model", "1", "variables"))
    assert os.path.isfile(os.path.join(out, "tflite", "ctxenc_float32.tflite"))
    assert os.path.isfile(os.path.join(out, "tflite", "ctxenc_full_int8.tflite"))
    assert os.path.isfile(os.path.join(out, "config.json"))
    rows = [line.split("|") for line in result.stdout.splitlines() if line.startswith("| ")]
    table = {r[1].strip(): (float(r[3]), float(r[6])) for r in rows[1:]}  # name -> max abs diff, outside
    assert set(table) == {"keras", "saved_model", "float32", "full_int8"}
    assert table["saved_model"][0] <= 1e-5 and table["float32"][0] <= 1e-4
    assert all(outside == 0 for _, outside in table.values())
    # which training images calibrated, checked and warmed up the export, by file name
    with open(os.path.join(out, "samples.json")) as f:
        used = json.load(f)
    assert {k: len(v) for k, v in used.items()} == {"calibration": 4, "parity": 4, "warmup": 4}
    assert not set(used["calibration"]) & set(used["parity"]) and used["warmup"] == used["parity"]
    expected = samples.sample_files(trained[0].config, {"calibration": 4, "parity": 4})
    assert used["parity"] == [os.path.basename(p) for p in expected["parity"]]


def test_export_samples_spread_over_the_training_split():
    """Calibration and parity images are disjoint seeded spreads over the whole training
    split: on the bundled faces (sorted, 142 frames of one person first) the 64
    calibration images come from all five videos and the 16 parity images from at least
    three, where the first 80 files are all one person's."""
    config = ModelConfig(image_size=32, hole_size=16, overlap=2)
    chosen = samples.sample_files(config, {"calibration": 64, "parity": 16})
    assert [len(v) for v in chosen.values()] == [64, 16]
    assert not set(chosen["calibration"]) & set(chosen["parity"])
    train = sources.find_split(training_data(config)).train
    videos = {os.path.basename(p).split("__")[0] for p in train}
    assert len({os.path.basename(p).split("__")[0] for p in train[:80]}) == 1  # what the first files are
    seen = {purpose: {os.path.basename(p).split("__")[0] for p in files} for purpose, files in chosen.items()}
    assert seen["calibration"] == videos and len(videos) == 5 and len(seen["parity"]) >= 3
    assert all(p in train for files in chosen.values() for p in files)
    # the same seed, the same images; a spread of 64 holds the 64 calibration images
    assert samples.sample_files(config, {"calibration": 64, "parity": 16}) == chosen
    assert samples.sample_files(config, {"images": 64})["images"] == chosen["calibration"]


def test_keras_runner_clips_inputs_as_the_exports_do(trained, exported, faces):
    """An input slightly outside [0, 1] gives the Keras runner the completed image of the
    clipped input, as the SavedModel's signature clips it."""
    model, _ = trained
    beyond = faces.copy()
    beyond[:, :6], beyond[:, -6:] = 1.05, -0.05  # bands of context above and below the hole
    keras = KerasRunner(model)
    hole = keras.centre_masks(len(faces))
    got, clipped = keras.inpaint(beyond, hole), keras.inpaint(np.clip(beyond, 0, 1), hole)
    for out, expected in zip(got, clipped):
        np.testing.assert_array_equal(out, expected)
    saved = load_runner(exported[1]).inpaint(beyond, hole)
    for out, expected in zip(got, saved):
        assert np.abs(out - expected).max() <= 1e-5  # the bound of test_saved_model_matches_keras


def one_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_export_cli_bad_checkpoints(tmp_path):
    missing = str(tmp_path / "nope.keras")
    result = run_export("--checkpoint", missing, "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and missing in one_error_line(result.stderr)

    import keras

    other = str(tmp_path / "other.keras")
    atomic.save_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), other)
    result = run_export("--checkpoint", other, "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "not a ContextEncoder" in one_error_line(result.stderr)
    assert not os.path.exists(tmp_path / "o" / "saved_model")


def test_export_cli_help_and_existing_version(trained, exported, capsys):
    from ctxenc_tf.cli import export as export_cli
    from ctxenc_tf.cli.common import run_main

    with pytest.raises(SystemExit) as exit_info:
        export_cli.parse_args(["--help"])
    assert exit_info.value.code == 0 and "--checkpoint" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        run_main(export_cli.main, ["--checkpoint", trained[1], "--out", exported[0], "--version", "1"])
    assert exit_info.value.code == 2
    assert "already exists" in one_error_line(capsys.readouterr().err)
