"""The SavedModel our TensorFlow writes loads and runs in the TensorFlow of the TF Serving
image the Dockerfile names: TF Serving X.Y runs models with TensorFlow X.Y, so a separate
environment with that TensorFlow (``.venv-tfserving``, made by ``.ci/run``) stands in for it.
"""

import io
import os
import re
import subprocess
import textwrap

import numpy as np
import tensorflow as tf
from PIL import Image

from ctxenc_tf.data import hole_masks, samples
from ctxenc_tf.export.saved_model import export_saved_model
from ctxenc_tf.inference.formats import SIGNATURES
from ctxenc_tf.model.context_encoder import ContextEncoder
from helpers import REPO, not_installed, tiny_model

SERVING_PYTHON = os.environ.get("CTXENC_SERVING_TF_PYTHON",
                                os.path.join(REPO, ".venv-tfserving", "bin", "python"))

# Runs under the serving image's TensorFlow: no project code, only what TF Serving does.
RUN_SIGNATURES = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    path, inputs, outputs = sys.argv[1:]
    data = np.load(inputs, allow_pickle=True)
    sigs = tf.saved_model.load(path).signatures
    out = {}
    for name in sorted({key.split("/")[0] for key in data.files}):
        specs = sigs[name].structured_input_signature[1]
        feed = {k: tf.constant(data[f"{name}/{k}"], dtype=specs[k].dtype) for k in specs}
        out.update({f"{name}/{k}": v.numpy() for k, v in sigs[name](**feed).items()})
    np.savez(outputs, **out)
    print(tf.__version__)
""")


def dockerfile_version() -> str:
    dockerfile = open(os.path.join(REPO, "serving", "Dockerfile")).read()
    return re.search(r"^ARG TF_SERVING_VERSION=(\S+)$", dockerfile, re.M).group(1)


def test_export_runs_in_the_serving_images_tensorflow(tmp_path):
    version = dockerfile_version()
    if not os.path.isfile(SERVING_PYTHON):
        not_installed(f"TensorFlow {version} at {SERVING_PYTHON}", f"python3 -m venv .venv-tfserving && "
                      f".venv-tfserving/bin/pip install tensorflow-cpu=={version} (.ci/run does this)")
    model = ContextEncoder(tiny_model(seed=5))
    path = export_saved_model(model, str(tmp_path / "export"))
    config = model.config
    faces = samples.real_images(config, 3)
    as_uint8 = np.round(faces * 255).astype(np.uint8)
    pngs = []
    for image in as_uint8:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        pngs.append(buffer.getvalue())
    holes = np.stack([hole_masks.random_square_mask(tf.constant([i, 3]), config.image_size, config.hole_size)
                      for i in range(3)]).astype(np.float32)
    inputs = {"serving_default/images": faces, "serving_uint8/images": as_uint8,
              "serving_bytes/image_bytes": np.array(pngs, dtype=object),
              "inpaint/images": faces, "inpaint/masks": holes}
    np.savez(tmp_path / "inputs.npz", **inputs)

    result = subprocess.run([SERVING_PYTHON, "-c", RUN_SIGNATURES, path, str(tmp_path / "inputs.npz"),
                             str(tmp_path / "outputs.npz")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == version  # the environment is the image's TensorFlow
    theirs = dict(np.load(tmp_path / "outputs.npz", allow_pickle=True))

    sigs = tf.saved_model.load(path).signatures
    ours = {}
    for name in SIGNATURES:
        feed = {key.split("/")[1]: tf.constant(value) for key, value in inputs.items() if key.startswith(name + "/")}
        ours.update({f"{name}/{k}": v.numpy() for k, v in sigs[name](**feed).items()})
    assert set(theirs) == set(ours)
    for key, value in ours.items():
        if value.dtype == object:  # PNG bytes: compare the pixels
            value = np.stack([np.asarray(Image.open(io.BytesIO(v))) for v in value])
            theirs[key] = np.stack([np.asarray(Image.open(io.BytesIO(v))) for v in theirs[key]])
        # Another TensorFlow build may pick other kernels (summation order): float32 outputs
        # agree to ~1e-6 of a pixel, well inside 1e-5 (the SavedModel-vs-Keras bound of
        # test_export); uint8 outputs are those values rounded, so they agree within one level.
        bound = 1 if value.dtype == np.uint8 else 1e-5
        assert np.abs(theirs[key].astype(np.float64) - value).max() <= bound, key
