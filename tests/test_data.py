"""Input pipeline: CelebA layout, image folders, square crop, bad files."""

import os

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.data import pipeline, sources
from ctxenc_tf.data.image_source import ImageFiles
from ctxenc_tf.errors import DataError
from helpers import tiny_config, write_images


def make_fake_celeba(root, n=12):
    """CelebA's layout: img_align_celeba/NNNNNN.jpg (178x218) + list_eval_partition.txt."""
    images = os.path.join(root, "img_align_celeba")
    paths = write_images(images, n, size=(178, 218))
    names = []
    for i, p in enumerate(paths):
        name = f"{i + 1:06d}.jpg"
        os.rename(p, os.path.join(images, name))
        names.append(name)
    splits = [0] * (n - 4) + [1, 1, 2, 2]
    with open(os.path.join(root, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{name} {s}\n" for name, s in zip(names, splits))
    return names, splits


def test_celeba_layout_and_partition(tmp_path):
    names, _ = make_fake_celeba(str(tmp_path))
    assert [os.path.basename(p) for p in sources.list_celeba(str(tmp_path), "val")] == names[-4:-2]
    assert [os.path.basename(p) for p in sources.list_celeba(str(tmp_path), "test")] == names[-2:]
    # pointing at img_align_celeba itself works too
    assert len(sources.list_celeba(str(tmp_path / "img_align_celeba"), "train")) == 8
    split = sources.find_split(tiny_config(data_dir=str(tmp_path), train_limit=5))
    assert split.source == "celeba" and len(split.train) == 5 and len(split.val) == 2


def test_bad_partition_line_names_file_and_line(tmp_path):
    make_fake_celeba(str(tmp_path))
    with open(tmp_path / "list_eval_partition.txt", "a") as f:
        f.write("000099.jpg train\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt:13"):
        sources.list_celeba(str(tmp_path), "train")


def test_dataset_batches_shapes_ranges_and_masks(tmp_path):
    make_fake_celeba(str(tmp_path))
    cfg = tiny_config(data_dir=str(tmp_path), batch_size=4)
    split = sources.find_sources(cfg)
    images, mask = next(iter(pipeline.image_dataset(split.train, cfg, training=True)))
    assert images.shape == (4, 32, 32, 3) and mask.shape == (4, 32, 32, 1)
    assert images.dtype.name == "float32" and -1 <= images.numpy().min() and images.numpy().max() <= 1
    assert mask.numpy()[:, 8:24, 8:24].all() and mask.numpy().sum() == 4 * 256


def test_square_crop_never_squashes(tmp_path):
    # 178x218 like CelebA: green bands top and bottom (20 px each), red square in between.
    img = np.zeros((218, 178, 3), np.uint8)
    img[:, :] = (0, 255, 0)
    img[20:198] = (255, 0, 0)
    path = str(tmp_path / "face.png")
    Image.fromarray(img).save(path)
    out = pipeline.load_image(path, 32).numpy()
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[..., 0], 1.0, atol=1e-5)  # all red: bands cropped away
    np.testing.assert_allclose(out[..., 1], -1.0, atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_palette_decode_to_rgb(tmp_path, mode):
    path = write_images(str(tmp_path), 1, mode=mode, ext="png")[0]
    out = pipeline.load_image(path, 16).numpy()
    assert out.shape == (16, 16, 3)
    if mode == "L":
        np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-6)


def test_bad_files_are_skipped_and_named(tmp_path):
    folder = tmp_path / "imgs"
    write_images(str(folder), 10)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"this is not an image at all")
    good = (folder / "img_0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "trailer.jpg").write_bytes(good + b"\x00camera trailer" * 100)  # data after EOI is fine
    split = sources.find_split(tiny_config(data_dir=str(folder), val_fraction=0.2))
    reasons = {os.path.basename(p): r for p, r in split.skipped}
    assert reasons == {"empty.jpg": "empty file", "notes.jpg": "not a JPEG/PNG/GIF/BMP image",
                       "truncated.jpg": "truncated JPEG"}
    assert len(split.train) + len(split.val) == 11


@pytest.mark.parametrize("setup,message", [
    (lambda d: None, "does not exist"),
    (lambda d: os.makedirs(d), "no image files"),
    (lambda d: (os.makedirs(d), open(os.path.join(d, "a.jpg"), "wb").close()), "no usable training image"),
])
def test_unusable_data_dir_errors_name_the_path(tmp_path, setup, message):
    d = str(tmp_path / "data")
    setup(d)
    with pytest.raises(DataError, match=message) as e:
        sources.find_split(tiny_config(data_dir=d))
    assert d in str(e.value)


def test_mean_colour_of_uniform_images(tmp_path):
    img = np.full((20, 30, 3), (255, 0, 127), np.uint8)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(paths[-1])
    np.testing.assert_allclose(ImageFiles(tuple(paths), 16).mean_colour(0), (1.0, -1.0, 127 / 127.5 - 1), atol=1e-5)


def test_mean_colour_is_a_seeded_spread_over_the_whole_split(tmp_path):
    """A sorted folder whose first half is black and second half white: the mean of a
    sample spread over the split sees both (the first images alone would be all black)."""
    paths = []
    for i, value in enumerate([0] * 6 + [255] * 6):
        paths.append(str(tmp_path / f"{i:02d}.png"))
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(paths[-1])
    source = ImageFiles(tuple(paths), 16)
    mean = source.mean_colour(0, limit=6)
    assert -1.0 < mean[0] < 1.0 and mean[0] == mean[1] == mean[2]
    assert source.mean_colour(0, limit=6) == mean  # seeded
    np.testing.assert_allclose(source.mean_colour(0), (0.0, 0.0, 0.0), atol=1e-6)  # all 12


def test_mean_colour_uses_the_runs_resize(tmp_path):
    """Red side bands, a blue centre square: the hole fill of a --resize stretch run counts
    the bands, a cropped run's does not."""
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = img[:, 30:] = (255, 0, 0)
    img[:, 10:30] = (0, 0, 255)
    Image.fromarray(img).save(tmp_path / "bands.png")
    Image.fromarray(img).save(tmp_path / "bands2.png")
    means = {resize: sources.find_sources(tiny_config(data_dir=str(tmp_path), resize=resize))
             .train.mean_colour(0) for resize in ("crop", "stretch")}
    np.testing.assert_allclose(means["crop"], (-1.0, -1.0, 1.0), atol=1e-5)
    assert means["stretch"][0] > -0.1 and means["stretch"][2] < 0.1  # half red, half blue
