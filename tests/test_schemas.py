"""Every file the project reads back is checked against its declared schema
(:mod:`ctxenc_tf.schemas`) before anything uses it: an edited file ends the command with
one line naming the file and the field and changes nothing, or, for the resume state, the
run falls back to ``state.prev.json``. Each case below runs the command that reads the
file, on copies of one tiny 2-epoch run, one prepared folder and one TFLite export.

| id | file (command) | edit | the line names |
|---|---|---|---|
| R1 | backup/state.json (train --epochs 3) | "epoch": "three" | field 'epoch' |
| R2 | backup/state.json | "step": 1000000 (an epoch has 2 steps) | field 'step' |
| R3 | backup/state.json | "trackers": "x" | field 'trackers' |
| R4 | backup/state.json | "epoch": null | field 'epoch' |
| R5 | backup/state.json | "epoch": -1 | field 'epoch' |
| R6 | backup/state.json | "epoch": 10**30 | field 'epoch' |
| R7 | backup/state.json | "step": 1e6 (a float) | field 'step' |
| R8 | backup/state.json | "step": -3 | field 'step' |
| R9 | backup/state.json | "best": null | field 'best' |
| R10 | backup/state.json | "best": -Infinity | field 'best' |
| P1 | prepared.json (train --data-dir PREPARED) | "mean": null | field 'mean' |
| P2 | prepared.json | "image_size": "32" | field 'image_size' |
| P3 | prepared.json | "mean" removed | field 'mean' is missing |
| P4 | prepared.json | "mean": [null, 0, 0] | field 'mean[0]' |
| P5 | prepared.json | splits.train.names null | 'splits.train.names' |
| X1 | export config.json (inpaint --model .tflite) | image_size 64, hole_size 32 (a 32-px model) | both files |
| X2 | export config.json | mask_type random_region (centre model) | config.json, the .tflite |
| X3 | export config.json | hole_size removed | field 'hole_size' is missing |
| S1 | split.json (evaluate --split val on a folder that changed) | a name "../x.jpg" | field 'val[0]' |
| S2 | split.json | "train": null | field 'train' |

Without ``state.prev.json`` the R cases stop with one line; with it, the run resumes from
it and says why (``test_damaged_state_falls_back_with_the_field``).
"""

import json
import os
import re
import shutil

import pytest

from helpers import FACES, READ_BACK_TRAIN, exit_code, tiny_model

pytestmark = pytest.mark.slow  # the fixture trains and exports


STATE_CASES = {
    "R1": ({"epoch": "three"}, "field 'epoch': expected an integer >= 0, got \"three\""),
    "R2": ({"step": 1000000}, "field 'step': expected an integer from 0 to 1 (an epoch has 2 steps), got 1000000"),
    "R3": ({"trackers": "x"}, "field 'trackers': expected an object"),
    "R4": ({"epoch": None}, "field 'epoch': expected an integer >= 0, got null"),
    "R5": ({"epoch": -1}, "field 'epoch': expected an integer >= 0, got -1"),
    "R6": ({"epoch": 10**30}, "field 'epoch': expected an integer from 0 to 2 (the run's epochs)"),
    "R7": ({"step": 1e6}, "field 'step': expected an integer >= 0, got 1000000.0"),
    "R8": ({"step": -3}, "field 'step': expected an integer >= 0, got -3"),
    "R9": ({"best": None}, "field 'best': expected a number >= 0 or Infinity"),
    "R10": ({"best": float("-inf")}, "field 'best': expected a number >= 0 or Infinity (no best yet), got -Infinity"),
}


def _drop(key):
    return lambda meta: meta.pop(key)


def _set(value, *keys):
    def edit(meta):
        for key in keys[:-1]:
            meta = meta[key]
        meta[keys[-1]] = value
    return edit


PREPARED_CASES = {
    "P1": (_set(None, "mean"), "field 'mean': expected 3 numbers from -1 to 1 (the mean colour), got null"),
    "P2": (_set("32", "image_size"), "field 'image_size': expected a power of two from 16 to 512, got \"32\""),
    "P3": (_drop("mean"), "field 'mean' is missing"),
    "P4": (_set([None, 0, 0], "mean"), "field 'mean[0]': expected a number from -1 to 1, got null"),
    "P5": (_set(None, "splits", "train", "names"),
           "field 'splits.train.names': expected a list of file names, got null"),
}

EXPORT_CASES = {
    "X1": (dict(image_size=64, hole_size=32), r"config.json does not fit \S+ctxenc_float32.tflite: the config says "
                                              r"64x64 images .* the model takes 32x32 images and predicts 16x16"),
    "X2": (dict(mask_type="random_region"), r"config.json does not fit \S+ctxenc_float32.tflite: .* a 32x32 "
                                            r"prediction .* predicts 16x16"),
    "X3": (dict(hole_size=None), r"config.json: field 'hole_size' is missing$"),
}

SPLIT_CASES = {
    "S1": (_set(["../x.jpg"], "val"), "field 'val[0]': expected a path relative to the data folder, got \"../x.jpg\""),
    "S2": (_set(None, "train"), "field 'train': expected a list of relative paths, got null"),
}


@pytest.fixture(scope="module")
def world(read_back_files):
    return read_back_files


def _files(folder):
    """Every file below ``folder`` with its bytes (the output lock aside)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".ctxenc.lock")}


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    return lines[0]


def _edit_json(path, edit):
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _run_copy(world, tmp_path, keep_previous: bool):
    out = tmp_path / "run"
    shutil.copytree(world["run"], out)
    if not keep_previous:
        previous = json.loads((out / "backup" / "state.prev.json").read_text())
        os.remove(out / "backup" / previous["weights"])
        os.remove(out / "backup" / "state.prev.json")
    return out


def _train_again(world, out, epochs: int = 3):
    from ctxenc_tf.cli.train import main as train_main
    return exit_code(train_main, READ_BACK_TRAIN + ["--epochs", str(epochs), "--data-dir", world["images"],
                                                    "--output-dir", str(out)])


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_edited_resume_state_is_one_line_and_changes_nothing(case, world, tmp_path, capsys):
    change, needle = STATE_CASES[case]
    out = _run_copy(world, tmp_path, keep_previous=False)
    _edit_json(out / "backup" / "state.json", lambda state: state.update(change))
    before = _files(out)
    assert _train_again(world, out) == 2
    line = _one_line(capsys)
    assert f"{out / 'backup' / 'state.json'}: the resume state is damaged (state.json: {needle}" in line, line
    assert _files(out) == before


def test_damaged_state_falls_back_with_the_field(world, tmp_path, capsys):
    """With ``state.prev.json`` kept (the end of epoch 1), the run resumes from it and says
    which field was wrong (asked for 1 epoch, it has nothing left to train)."""
    out = _run_copy(world, tmp_path, keep_previous=True)
    _edit_json(out / "backup" / "state.json", lambda state: state.update(epoch="three"))
    assert _train_again(world, out, epochs=1) == 0
    printed = capsys.readouterr().out
    assert ("the newest resume state is damaged (state.json: field 'epoch': expected an integer >= 0, "
            "got \"three\"); resuming from the one before it (the end of epoch 1)") in printed
    assert "all 1 epochs are already done" in printed


def test_mid_epoch_trackers_must_fit_the_model(world, tmp_path, capsys):
    """A mid-epoch state whose running metrics are not this model's is refused before training."""
    out = _run_copy(world, tmp_path, keep_previous=False)
    backup = out / "backup"
    state = json.loads((backup / "state.json").read_text())
    # Make it a valid mid-epoch state of epoch 2 (its weights renamed to match), with one tracker lost.
    os.rename(backup / state["weights"], backup / "state-e0001-s000001.weights.h5")
    state.update(epoch=1, step=1, weights="state-e0001-s000001.weights.h5")
    state["trackers"].pop("g_loss")
    (backup / "state.json").write_text(json.dumps(state))
    before = _files(out)
    assert _train_again(world, out) == 2
    assert "field 'trackers': expected" in _one_line(capsys)
    assert _files(out) == before


def _refused(main, argv, folder, capsys) -> str:
    """Run a command's ``main`` on the edited copy ``folder``: exit status 2 and no file of
    ``folder`` changed. Returns its one error line."""
    before = _files(folder)
    assert exit_code(main, argv) == 2
    line = _one_line(capsys)
    assert _files(folder) == before
    return line


@pytest.mark.parametrize("case", sorted(PREPARED_CASES))
def test_edited_prepared_json_is_one_line_and_changes_nothing(case, world, tmp_path, capsys):
    from ctxenc_tf.cli.train import main as train_main
    edit, needle = PREPARED_CASES[case]
    prepared = tmp_path / "prepared"
    shutil.copytree(world["prepared"], prepared)
    _edit_json(prepared / "prepared.json", edit)
    line = _refused(train_main, READ_BACK_TRAIN + ["--epochs", "1", "--data-dir", str(prepared),
                                                   "--output-dir", str(tmp_path / "run")], prepared, capsys)
    assert line == f"error: {prepared / 'prepared.json'}: {needle}"


@pytest.mark.parametrize("case", sorted(EXPORT_CASES))
def test_export_config_must_fit_the_model_beside_it(case, world, tmp_path, capsys):
    from ctxenc_tf.cli.inpaint import main as inpaint_main
    change, pattern = EXPORT_CASES[case]
    export = tmp_path / "export"
    shutil.copytree(world["export"], export)
    _edit_json(export / "config.json", lambda config: [config.pop(k) if v is None else config.update({k: v})
                                                       for k, v in change.items()])
    photo = os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])
    line = _refused(inpaint_main, [photo, "--model", str(export / "tflite" / "ctxenc_float32.tflite"),
                                   "--out", str(tmp_path / "out"), "--progress", "off"], export, capsys)
    assert line.startswith(f"error: {export / 'config.json'}") and re.search(pattern, line), line
    assert not _files(tmp_path / "out")


@pytest.mark.parametrize("case", sorted(SPLIT_CASES))
def test_edited_split_json_is_one_line(case, world, tmp_path, capsys):
    """evaluate reads the run's split.json only when the folder changed since training, to
    say what changed; an edited one is one line naming the field."""
    from ctxenc_tf.cli import evaluate as evaluate_cli
    out, images = _run_copy(world, tmp_path, keep_previous=True), tmp_path / "images"
    shutil.copytree(world["images"], images)
    os.remove(sorted(images.iterdir())[0])
    edit, message = SPLIT_CASES[case]
    _edit_json(out / "split.json", edit)
    before = _files(out)
    code = exit_code(evaluate_cli.main, ["--model", str(out / "final.keras"), "--data-dir", str(images),
                                         "--split", "val", "--out", str(tmp_path / "eval"), "--progress", "off"])
    line = _one_line(capsys)
    assert code == 2 and line.endswith(f"split.json: {message}"), line
    assert _files(out) == before


def test_what_each_writer_writes_its_schema_accepts(world):
    """The run's state files, its config.json, prepared.json and the export's config.json
    pass their schemas as written (aligned.json: tests/test_align_faces.py)."""
    from ctxenc_tf import schemas
    from ctxenc_tf.config import RunConfig
    backup = os.path.join(world["run"], "backup")
    for name in ("state.json", "state.prev.json"):
        schemas.read_training_state(os.path.join(backup, name), steps_per_epoch=2)
    with open(os.path.join(world["run"], "config.json")) as f:
        run = schemas.RunConfigFile.model_validate(json.load(f), strict=True)
    names = schemas.read_split(os.path.join(world["run"], "split.json"))
    assert [len(names["train"]), len(names["val"])] == [run.model.trained_on["split"][k] for k in ("train", "val")]
    assert schemas.read_prepared(os.path.join(world["prepared"], "prepared.json"))["image_size"] == 32
    config = schemas.read_model_config(os.path.join(world["export"], "config.json"))
    assert config == tiny_model(fill_value=(0.0, 0.0, 0.0)) and isinstance(config, type(RunConfig().model))


def test_table_lists_every_case():
    table = {row.split("|")[1].strip() for row in __doc__.splitlines() if re.match(r"^\| [A-Z]\d", row)}
    assert table == set(STATE_CASES) | set(PREPARED_CASES) | set(EXPORT_CASES) | set(SPLIT_CASES)
