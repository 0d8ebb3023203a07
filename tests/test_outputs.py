"""Output safety: names never collide, inputs and files that are not ours are never
written over, one writer per output folder, temp files of a killed writer are removed,
special files (named pipes) are never read."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ctxenc_tf.cli import export as export_cli
from ctxenc_tf.data import screening, sources
from ctxenc_tf.utils import atomic, output_dir
from helpers import FACES, REPO, exit_code, tiny_model, write_images


def test_unique_stems_never_repeat_even_for_numbered_inputs():
    assert output_dir.unique_stems(["a", "a", "a_2"]) == ["a", "a_2", "a_2_2"]
    assert output_dir.unique_stems(["a_2", "a", "a"]) == ["a_2", "a", "a_3"]


def test_targets_over_inputs_or_existing_files_are_refused(tmp_path):
    photo, mine = tmp_path / "cat.png", tmp_path / "cat_filled.png"
    photo.write_bytes(b"photo")
    mine.write_bytes(b"my own file")
    with pytest.raises(FileExistsError, match="one of the inputs"):
        output_dir.claim_targets([str(photo)], [str(photo)], overwrite=True)  # never, even with --overwrite
    with pytest.raises(FileExistsError, match="exists; pass --overwrite"):
        output_dir.claim_targets([str(mine)], [str(photo)])
    output_dir.claim_targets([str(mine)], [str(photo)], overwrite=True)
    assert mine.read_bytes() == b"my own file"  # checking writes nothing


def test_output_paths_are_checked_without_leaving_anything(tmp_path):
    from ctxenc_tf.errors import ConfigError

    (tmp_path / "prepared").mkdir()
    (tmp_path / "notes.txt").write_text("mine\n")
    for path, kind in ((tmp_path / "a" / "b", "folder"), (tmp_path / "c" / "rows.json", "file"),
                       (tmp_path / "d" / "new", "new folder"), (tmp_path / "prepared", "new folder"),
                       (tmp_path / "notes.txt", "file")):
        output_dir.check_output_path(str(path), "--out", kind)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "prepared"] and not os.listdir(tmp_path / "prepared")
    for path, kind, why in ((tmp_path / "prepared", "file", "is a directory"),
                            (tmp_path / "notes.txt", "folder", "is a file"),
                            (tmp_path / "notes.txt", "new folder", "is a file"),
                            (tmp_path / "notes.txt" / "x" / "y.json", "file", f"{tmp_path / 'notes.txt'} is a file")):
        with pytest.raises(ConfigError, match="^" + re.escape(f"--out={path}: {why}")):
            output_dir.check_output_path(str(path), "--out", kind)


def test_one_writer_per_folder_and_a_killed_writers_lock_and_temp_files(tmp_path):
    folder = tmp_path / "run"
    with output_dir.exclusive_output(str(folder), "train.py"):
        with pytest.raises(output_dir.OutputBusyError, match=rf"train.py \(pid {os.getpid()}\) is writing here"):
            with output_dir.exclusive_output(str(folder), "export.py"):
                pass
    # A writer killed with SIGKILL: its lock is released by the OS, its temp files stay.
    script = ("import os, sys; sys.path.insert(0, {repo!r}); from ctxenc_tf.utils import output_dir\n"
              "with output_dir.exclusive_output({d!r}, 'train.py', subdirs=('backup',)):\n"
              "    open(os.path.join({d!r}, '.best.keras.ab12cd34.tmp.keras'), 'w').close()\n"
              "    os.makedirs(os.path.join({d!r}, 'backup', '.state.zz99yy88.tmp'))\n"
              "    os.kill(os.getpid(), 9)\n").format(repo=REPO, d=str(folder))
    assert subprocess.run([sys.executable, "-c", script]).returncode == -9
    (folder / "best.keras").write_bytes(b"a finished checkpoint")
    assert len(list(folder.rglob(".*.tmp*"))) == 2
    with output_dir.exclusive_output(str(folder), "train.py", subdirs=("backup",)):
        assert not list(folder.rglob(".*.tmp*"))  # taken over, leftovers removed
        assert (folder / "best.keras").read_bytes() == b"a finished checkpoint"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_named_pipes_are_skipped_not_read(tmp_path, capsys):
    folder = tmp_path / "images"
    write_images(str(folder), 3)
    os.mkfifo(folder / "pipe.jpg")  # reading it would block forever
    assert sorted(os.path.basename(p) for p in sources.list_image_folder(str(folder))) == \
        ["img_0000.jpg", "img_0001.jpg", "img_0002.jpg"]
    assert screening.screen_file(str(folder / "pipe.jpg")) == "not a regular file"
    from ctxenc_tf.cli import inpaint as inpaint_cli
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.utils import atomic
    from helpers import exit_code
    model = str(tmp_path / "m.keras")
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0))), model)
    face = os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])
    code = exit_code(inpaint_cli.main, [face, str(folder / "pipe.jpg"), "--model", model,
                                        "--out", str(tmp_path / "out"), "--progress", "off"])
    assert code == 1  # one photo done, the pipe skipped with a line naming it
    assert "pipe.jpg: not a regular file" in capsys.readouterr().err


@pytest.mark.slow
def test_file_cache_is_per_data_and_survives_a_killed_writer(tmp_path):
    """A --cache prefix names the data it holds (other images never read a cache of these),
    and what a killed run left half written (tf.data's lock file, partial shards) is
    cleared instead of failing with AlreadyExistsError."""
    from ctxenc_tf.data.cache import cache_prefix, part_path
    from ctxenc_tf.data.fingerprint import data_fingerprint
    from ctxenc_tf.training.fit import train
    from helpers import tiny_config

    (tmp_path / "cache").mkdir()
    prefix = str(tmp_path / "cache" / "decoded")
    resolved = {}
    for name, seed in (("black", 1), ("white", 2)):
        folder = tmp_path / name
        write_images(str(folder), 12, seed=seed)
        config = tiny_config(data_dir=str(folder), output_dir=str(tmp_path / f"run_{name}"), batch_size=4,
                             cache=prefix)
        split = sources.find_sources(config)
        resolved[name] = cache_prefix(prefix, data_fingerprint(split.train, split.val), 32, False)
        if name == "white":  # a run killed while filling this cache left these behind
            for leftover in ("_0.lockfile", "_0.data-00000-of-00001"):
                with open(part_path(resolved[name], 0) + leftover, "wb") as f:
                    f.write(b"half")
        train(config, log=lambda *a: None)
        assert os.path.exists(part_path(resolved[name], 0) + ".index")
    assert resolved["black"] != resolved["white"]
    assert not any(p.endswith(".lockfile") for p in os.listdir(tmp_path / "cache"))


@pytest.mark.slow
def test_file_names_that_are_not_utf8_train_and_evaluate(tmp_path, capsys):
    """A file name in another encoding (Latin-1 bytes) and the run's output folder inside
    the data folder: training and evaluation go on, the run's own sample grids are not
    training data."""
    from ctxenc_tf.cli import evaluate as evaluate_cli
    from ctxenc_tf.training.fit import train
    from helpers import exit_code, tiny_config

    folder = tmp_path / "images"
    write_images(str(folder), 12)
    os.rename(folder / "img_0000.jpg", os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.jpg"))
    config = tiny_config(data_dir=str(folder), output_dir=str(folder / "run"), batch_size=4, epochs=2)
    train(config, log=lambda *a: None)
    assert list((folder / "run" / "samples").glob("*.png"))
    split = sources.find_split(config)  # again, with the grids now there
    assert len(split.train) + len(split.val) == 12
    assert any(os.fsencode(p).endswith(b"caf\xe9.jpg") for p in split.train + split.val)
    code = exit_code(evaluate_cli.main, ["--model", str(folder / "run" / "best.keras"), "--data-dir", str(folder),
                                         "--out", str(tmp_path / "eval"), "--baselines", "mean", "--progress", "off"])
    assert code == 0, capsys.readouterr().err


def test_inpaint_removes_what_a_killed_run_left_of_its_own_outputs(tmp_path):
    from ctxenc_tf.cli import inpaint as inpaint_cli
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.utils import atomic
    from helpers import exit_code
    model = str(tmp_path / "m.keras")
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0))), model)
    face = os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])
    out = tmp_path / "out"
    out.mkdir()
    stem = os.path.splitext(os.path.basename(face))[0]
    leftover = out / f".{stem}_filled.png.k1l2m3n4.tmp"  # a kill during the rename's write
    other = out / ".someone_elses.png.a1b2c3d4.tmp"
    leftover.write_bytes(b"half")
    other.write_bytes(b"not ours to remove")
    assert exit_code(inpaint_cli.main, [face, "--model", model, "--out", str(out), "--progress", "off"]) == 0
    assert not leftover.exists() and other.exists() and (out / f"{stem}_filled.png").is_file()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_given_as_model_or_mask_gets_one_line(tmp_path, capsys):
    from ctxenc_tf.cli import evaluate as evaluate_cli
    from ctxenc_tf.cli import export as export_cli
    from helpers import exit_code
    os.mkfifo(tmp_path / "pipe.keras")
    pipe = str(tmp_path / "pipe.keras")
    assert exit_code(export_cli.main, ["--checkpoint", pipe, "--out", str(tmp_path / "e")]) == 2
    assert exit_code(evaluate_cli.main, ["--model", pipe, "--out", str(tmp_path / "v")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 2 and all(pipe in line and "not" in line for line in lines), lines


def _export_one_line(model, out, capsys) -> str:
    """Export ``model`` (a ContextEncoder) into ``out`` through export.py's ``main``;
    returns its one error line (exit status 2)."""
    checkpoint = os.path.join(os.path.dirname(out), "m.keras")
    atomic.save_model(model, checkpoint)
    assert exit_code(export_cli.main, ["--checkpoint", checkpoint, "--out", out, "--variants", "float32",
                                       "--parity-images", "2"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _space_needed(model, copies):
    """What export says the SavedModel and TFLite files of ``model`` need: its generator's
    weights in float32, once per format."""
    item = sum(int(np.prod(w.shape)) * 4 for w in model.generator.weights)
    return f"need about {copies * item / 2**20:.1f} MiB ({copies} x {item / 2**20:.1f} MiB)"


def test_export_onto_a_full_disk_says_so_before_writing(tmp_path, monkeypatch, capsys):
    import shutil

    from ctxenc_tf.model.context_encoder import ContextEncoder

    model = ContextEncoder(tiny_model(bottleneck=2048))  # a generator of a few MiB
    free = 2**20
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))
    out = str(tmp_path / "export")
    line = _export_one_line(model, out, capsys)
    assert line == (f"error: {out}: only 1.0 MiB free; the SavedModel and TFLite files of this model "
                    + _space_needed(model, 2))
    assert not os.path.exists(os.path.join(out, "saved_model"))


@pytest.mark.slow
def test_export_that_fills_the_disk_while_saving_says_so(tmp_path, monkeypatch, capsys):
    """The disk fills up after the check (another writer): TensorFlow's SaveV2 then raises
    ResourceExhaustedError (its code for ENOSPC), which reads as a full disk."""
    import tensorflow as tf

    from ctxenc_tf.model.context_encoder import ContextEncoder

    def full_disk(module, path, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "{{function_node __wrapped__SaveV2_dtypes_12_device_/job:localhost/replica:0/task:0/"
            f"device:CPU:0}}}} {path}/variables/variables_temp/part-00000-of-00001.data-00000-of-00001."
            "tempstate1; No space left on device [Op:SaveV2]")

    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    model = ContextEncoder(tiny_model())
    out = str(tmp_path / "export")
    line = _export_one_line(model, out, capsys)
    assert line == (f"error: {out}: disk full while writing the SavedModel; the SavedModel and TFLite "
                    "files of this model " + _space_needed(model, 2))
    assert os.listdir(os.path.join(out, "saved_model")) == []  # the half-written version is gone
