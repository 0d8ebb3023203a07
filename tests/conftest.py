"""Shared fixtures: tiny configs (32x32 images) and small image folders for fast CPU tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from ctxenc_tf.config import ModelConfig, RunConfig  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACES = os.path.join(REPO, "ctxenc_tf", "assets", "faces")


def not_installed(what: str, how: str):
    """Skip a test whose package or environment is missing here, saying how to install it;
    under CI (``CI`` set, as ``.ci/run`` sets it), which installs everything, fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: {how}")
    pytest.skip(f"{what} is not installed: {how}")


def tiny_config(**overrides) -> RunConfig:
    """A 32x32 model small enough to train in seconds on a CPU."""
    values = dict(image_size=32, hole_size=16, overlap=2, bottleneck=32, gen_filters=8,
                  disc_filters=8, batch_size=8, epochs=1, jit_compile=False, seed=0)
    values.update(overrides)
    return RunConfig.create(**values)


def tiny_model(**overrides) -> ModelConfig:
    """The model settings of :func:`tiny_config`."""
    return tiny_config(**overrides).model


def write_images(directory, count, size=(40, 48), mode="RGB", seed=0, ext="jpg"):
    """Write ``count`` smooth synthetic images (gradients + a blob) to ``directory``."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        c = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.05 * w * h))
        img = np.stack([(c[k] * (0.5 + 0.5 * xx / w) * (1 - blob) + 255 * blob * (k == i % 3))
                        for k in range(3)], -1)
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert(mode)
        path = os.path.join(directory, f"img_{i:04d}.{ext}")
        pil.save(path)
        paths.append(path)
    return paths


FILL = (0.1, 0.0, -0.1)  # a hole colour no photo test pixel happens to have


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Untrained tiny models saved as .keras: the centre model and a random-mask model."""
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.utils import atomic

    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, mask_type in (("centre", "center"), ("random", "random_square")):
        paths[name] = str(root / f"{name}.keras")
        atomic.save_model(ContextEncoder(tiny_model(fill_value=FILL, mask_type=mask_type)),
                          paths[name])
    return paths


@pytest.fixture
def tiny():
    return tiny_config()


@pytest.fixture
def image_folder(tmp_path):
    d = tmp_path / "images"
    write_images(str(d), 24)
    return str(d)


def exit_code(main, argv) -> int:
    """Run a command's ``main`` through :func:`ctxenc_tf.cli.common.run_main` as the shell would
    and return its exit status (0 also when it returns normally)."""
    from ctxenc_tf.cli.common import run_main

    try:
        return run_main(main, argv)
    except SystemExit as e:
        return e.code


def run_model(model_or_path, images, hole=None) -> dict:
    """``{"completed", "prediction"}`` of a ContextEncoder or a model file, through the one
    runner (:mod:`ctxenc_tf.inference.runner`); ``hole`` defaults to the centre hole."""
    from ctxenc_tf.inference.runner import KerasRunner, load_runner

    runner = load_runner(model_or_path) if isinstance(model_or_path, str) else KerasRunner(model_or_path)
    hole = runner.centre_masks(len(images)) if hole is None else hole
    return dict(zip(("completed", "prediction"), runner.inpaint(images, hole)))


# A tiny run of 2 steps per epoch on read_back_files' images (its --data-dir and --output-dir
# follow).
READ_BACK_TRAIN = ["--image-size", "32", "--hole-size", "16", "--overlap", "2", "--bottleneck", "8",
                   "--gen-filters", "4", "--disc-filters", "4", "--batch-size", "2", "--no-jit-compile",
                   "--train-limit", "4", "--val-limit", "2"]


@pytest.fixture(scope="session")
def read_back_files(tmp_path_factory):
    """Files the commands read back, as written (tests/test_schemas.py and test_fuzz.py
    edit copies): a 2-epoch ``run`` of :data:`READ_BACK_TRAIN` on ``images``, a
    ``prepared`` folder of them, and a float32 TFLite ``export`` of a centre model."""
    from ctxenc_tf.cli.train import main as train_main
    from ctxenc_tf.data.prepare import prepare
    from ctxenc_tf.export.tflite import export_tflite
    from ctxenc_tf.model.context_encoder import ContextEncoder

    root = tmp_path_factory.mktemp("read_back")
    w = {"root": root, "images": str(root / "images"), "run": str(root / "run"),
         "prepared": str(root / "prepared"), "export": str(root / "export")}
    write_images(w["images"], 6)
    assert exit_code(train_main, READ_BACK_TRAIN + ["--epochs", "2", "--data-dir", w["images"],
                                                    "--output-dir", w["run"]]) == 0
    prepare(RunConfig.create(image_size=32, hole_size=16, data_dir=w["images"]), w["prepared"], log=lambda line: None)
    export_tflite(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0))), w["export"], variants=("float32",))
    return w
