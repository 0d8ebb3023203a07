"""The evaluate command on a tiny model and a few images: table, JSON, CSV and grid."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ctxenc_tf.cli import evaluate as evaluate_cli
from ctxenc_tf.data import sources
from ctxenc_tf.model.checkpoint import load_context_encoder
from ctxenc_tf.model.context_encoder import ContextEncoder
from ctxenc_tf.utils import atomic
from helpers import exit_code, tiny_config, tiny_model, write_images

COLUMNS = ("l1_pct", "l2_pct", "psnr_db", "ssim")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.1, 0.0, -0.1))), path)
    return path


def run(argv):
    """``python -m ctxenc_tf evaluate argv``; returns the exit status."""
    return exit_code(evaluate_cli.main, argv)


def test_table_json_csv_and_grid(model_path, tmp_path):
    folder = tmp_path / "images"
    write_images(str(folder), 10, size=(40, 36))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "eval"
    assert run(["--model", model_path, "--data-dir", str(folder), "--out", str(out),
                "--batch-size", "4", "--grid-count", "2", "--progress", "off"]) == 0

    table = (out / "metrics.md").read_text()
    for name in ("context encoder", "mean-colour fill", "Telea (OpenCV)"):
        assert all(f"| {name} | {region} |" in table for region in ("core", "hole", "image"))
    assert "core = the hidden core" in table and "pasted back from the truth" in table
    report = json.loads((out / "metrics.json").read_text())
    assert report["images"] == 10 and report["split"] == "all"
    assert [s["file"] for s in report["skipped"]] == [str(folder / "broken.png")]

    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and len({r["file"] for r in rows}) == 10
    for method in ("model", "mean", "telea"):
        for key in COLUMNS:
            values = [float(r[f"{method}/hole/{key}"]) for r in rows]
            assert report["metrics"][method]["hole"][key]["mean"] == pytest.approx(np.mean(values))
        # Every method keeps the truth on the overlap ring: the 16x16 hole's error is the
        # 12x12 core's, spread over 256 pixels instead of 144.
        core_l1 = report["metrics"][method]["core"]["l1_pct"]["mean"]
        hole_l1 = report["metrics"][method]["hole"]["l1_pct"]["mean"]
        assert hole_l1 == pytest.approx(core_l1 * 144 / 256, rel=1e-4)
        # Only the 16x16 hole of the 32x32 image changes: whole-image errors are 1/4 of it.
        image_l1 = report["metrics"][method]["image"]["l1_pct"]["mean"]
        assert image_l1 == pytest.approx(hole_l1 / 4, rel=1e-4)
        assert report["metrics"][method]["image"]["psnr_db"]["mean"] > \
            report["metrics"][method]["hole"]["psnr_db"]["mean"]
    model_row = [line for line in table.splitlines() if line.startswith("| context encoder | core")][0]
    assert f"{report['metrics']['model']['core']['psnr_db']['mean']:.2f}" in model_row

    grid = Image.open(out / "worst_best.png")
    columns = 5  # masked input, model, mean fill, Telea, original
    assert grid.width > columns * 32 and grid.height > 4 * 32  # 2 worst + 2 best rows of 32 px


def test_folder_val_split_matches_training_split(model_path, tmp_path):
    folder = tmp_path / "images"
    write_images(str(folder), 20, size=(32, 32))
    out = tmp_path / "eval"
    assert run(["--model", model_path, "--data-dir", str(folder), "--split", "val", "--out",
                str(out), "--baselines", "none", "--progress", "off"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == {"model"}
    with open(out / "per_image.csv") as f:
        evaluated = sorted(r["file"] for r in csv.DictReader(f))
    split = sources.find_split(tiny_config(data_dir=str(folder)))
    assert evaluated == sorted(p.split("/")[-1] for p in split.val)


@pytest.mark.parametrize("argv,needle", [
    (["--split", "test"], "--split test"),
    (["--baselines", "mean,bogus"], "bogus"),
    (["--mask-type", "random_square"], "--mask-type"),
])
def test_bad_arguments_are_one_line_errors(model_path, tmp_path, capsys, argv, needle):
    write_images(str(tmp_path / "images"), 2, size=(32, 32))
    code = run(["--model", model_path, "--data-dir", str(tmp_path / "images"),
                "--out", str(tmp_path / "eval"), "--progress", "off"] + argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and needle in err[-1]
    assert not any(line.startswith("Traceback") for line in err)


def test_celeba_layout_defaults_to_its_test_split(model_path, tmp_path):
    root = tmp_path / "celeba"
    paths = write_images(str(root / "img_align_celeba"), 6, size=(36, 44))
    names = [p.split("/")[-1] for p in paths]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {i % 3}\n" for i, n in enumerate(names)))  # 0 train, 1 val, 2 test
    out = tmp_path / "eval"
    assert run(["--model", model_path, "--data-dir", str(root), "--out", str(out),
                "--baselines", "mean", "--progress", "off"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "test" and report["images"] == 2
    with open(out / "per_image.csv") as f:
        assert sorted(r["file"] for r in csv.DictReader(f)) == sorted(
            f"img_align_celeba/{n}" for n in names[2::3])


def test_random_mask_model_gets_fixed_holes(tmp_path):
    model = str(tmp_path / "random.keras")
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0),
                                                 mask_type="random_square")), model)
    write_images(str(tmp_path / "images"), 6, size=(32, 32))
    tables = []
    for name, extra in (("a", []), ("b", []), ("centre", ["--mask-type", "center"])):
        assert run(["--model", model, "--data-dir", str(tmp_path / "images"), "--out",
                    str(tmp_path / name), "--baselines", "mean", "--progress", "off"] + extra) == 0
        tables.append((tmp_path / name / "per_image.csv").read_text())
    assert tables[0] == tables[1]  # the same holes every run
    assert tables[0] != tables[2]  # the centre hole is another hole


@pytest.fixture
def trained_run(tmp_path):
    """A tiny run trained on a folder of 20 images: ``(folder, run folder)``."""
    from ctxenc_tf.training.fit import train

    folder = tmp_path / "images"
    write_images(str(folder), 20, size=(32, 32))
    config = tiny_config(data_dir=str(folder), val_fraction=0.2, output_dir=str(tmp_path / "run"))
    _, _, paths = train(config, log=lambda *a: None, verbose=0)
    return folder, paths


def test_val_split_is_the_runs_own(trained_run, tmp_path, capsys):
    """The run records its split (counts and digest in the model's trained_on, the file
    names in split.json); evaluate --split val evaluates exactly that split."""
    folder, paths = trained_run
    with open(paths.split) as f:
        recorded = json.load(f)
    config = load_context_encoder(paths.final).config
    assert config.trained_on["split"]["val"] == len(recorded["val"]) == 4
    assert config.trained_on["split"]["train"] == len(recorded["train"]) == 16
    out = tmp_path / "eval"
    assert run(["--model", paths.final, "--split", "val", "--out", str(out), "--baselines", "none",
                "--progress", "off"]) == 0
    assert "note:" not in capsys.readouterr().out
    with open(out / "per_image.csv") as f:
        assert sorted(r["file"] for r in csv.DictReader(f)) == sorted(recorded["val"])


def test_changed_folder_is_refused_naming_the_change(trained_run, tmp_path, capsys):
    """Files added to and removed from the folder after training: --split val refuses with
    one line saying how many, instead of evaluating a split that may hold training images."""
    folder, paths = trained_run
    write_images(str(folder / "more"), 3, size=(32, 32), seed=9)
    removed = sorted(folder.glob("*.jpg"))[0]
    removed.unlink()
    code = run(["--model", paths.final, "--split", "val", "--out", str(tmp_path / "eval"), "--progress", "off"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and err[0].startswith("error: ")
    assert "3 file(s) added, 1 removed" in err[0], err[0]
    # without split.json beside the checkpoint (a copied checkpoint): the counts then and now
    moved = tmp_path / "elsewhere.keras"
    shutil.copy(paths.final, moved)
    code = run(["--model", str(moved), "--split", "val", "--out", str(tmp_path / "eval"), "--progress", "off"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(err) == 1 and "then 16 train / 4 val images" in err[0], err


def test_model_without_a_recorded_split_is_evaluated_with_a_note(model_path, tmp_path, capsys):
    """A checkpoint from before runs recorded their split: the split is rebuilt as before,
    with one note line."""
    folder = tmp_path / "images"
    write_images(str(folder), 10, size=(32, 32))
    assert run(["--model", model_path, "--data-dir", str(folder), "--split", "val", "--out",
                str(tmp_path / "eval"), "--baselines", "none", "--progress", "off"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "records no split" in notes[0]
