"""Shared fixtures: tiny models, configs and image folders for fast CPU tests, and the files
the commands read back. The plain helpers they use live in tests/helpers.py."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from ctxenc_tf.config import RunConfig
from helpers import (
    FILL,
    READ_BACK_TRAIN,
    exit_code,
    tiny_config,
    tiny_model,
    write_images,
)


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


@pytest.fixture(scope="session")
def read_back_files(tmp_path_factory):
    """Files the commands read back, as written (tests/test_schemas.py and test_fuzz.py
    edit copies): a 2-epoch ``run`` of :data:`READ_BACK_TRAIN` on ``images``, a
    ``prepared`` folder of them, and a float32 TFLite ``export`` of a centre model."""
    from ctxenc_tf.cli.train import main as train_main
    from ctxenc_tf.data.prepare import prepare_records
    from ctxenc_tf.export.tflite import export_tflite
    from ctxenc_tf.model.context_encoder import ContextEncoder

    root = tmp_path_factory.mktemp("read_back")
    w = {"root": root, "images": str(root / "images"), "run": str(root / "run"),
         "prepared": str(root / "prepared"), "export": str(root / "export")}
    write_images(w["images"], 6)
    assert exit_code(train_main, READ_BACK_TRAIN + ["--epochs", "2", "--data-dir", w["images"],
                                                    "--output-dir", w["run"]]) == 0
    prepare_records(RunConfig.create(image_size=32, hole_size=16, data_dir=w["images"]), w["prepared"],
                    log=lambda line: None)
    export_tflite(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0))), w["export"], variants=("float32",))
    return w
