"""Prepared TFRecord shards: conversion (atomic, once), read-back pixels, the training
stream over shards (every image once per epoch, seeded, resumable) and train.py --prepare."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ctxenc_tf.data import pipeline, prepare, records, sources
from ctxenc_tf.data.image_source import ImageFiles
from ctxenc_tf.errors import DataError
from helpers import REPO, tiny_config, write_images


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    write_images(str(d), 30, size=(40, 48))
    # Looks like a JPEG to the cheap screen (magic and end marker) but does not decode.
    (d / "img_9999.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 50 + b"\xff\xd9")
    return str(d)


def _prepare(folder, out, **overrides):
    config = tiny_config(data_dir=folder, val_fraction=0.2, **overrides)
    return config, prepare.prepare_records(config, str(out), images_per_shard=4, log=lambda *a: None)


def test_prepare_writes_shards_that_read_back_as_the_decoded_images(folder, tmp_path):
    out = tmp_path / "prepared"
    config, meta = _prepare(folder, out)
    split = sources.find_split(config)
    train_names = [os.path.basename(p) for p in split.train if "9999" not in p]
    assert meta["splits"]["train"]["names"] == train_names
    assert meta["splits"]["val"]["count"] == len(split.val) - any("9999" in p for p in split.val)
    assert [os.path.basename(p) for p, _ in meta["skipped"]] == ["img_9999.jpg"]
    assert len(meta["splits"]["train"]["shards"]) == -(-len(train_names) // 4)
    assert sorted(os.listdir(out)) == sorted([records.METADATA] + meta["splits"]["train"]["shards"]
                                             + meta["splits"]["val"]["shards"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    prepared = sources.find_prepared(config.replace(data_dir=str(out)))
    assert prepared.source == "tfrecord" and len(prepared.train) == len(train_names)
    stored = np.stack(list(prepared.train.images().as_numpy_iterator()))
    decoded = np.stack([pipeline.load_image(p, 32).numpy() for p in split.train if "9999" not in p])
    assert stored.shape == decoded.shape == (len(train_names), 32, 32, 3)
    np.testing.assert_allclose(stored, decoded, atol=1 / 127.5 + 1e-6)  # uint8 rounding only
    np.testing.assert_allclose(prepared.train.mean_colour(0), decoded.mean(axis=(0, 1, 2)),
                               atol=2e-3)

    # A shard cut short (a copy interrupted, a full disk) is refused before training.
    shard = out / meta["splits"]["train"]["shards"][0]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DataError, match=rf"{shard.name}: .* bytes, but .* were written; the shard is damaged"):
        sources.find_prepared(config.replace(data_dir=str(out)))


def test_prepare_is_done_once_and_refuses_foreign_directories(folder, tmp_path):
    out = tmp_path / "prepared"
    config, meta = _prepare(folder, out)
    stamp = os.path.getmtime(out / meta["splits"]["train"]["shards"][0])
    assert prepare.prepare_records(config, str(out), log=lambda *a: None) == meta
    assert os.path.getmtime(out / meta["splits"]["train"]["shards"][0]) == stamp
    with pytest.raises(DataError, match="already holds 32px images"):
        prepare.prepare_records(config.replace(image_size=64, hole_size=32), str(out), log=lambda *a: None)
    with pytest.raises(DataError, match="prepared with split settings"):
        prepare.prepare_records(config.replace(seed=1), str(out), log=lambda *a: None)
    with pytest.raises(DataError, match="prepared at 32x32, but --image-size=64"):
        sources.find_prepared(config.replace(data_dir=str(out), image_size=64, hole_size=32))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty directory"):
        prepare.prepare_records(config, str(other), log=lambda *a: None)
    os.remove(out / meta["splits"]["val"]["shards"][0])
    with pytest.raises(DataError, match="shard listed in prepared.json is missing"):
        sources.find_prepared(config.replace(data_dir=str(out)))


def test_an_older_preparation_reads_with_its_defaults(folder, tmp_path):
    """prepared.json of older versions has no resize, exclude or shard sizes: it reads as
    cropped, nothing excluded, sizes unchecked, and preparing again finds it done."""
    out = tmp_path / "prepared"
    config, meta = _prepare(folder, out)
    older = json.loads((out / records.METADATA).read_text())
    for key in ("resize", "exclude"):
        del older["split_settings"][key]
    for part in older["splits"].values():
        del part["bytes"]
    (out / records.METADATA).write_text(json.dumps(older))
    split = sources.find_prepared(config.replace(data_dir=str(out)))
    assert len(split.train) == meta["splits"]["train"]["count"]
    again = prepare.prepare_records(config, str(out), log=lambda *a: None)
    assert again["split_settings"] == meta["split_settings"]
    with pytest.raises(DataError, match="prepared with --resize crop, but --resize=stretch"):
        sources.find_prepared(config.replace(data_dir=str(out), resize="stretch"))


def test_failed_prepare_leaves_nothing_behind(folder, tmp_path, monkeypatch):
    calls = []

    def failing(pixels, name):
        calls.append(name)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        return real(pixels, name)

    real = prepare._example
    monkeypatch.setattr(prepare, "_example", failing)
    with pytest.raises(OSError):
        _prepare(folder, tmp_path / "prepared")
    assert os.listdir(tmp_path) == ["images"]


def test_training_stream_over_shards(folder, tmp_path):
    out = tmp_path / "prepared"
    config, meta = _prepare(folder, out)
    config = config.replace(data_dir=str(out), batch_size=4, epochs=2)
    records = sources.find_prepared(config).train
    n = len(records)
    steps = pipeline.steps_per_epoch(n, 4)

    def epoch(e, skip=0):
        batches = list(pipeline.training_batches(records, config, e, skip, e + 1).as_numpy_iterator())
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    (first, masks), (again, _), (second, _) = epoch(0), epoch(0), epoch(1)
    assert first.shape == (steps * 4, 32, 32, 3) and masks.shape == (steps * 4, 32, 32, 1)
    np.testing.assert_array_equal(first, again)  # a pure function of (seed, epoch)
    assert not np.array_equal(first, second)  # reshuffled and re-flipped every epoch
    # Every stored image appears at most once per epoch (up to a horizontal flip).
    stored = np.stack(list(records.images().as_numpy_iterator()))
    keys = {round(float(abs(im).sum()), 2) for im in stored}
    seen = [round(float(abs(im).sum()), 2) for im in first]
    assert set(seen) <= keys and len(set(seen)) == len(seen)
    # Resuming at step 2 gives the rest of the same epoch.
    resumed, _ = epoch(0, skip=2)
    np.testing.assert_array_equal(resumed, first[8:])
    # train_limit cuts the prepared split to a prefix.
    assert len(sources.find_prepared(config.replace(train_limit=5)).train) == 5


@pytest.mark.slow
def test_train_py_prepare_then_train_from_shards(folder, tmp_path):
    out = tmp_path / "prepared"
    r = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--prepare", str(out),
                        "--data-dir", folder, "--image-size", "32", "--val-fraction", "0.2"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"--data-dir {out}" in r.stdout
    meta = json.loads((out / records.METADATA).read_text())
    assert meta["image_size"] == 32 and meta["splits"]["train"]["count"] == 24

    from ctxenc_tf.training.fit import train

    lines = []
    model, history, paths = train(tiny_config(data_dir=str(out), output_dir=str(tmp_path / "run")),
                                  log=lines.append)
    assert any("(tfrecord): 24 train / 6 val images" in str(line) for line in lines)
    np.testing.assert_allclose(model.config.fill_value, meta["mean"], atol=1e-6)
    assert np.isfinite(history.history["val_rec_loss"]).all() and os.path.isfile(paths.final)

    r = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), "--prepare", str(out),
                        "--data-dir", folder, "--image-size", "64"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "already holds 32px" in r.stderr


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cached_stream_is_seeded_per_epoch_under_a_global_seed(folder, tmp_path, cache):
    import keras

    keras.utils.set_random_seed(0)  # as train() does; Dataset.shuffle(seed=tensor) then fails
    config = tiny_config(data_dir=folder, batch_size=4, val_fraction=0.2,
                         cache="memory" if cache == "memory" else str(tmp_path / "cache" / "decoded"))
    (tmp_path / "cache").mkdir()
    files = ImageFiles(tuple(p for p in sources.find_split(config).train if "9999" not in p), 32)

    def epoch(e):
        return np.concatenate([b[0] for b in pipeline.training_batches(files, config, e, 0, e + 1)
                               .as_numpy_iterator()])

    first, again, second = epoch(0), epoch(0), epoch(1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    assert len(first) == pipeline.steps_per_epoch(len(files), 4) * 4


def test_commands_needing_image_files_use_the_prepared_source(folder, tmp_path):
    out = tmp_path / "prepared"
    config, _ = _prepare(folder, out)
    assert sources.find_split(config.replace(data_dir=str(out))).train == sources.find_split(config).train
    meta = json.loads((out / records.METADATA).read_text())
    meta["source"] = str(tmp_path / "gone")
    (out / records.METADATA).write_text(json.dumps(meta))
    with pytest.raises(DataError, match="source images .* are not on this machine"):
        sources.find_split(config.replace(data_dir=str(out)))


@pytest.mark.parametrize("cache", ["memory", "file"])
@pytest.mark.parametrize("kind", ["images", "prepared"])
def test_cache_is_read_part_by_part_in_a_new_order_every_epoch(tmp_path, monkeypatch, cache, kind):
    """Parts of 4 images (prepared: two shards of 2): each epoch has every image once, part
    by part, the parts in an order of its own; resuming continues the same epoch."""
    from PIL import Image

    from ctxenc_tf.data.cache import part_path

    monkeypatch.setattr(pipeline, "CACHE_PART", 4)
    images = tmp_path / "flat"
    images.mkdir()
    for i in range(24):  # one flat colour each: an image is known by it, flipped or not
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(images / f"{i:02d}.png")
    prefix = str(tmp_path / "decoded")
    config = tiny_config(data_dir=str(images), batch_size=4, epochs=2, val_fraction=0.17,
                         cache="memory" if cache == "memory" else prefix)
    if kind == "prepared":
        prepare.prepare_records(config, str(tmp_path / "prepared"), images_per_shard=2, log=lambda *a: None)
        config = config.replace(data_dir=str(tmp_path / "prepared"))
    source = sources.find_sources(config).train
    assert len(source) == 20
    stored = [round(float(im[0, 0, 0]), 4) for im in source.images().as_numpy_iterator()]

    def epoch(e, skip=0):
        batches = pipeline.training_batches(source, config, e, skip, e + 1).as_numpy_iterator()
        return [stored.index(round(float(im[0, 0, 0]), 4)) for b in batches for im in b[0]]

    first, second = epoch(0), epoch(1)
    orders = []
    for positions in (first, second):
        assert sorted(positions) == list(range(20))  # every image once
        parts = [p // 4 for p in positions]
        assert all(len(set(parts[i:i + 4])) == 1 for i in range(0, 20, 4))  # part by part
        orders.append(parts[::4])
    assert orders[0] != orders[1]
    assert epoch(0) == first  # seeded (read back from the finished cache files too)
    assert epoch(1, skip=2) == second[8:]
    if cache == "file":
        assert all(os.path.exists(part_path(prefix, i) + ".index") for i in range(5))
        assert not [p for p in os.listdir(tmp_path) if "_" in p]  # no unfinished part left
