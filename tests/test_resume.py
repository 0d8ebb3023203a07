"""Kill ``train.py`` (SIGKILL) in the middle of an epoch, rerun the same command: it resumes
from the last saved state and ends with the weights, optimiser state and epoch logs of an
uninterrupted run. Also: finished runs are not retrained, resume refuses other settings,
the best checkpoint is never replaced by a worse one, NaN keeps the last good state, a
full disk is reported before training."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import REPO, tiny_config, write_images

# Every test here exports or trains (in subprocesses): slow (see pytest.ini).
pytestmark = pytest.mark.slow

EPOCHS = 3
FLAGS = ["--image-size", "32", "--hole-size", "16", "--overlap", "2", "--bottleneck", "16",
         "--gen-filters", "8", "--disc-filters", "8", "--batch-size", "4", "--epochs", str(EPOCHS),
         "--no-jit-compile", "--seed", "3", "--mask-type", "random_square"]
# 48 images -> 43 train (10 steps of 4 per epoch) and 5 validation images.


def _command(data_dir, out, *extra):
    return [sys.executable, os.path.join(REPO, "train.py"), *FLAGS, "--data-dir", data_dir,
            "--output-dir", str(out), *extra]


def _start(data_dir, out, *extra):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen(_command(data_dir, out, *extra), cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _state(out):
    try:
        with open(os.path.join(out, "backup", "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _kill_when(procs, conditions, timeout=240):
    """SIGKILL each of ``procs`` (name -> Popen with its output dir) as soon as its saved
    state satisfies its condition; return the states left on disk after the kills."""
    left, killed = dict(procs), {}
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for name, (proc, out) in list(left.items()):
            state = _state(out)
            if state and conditions[name](state):
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                killed[name] = _state(out)
                del left[name]
            else:
                assert proc.poll() is None, f"{name} ended before the kill point: " + proc.communicate()[0][-3000:]
        time.sleep(0.01)
    for proc, _ in left.values():
        proc.kill()
    assert not left, f"never reached the kill point: {sorted(left)}"
    return killed


def _weights(path):
    from ctxenc_tf.model.checkpoint import load_context_encoder
    model = load_context_encoder(path)
    return model.generator.get_weights() + model.discriminator.get_weights()


def _epoch_rows(out):
    with open(os.path.join(out, "log.csv")) as f:
        return {row["epoch"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One uninterrupted run and two killed ones (step and epoch granularity), in parallel;
    then the killed ones rerun with the same command."""
    root = tmp_path_factory.mktemp("resume")
    data_dir = str(root / "images")
    write_images(data_dir, 48, seed=5)
    outs = {k: str(root / k) for k in ("full", "steps", "epochs")}
    full = _start(data_dir, outs["full"], "--backup-steps", "2")
    steps = _start(data_dir, outs["steps"], "--backup-steps", "2")
    epochs = _start(data_dir, outs["epochs"])
    killed = _kill_when({"steps": (steps, outs["steps"]), "epochs": (epochs, outs["epochs"])}, {
        "steps": lambda s: s["epoch"] == 1 and s["step"] >= 2,  # inside epoch 2, after a step backup
        "epochs": lambda s: s["epoch"] == 1,  # epoch granularity: just after epoch 1's state
    })
    reruns = {k: _start(data_dir, outs[k], *(["--backup-steps", "2"] if k == "steps" else []))
              for k in killed}
    logs = {k: p.communicate(timeout=300)[0] for k, p in reruns.items()}
    full_log = full.communicate(timeout=300)[0]
    assert full.returncode == 0, full_log[-3000:]
    for k, p in reruns.items():
        assert p.returncode == 0, logs[k][-3000:]
    return dict(outs=outs, killed=killed, logs=logs, full_log=full_log, data_dir=data_dir)


def test_kill_mid_epoch_resumes_from_step_state_with_identical_result(runs):
    state = runs["killed"]["steps"]
    assert state["epoch"] == 1 and 0 < state["step"] < 10, state  # killed inside epoch 2
    assert f"resuming from epoch 2, step {state['step']} ({EPOCHS} epochs in all" in runs["logs"]["steps"]
    full, resumed = _weights(os.path.join(runs["outs"]["full"], "final.keras")), \
        _weights(os.path.join(runs["outs"]["steps"], "final.keras"))
    # Both runs execute on this machine with the same kernels, so the CPU generation plays
    # no part; the tolerance is far below what one lost or repeated step would change.
    for a, b in zip(full, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # The resumed epoch's logged averages include the steps done before the kill.
    rows_full, rows_resumed = _epoch_rows(runs["outs"]["full"]), _epoch_rows(runs["outs"]["steps"])
    assert sorted(rows_resumed) == ["0", "1", "2"]
    for epoch in rows_full:
        for key in ("g_loss", "d_loss", "rec_loss", "val_rec_loss"):
            assert float(rows_resumed[epoch][key]) == pytest.approx(float(rows_full[epoch][key]), rel=1e-4)


def test_a_run_says_its_precision_and_a_rerun_keeps_the_runs_own(runs):
    """Without --precision a new run takes this machine's default and says why; a rerun
    resumes in the precision the run has, whatever the machine's default."""
    from ctxenc_tf.training.strategy import default_precision

    precision, why = default_precision(False)
    assert f"precision: {precision} ({why})" in runs["full_log"]
    assert _state(runs["outs"]["full"])["config"]["precision"] == precision
    for log in runs["logs"].values():
        assert f"precision: {precision} (the run being resumed trains in it)" in log


def test_kill_with_epoch_granularity_restarts_the_epoch_with_identical_result(runs):
    assert runs["killed"]["epochs"]["step"] == 0
    assert f"resuming from the end of epoch 1 ({EPOCHS} epochs in all" in runs["logs"]["epochs"]
    full, resumed = _weights(os.path.join(runs["outs"]["full"], "final.keras")), \
        _weights(os.path.join(runs["outs"]["epochs"], "final.keras"))
    for a, b in zip(full, resumed):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _config(runs, out, **overrides):
    """The in-process twin of the runs' command line."""
    values = dict(data_dir=runs["data_dir"], output_dir=str(out), bottleneck=16, batch_size=4,
                  epochs=EPOCHS, seed=3, mask_type="random_square", backup_steps=2)
    return tiny_config(**{**values, **overrides})


def _files(folder):
    """Every file below ``folder`` with its bytes, the lock file (ours, rewritten by every
    run that takes the folder) aside."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".ctxenc.lock")}


def _copy_run(runs, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(runs["outs"]["full"], out)
    return out


def test_time_limit_saves_a_mid_epoch_state_that_resumes_exactly(runs, tmp_path):
    """--time-limit stops after a batch; the rerun finishes that epoch and the others and
    matches the uninterrupted run."""
    import keras

    from ctxenc_tf.training.fit import train
    out = tmp_path / "run"
    logged = []
    keras.config.set_dtype_policy("float64")  # the caller's, whatever precision the run trains in
    try:
        train(_config(runs, out), time_limit=1e-9, log=logged.append)  # stops after the first batch
        assert keras.config.dtype_policy().name == "float64"
    finally:
        keras.config.set_dtype_policy("float32")
    assert {k: _state(out)[k] for k in ("epoch", "step")} == {"epoch": 0, "step": 1}
    assert "stopped at the time limit" in logged[-1] and "after epoch 1, step 1, of 3 epochs" in logged[-1]
    assert _epoch_rows(out)["0"]["partial"] == "1"  # the cut-off epoch is marked in log.csv
    model, history, _ = train(_config(runs, out), log=lambda *a: None)
    assert history.epoch == [0, 1, 2]
    with open(out / "log.csv") as f:  # the rerun completes epoch 1: a second, complete row
        assert [(row["epoch"], row["partial"]) for row in csv.DictReader(f)] == \
            [("0", "1"), ("0", "0"), ("1", "0"), ("2", "0")]
    full = _weights(os.path.join(runs["outs"]["full"], "final.keras"))
    for a, b in zip(full, model.generator.get_weights() + model.discriminator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_finished_run_is_not_retrained_and_best_is_kept(runs, tmp_path, capsys):
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    best = out / "best.keras"
    before = (os.path.getmtime(best), _state(out))
    _, history, _ = train(_config(runs, out), log=print)
    assert history.epoch == []
    assert "all 3 epochs are already done" in capsys.readouterr().out
    assert (os.path.getmtime(best), _state(out)) == before


def test_resume_refuses_other_settings(runs, tmp_path):
    """Another model setting, or a run setting the saved step cannot be honoured under
    (batch size, seed, precision), is refused without touching the run."""
    from ctxenc_tf.errors import ConfigError
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    before = _files(out)
    recorded = _state(out)["config"]["precision"]
    other = "float32" if recorded != "float32" else "mixed_bfloat16"
    for change, message in ((dict(bottleneck=32), r"--bottleneck 16 -> 32"),
                            (dict(batch_size=8), r"--batch-size 4 -> 8"),
                            (dict(seed=4), r"--seed 3 -> 4"),
                            (dict(precision=other), rf"--precision '{recorded}' -> '{other}'")):
        with pytest.raises(ConfigError, match=message + r".*new --output-dir"):
            train(_config(runs, out, **change), log=lambda *a: None)
    assert _files(out) == before  # nothing touched


def test_resume_checks_data_identity_not_paths(runs, tmp_path):
    """The same images in another folder (copied with their times) resume, with the
    change reported; a folder whose contents changed is refused unless
    ``accept_changed_data``; other run settings may change."""
    import shutil

    from ctxenc_tf.errors import ConfigError
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    moved = str(tmp_path / "moved")
    shutil.copytree(runs["data_dir"], moved)  # copy2: sizes and modification times kept
    logged = []
    _, history, _ = train(_config(runs, out, data_dir=moved, learning_rate=1e-3, jit_compile=True),
                          log=logged.append)
    assert history.epoch == []
    assert any("changed settings:" in line and "--data-dir" in line and "--learning-rate" in line
               and "--jit-compile False -> True" in line for line in logged), logged
    write_images(str(tmp_path / "extra"), 1, seed=9)
    shutil.move(str(tmp_path / "extra" / "img_0000.jpg"), os.path.join(moved, "new.jpg"))
    with pytest.raises(ConfigError, match=r"the training data changed since this run started"):
        train(_config(runs, out, data_dir=moved), log=lambda *a: None)
    _, history, _ = train(_config(runs, out, data_dir=moved), accept_changed_data=True, log=lambda *a: None)
    assert history.epoch == []


def test_existing_best_is_not_replaced_by_a_worse_model(runs, tmp_path):
    """An output dir with a good best.keras but no resume state: a fresh, worse run (no
    learning) must not overwrite it; a run with other settings is refused."""
    from ctxenc_tf.errors import ConfigError
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    before = _weights(out / "best.keras")
    good = min(float(row["val_rec_loss"]) for row in _epoch_rows(out).values())
    os.remove(out / "backup" / "state.json")
    with pytest.raises(ConfigError, match=r"best.keras is a checkpoint of another run \(--bottleneck 16 -> 8\)"):
        train(_config(runs, out, bottleneck=8), log=lambda *a: None)
    train(_config(runs, out, epochs=1, learning_rate=1e-9), log=lambda *a: None)
    fresh = float(_epoch_rows(out)["0"]["val_rec_loss"])  # CSV appended: the fresh run's row
    assert fresh > good  # the test's premise: the fresh model is worse
    for a, b in zip(before, _weights(out / "best.keras")):
        np.testing.assert_array_equal(a, b)


def test_nan_loss_stops_with_message_and_keeps_last_good_state(runs, tmp_path):
    from ctxenc_tf.errors import TrainingError
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    good_state, best_mtime = _state(out), os.path.getmtime(out / "best.keras")
    os.remove(out / "final.keras")
    # Resume for a 4th epoch with a huge learning rate: the losses become inf/NaN.
    with pytest.raises(TrainingError, match=r"training stopped: \w+ became (nan|inf|-inf) in epoch 4\. "
                                            r"Kept the last good files: .*best.keras and the resume "
                                            r"state from the end of epoch 3; .*final.keras was not written"):
        train(_config(runs, out, epochs=4, learning_rate=1e30), log=lambda *a: None)
    assert _state(out) == good_state and os.path.getmtime(out / "best.keras") == best_mtime
    assert not (out / "final.keras").exists()


def test_full_disk_is_reported_before_training(tmp_path, image_folder, monkeypatch):
    import shutil

    from ctxenc_tf.training.fit import train
    usage = shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(OSError, match="MiB free; the checkpoints of this model need about"):
        train(tiny_config(data_dir=image_folder, output_dir=str(tmp_path / "run")), log=lambda *a: None)
    assert not os.path.exists(tmp_path / "run" / "best.keras")
    assert not os.path.exists(tmp_path / "run" / "backup")


def test_failed_writes_keep_the_previous_checkpoint_and_state(tmp_path, monkeypatch):
    """A write that dies half-way (full disk) leaves the previous best checkpoint and
    resume state byte-for-byte intact, no temp files, and one clear error."""
    from ctxenc_tf.errors import TrainingError
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.training import resume
    from ctxenc_tf.training.callbacks import BestCheckpoint
    from ctxenc_tf.training.optimizers import compile_for_run
    run = tiny_config(fill_value=(0.0, 0.0, 0.0))
    model = ContextEncoder(run.model)
    compile_for_run(model, run)
    best = BestCheckpoint(str(tmp_path / "best.keras"), monitor="val_rec_loss")
    best.set_model(model)
    best.on_epoch_end(0, {"val_rec_loss": 1.0})
    backup = str(tmp_path / "backup")
    state = resume.TrainingState(1, 0, "state-e0001-s000000.weights.h5", 1.0, {}, run.to_dict(), "data")
    resume.save_state(model, backup, state)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def half_written(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ContextEncoder, "save", lambda self, path, *a, **k: half_written(path))
    monkeypatch.setattr(model, "save_weights", half_written)
    with pytest.raises(TrainingError, match=r"cannot write .*best.keras \(No space left on device\); "
                                            r"the previous best checkpoint is intact"):
        best.on_epoch_end(1, {"val_rec_loss": 0.5})
    assert best.best == 1.0
    with pytest.raises(TrainingError, match=r"cannot write the resume state to .*backup \(No space left "
                                            r"on device\); the previous state is intact"):
        resume.save_state(model, backup, dataclasses.replace(state, epoch=2, weights="state-e0002-s000000.weights.h5"))
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # same files, same bytes: no temp file left behind


def test_damaged_state_falls_back_to_the_previous_one(runs, tmp_path):
    """Bytes changed in the middle of the newest weights file: its content hash no longer
    matches, so the run resumes from the state before it (kept with its weights) and says
    so; with both damaged it stops with one line instead of loading garbage."""
    from ctxenc_tf.errors import ConfigError
    from ctxenc_tf.training import resume
    from ctxenc_tf.training.fit import train
    out = _copy_run(runs, tmp_path)
    backup = out / "backup"

    def states():
        return [json.loads((backup / name).read_text()) for name in (resume.STATE_FILE, resume.PREVIOUS_STATE_FILE)]

    def damage(state):
        weights = backup / state["weights"]
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))

    newest, previous = states()
    assert newest["weights"] != previous["weights"] and (backup / previous["weights"]).is_file()
    damage(newest)
    logged = []
    _, history, _ = train(_config(runs, out), log=logged.append)
    assert any("newest resume state is damaged" in line for line in logged), logged
    assert history.epoch  # the steps after the previous state were trained again
    for state in states():
        damage(state)
    with pytest.raises(ConfigError, match=r"the resume state is damaged .* no earlier good state"):
        train(_config(runs, out), log=lambda *a: None)
