"""``--seed`` makes masks, flips, shuffling and initial weights reproducible on CPU: two
runs (separate processes) with one seed agree exactly; another seed differs."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ctxenc_tf.data import pipeline
from ctxenc_tf.data.image_source import ImageFiles
from helpers import REPO, tiny_config, write_images

# Run in a fresh process: initial weights, then the weights after one epoch of train().
RUN = """
import sys
import keras, numpy as np
sys.path.insert(0, {tests!r})
from helpers import tiny_config
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.training.fit import train
config = tiny_config(data_dir={data!r}, output_dir={out!r}, seed={seed}, batch_size=4,
                     mask_type="random_region")
keras.utils.set_random_seed(config.seed)
initial = ContextEncoder(config.replace(fill_value=(0.0, 0.0, 0.0)).model).generator.get_weights()
model, _, _ = train(config, log=lambda *a: None)
np.savez({npz!r}, *initial, *model.generator.get_weights(), *model.discriminator.get_weights())
"""


def _stream(files, config):
    return [(i.numpy(), m.numpy()) for i, m in pipeline.training_batches(files, config)]


def test_seed_fixes_order_flips_and_masks(tmp_path):
    files = ImageFiles(tuple(write_images(str(tmp_path / "img"), 12)), 32)
    config = tiny_config(batch_size=4, epochs=2, mask_type="random_square", seed=7)
    first, again = _stream(files, config), _stream(files, config)
    other = _stream(files, config.replace(seed=8))
    assert len(first) == 6
    for (a_img, a_mask), (b_img, b_mask) in zip(first, again):
        np.testing.assert_array_equal(a_img, b_img)
        np.testing.assert_array_equal(a_mask, b_mask)
    images = lambda s: np.concatenate([b[0] for b in s])  # noqa: E731
    masks = lambda s: np.concatenate([b[1] for b in s])  # noqa: E731
    assert not np.array_equal(images(first), images(other))  # other order / flips
    assert not np.array_equal(masks(first), masks(other))
    # Epochs differ from each other (fresh order and masks every epoch).
    assert not np.array_equal(images(first[:3]), images(first[3:]))
    assert not np.array_equal(masks(first[:3]), masks(first[3:]))


def test_validation_masks_are_fixed(tmp_path):
    files = ImageFiles(tuple(write_images(str(tmp_path / "img"), 6)), 32)
    config = tiny_config(batch_size=4, mask_type="random_region")
    runs = [[m.numpy() for _, m in pipeline.image_dataset(files, config, training=False)] for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][0][0], runs[0][0][1])  # but differ between images


@pytest.mark.slow
def test_two_processes_with_one_seed_train_identically(tmp_path):
    folder = str(tmp_path / "img")
    write_images(folder, 20)

    def start(name, seed):
        script = RUN.format(tests=os.path.join(REPO, "tests"), data=folder, out=str(tmp_path / name),
                            seed=seed, npz=str(tmp_path / f"{name}.npz"))
        return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = {name: start(name, seed=5) for name in "ab"}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    a, b = (np.load(tmp_path / f"{n}.npz") for n in "ab")
    assert len(a.files) == len(b.files) > 0
    for key in a.files:  # initial weights, then trained generator and discriminator
        np.testing.assert_array_equal(a[key], b[key])


def test_seed_sets_initial_weights_and_no_two_layers_start_alike():
    """Another seed, other initial weights; and each layer draws its own values (a shared,
    pre-seeded initialiser would give every layer of one shape the same kernel)."""
    import keras

    from ctxenc_tf.model.context_encoder import ContextEncoder
    config = tiny_config(fill_value=(0.0, 0.0, 0.0))
    keras.utils.set_random_seed(0)
    model = ContextEncoder(config.model)
    keras.utils.set_random_seed(1)
    other = ContextEncoder(config.model)
    assert not np.array_equal(model.generator.get_weights()[0], other.generator.get_weights()[0])
    kernels = [w for w in model.generator.get_weights() + model.discriminator.get_weights()
               if w.ndim == 4]
    same_shape = {}
    for k in kernels:
        same_shape.setdefault(k.shape, []).append(k)
    pairs = [(x, y) for group in same_shape.values() for i, x in enumerate(group) for y in group[i + 1:]]
    assert pairs, "expected layers of equal kernel shape in the tiny model"
    assert not any(np.array_equal(x, y) for x, y in pairs)
