"""What the tests share besides fixtures (tests/conftest.py): tiny configs (32x32 images),
synthetic image folders, running a command or a model, a free local port, skipping what is
not installed. Test modules import these from here; pytest finds the fixtures by itself."""

import os
import socket

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.config import ModelConfig, RunConfig

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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
