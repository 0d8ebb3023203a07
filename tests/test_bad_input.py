"""Every command given a wrong flag value, a missing file or a wrong model type exits
non-zero with one clear line on stderr (``error: ...``, or argparse's usage + one
``prog: error: ...`` line) and no traceback.

The cases run in-process through each command's ``main`` via ``cli.run_main`` (cheap); a
few run as real subprocesses too, in parallel, to check the actual entry points. The K cases
(the Keras backend) run only as subprocesses, one per entry point: they are refused before
any command, or Keras, is imported. Their "missing" jax is hidden by a ``sitecustomize`` that
makes it unimportable (jax is installed where the tests run).

| id  | command        | bad input                                          | the line must contain            |
|-----|----------------|----------------------------------------------------|----------------------------------|
| T1  | train.py       | --epochs 0                                         | --epochs=0                       |
| T2  | train.py       | --batch-size abc                                   | invalid int value: 'abc'         |
| T3  | train.py       | --data-dir <missing dir>                           | the dir, does not exist          |
| T4  | train.py       | --data-dir <a text file>                           | the file, not a directory        |
| T5  | train.py       | --precision float16                                | --precision='float16'            |
| T6  | train.py       | --learning-rate -1                                 | --learning-rate=-1.0             |
| T7  | train.py       | --preset bogus                                     | invalid choice: 'bogus'          |
| T8  | train.py       | --output-dir <below a regular file>                | --output-dir=the dir, the file   |
| T9  | train.py       | --backup-steps -1                                  | --backup-steps=-1                |
| T10 | train.py       | --no-such-flag                                     | unrecognized arguments           |
| T11 | train.py       | --data-dir <empty dir>                             | no image files                   |
| T12 | train.py       | --data-dir <3 images> --batch-size 64              | fewer than --batch-size=64       |
| T13 | train.py       | --data-dir <only non-images named .jpg>            | no usable training image         |
| T14 | train.py       | --output-dir <run of another architecture>         | --bottleneck 16 -> 8             |
| T15 | train.py       | --time-limit -5                                    | --time-limit=-5                  |
| T16 | train.py       | --cache <prefix in a missing dir>                  | --cache=..., not a writable dir  |
| T17 | train.py       | --seed -1                                          | --seed=-1                        |
| T18 | train.py       | --bottleneck 100000000 (would exhaust memory)      | --bottleneck=100000000           |
| T19 | train.py       | --learning-rate inf                                | --learning-rate=inf, finite      |
| T20 | train.py       | --output-dir <held by another writer>              | the dir, is writing here         |
| T21 | train.py       | --data-dir <3 images> --val-fraction 0.9999        | --val-fraction, all 3 images     |
| T22 | train.py       | --prepare <below a regular file>                   | --prepare=the dir, the file      |
| E1  | export.py      | --checkpoint <missing .keras>                      | the file, not found              |
| E2  | export.py      | --checkpoint <text file>                           | the file, not a .keras           |
| E3  | export.py      | --checkpoint <a plain keras model>                 | not a ContextEncoder             |
| E4  | export.py      | --variants onnx                                    | invalid choice: 'onnx'           |
| E5  | export.py      | --version 0                                        | expected 1 to                    |
| E7  | export.py      | --version 99999999999999999999                     | expected 1 to                    |
| E6  | export.py      | (no --checkpoint)                                  | required: --checkpoint           |
| E8  | export.py      | --out <a regular file>                             | --out=the file, not a directory  |
| I1  | inpaint        | --model <missing .keras>                           | the file                         |
| I2  | inpaint        | <missing photo>                                    | the photo                        |
| I3  | inpaint        | --batch-size 0                                     | --batch-size=0                   |
| I4  | inpaint        | --model <a plain keras model>                      | not a ContextEncoder             |
| I5  | inpaint        | --mask <missing file>                              | the mask file                    |
| I6  | inpaint        | --model <text file>                                | the file                         |
| I7  | inpaint        | --out <folder holding a file of the output's name> | the file, exists, --overwrite    |
| I8  | inpaint        | --out <a regular file>                             | --out=the file, not a directory  |
| V1  | evaluate       | --model <missing .keras>                           | the file                         |
| V2  | evaluate       | --split bogus                                      | invalid choice: 'bogus'          |
| V3  | evaluate       | --limit -1                                         | --limit=-1                       |
| V4  | evaluate       | --data-dir <missing dir>                           | the dir                          |
| V5  | evaluate       | --baselines magic                                  | unknown magic                    |
| V6  | evaluate       | --model <a plain keras model>                      | not a ContextEncoder             |
| V7  | evaluate       | --out <a regular file>                             | --out=the file, not a directory  |
| B1  | bench          | --json <an existing folder>                        | --json=the folder, a directory   |
| B2  | bench          | --json <a file below a regular file>               | --json=the path, not a directory |
| S1  | serving_client | <missing photo>                                    | the photo                        |
| S2  | serving_client | --protocol ftp                                     | invalid choice: 'ftp'            |
| S3  | serving_client | <text file as photo>                               | not a JPEG/PNG/GIF/BMP image     |
| S4  | serving_client | --port 1 (no server there)                         | localhost:1                      |
| S5  | serving_client | --timeout abc                                      | expected a number, got 'abc'     |
| S6  | serving_client | --port 70000                                       | expected 1 to 65535              |
| S7  | serving_client | --timeout nan                                      | expected 0.001 to                |
| S8  | serving_client | --host "127.0.0.1 bad"                             | expected a host name             |
| S9  | serving_client | <photo.png> --out <the same photo.png>             | the photo, is one of the inputs  |
| S10 | serving_client | --load 0                                           | expected 0.1 to                  |
| S11 | serving_client | --clients 8 (without --load)                       | need --load                      |
| S12 | serving_client | --load 5 --out report.png                          | expected a .json path            |
| S13 | serving_client | --load 5 --max-requests 0                          | expected 1 to                    |
| S14 | serving_client | --load 5 --out <a folder named r.json> --overwrite | --out=the folder, a directory    |
| S15 | serving_client | <photo> --out <a folder named x.png> --overwrite   | --out=the folder, a directory    |
| A1  | app            | --model <missing .keras>                           | the file                         |
| A2  | app            | --model <a plain keras model>                      | not a ContextEncoder             |
| A3  | app            | --port 70000                                       | expected 1 to 65535              |
| A4  | app            | --serving-url URL (no --model for its settings)    | --serving-url needs --model      |
| A5  | app            | --serving-url localhost:8501/v1/models/ctxenc      | expected http://HOST:PORT/v1/... |
| K1  | train.py       | KERAS_BACKEND=bogus                                | KERAS_BACKEND='bogus', the three |
| K2  | export.py      | KERAS_BACKEND=bogus                                | KERAS_BACKEND='bogus', the three |
| K3  | -m ctxenc_tf   | KERAS_BACKEND=bogus (inpaint)                      | KERAS_BACKEND='bogus', the three |
| K4  | ctxenc-tf      | KERAS_BACKEND=bogus (inpaint)                      | KERAS_BACKEND='bogus', the three |
| K5  | train.py       | KERAS_BACKEND=jax, jax missing                     | jax is not installed, how to     |
| K6  | export.py      | KERAS_BACKEND=jax, jax missing                     | jax is not installed, how to     |
| K7  | -m ctxenc_tf   | KERAS_BACKEND=jax, jax missing (inpaint)           | jax is not installed, how to     |
| K8  | ctxenc-tf      | KERAS_BACKEND=jax, jax missing (inpaint)           | jax is not installed, how to     |
"""

import concurrent.futures
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import FACES, REPO, not_installed, tiny_config, tiny_model, write_images

# id: (command, argv, substrings the error line must contain); {names} are filled from `paths`.
CASES = {
    "T1": ("train", ["--epochs", "0"], ["--epochs=0"]),
    "T2": ("train", ["--batch-size", "abc"], ["invalid int value: 'abc'"]),
    "T3": ("train", ["--data-dir", "{missing}"], ["{missing}", "does not exist"]),
    "T4": ("train", ["--data-dir", "{text}"], ["{text}", "not a directory"]),
    "T5": ("train", ["--precision", "float16"], ["--precision='float16'"]),
    "T6": ("train", ["--learning-rate", "-1"], ["--learning-rate=-1.0"]),
    "T7": ("train", ["--preset", "bogus"], ["invalid choice: 'bogus'"]),
    "T8": ("train", ["--data-dir", "{few}", "--output-dir", "{text}/run"],
            ["--output-dir={text}/run", "{text} is a file, not a directory"]),
    "T9": ("train", ["--backup-steps", "-1"], ["--backup-steps=-1"]),
    "T10": ("train", ["--no-such-flag"], ["unrecognized arguments: --no-such-flag"]),
    "T11": ("train", ["--data-dir", "{empty}"], ["{empty}", "no image files"]),
    "T12": ("train", ["--data-dir", "{few}", "--batch-size", "64"], ["fewer than --batch-size=64"]),
    "T13": ("train", ["--data-dir", "{junk}"], ["{junk}", "no usable training image"]),
    "T14": ("train", ["--data-dir", "{few}", "--output-dir", "{old_run}", "--bottleneck", "8"],
            ["--bottleneck 16 -> 8", "new --output-dir"]),
    "T15": ("train", ["--time-limit", "-5"], ["--time-limit=-5", "positive"]),
    "T16": ("train", ["--data-dir", "{few}", "--cache", "{missing}/cache"],
            ["--cache={missing}/cache", "not a writable directory"]),
    "T17": ("train", ["--seed", "-1"], ["--seed=-1"]),
    "T18": ("train", ["--bottleneck", "100000000"], ["--bottleneck=100000000"]),
    "T19": ("train", ["--learning-rate", "inf"], ["--learning-rate=inf", "finite"]),
    "T20": ("train", ["--data-dir", "{few}", "--output-dir", "{locked}"], ["{locked}", "is writing here"]),
    "T21": ("train", ["--data-dir", "{few}", "--val-fraction", "0.9999"],
            ["--val-fraction=0.9999", "all 3 images of {few}", "no training image"]),
    "T22": ("train", ["--prepare", "{text}/prepared"],
            ["--prepare={text}/prepared", "{text} is a file, not a directory"]),
    "E1": ("export", ["--checkpoint", "{missing}.keras"], ["{missing}.keras", "not found"]),
    "E2": ("export", ["--checkpoint", "{text}"], ["{text}", "not a .keras"]),
    "E3": ("export", ["--checkpoint", "{foreign}"], ["{foreign}", "not a ContextEncoder"]),
    "E4": ("export", ["--checkpoint", "{good}", "--variants", "onnx"], ["invalid choice: 'onnx'"]),
    "E5": ("export", ["--checkpoint", "{good}", "--version", "0"], ["expected 1 to"]),
    "E7": ("export", ["--checkpoint", "{good}", "--version", "99999999999999999999"], ["expected 1 to"]),
    "E6": ("export", [], ["required: --checkpoint"]),
    "E8": ("export", ["--checkpoint", "{good}", "--out", "{text}"], ["--out={text}", "a file, not a directory"]),
    "I1": ("inpaint", ["{photo}", "--model", "{missing}.keras", "--out", "{out}"], ["{missing}.keras"]),
    "I2": ("inpaint", ["{missing}.jpg", "--model", "{good}", "--out", "{out}"], ["{missing}.jpg"]),
    "I3": ("inpaint", ["{photo}", "--model", "{good}", "--out", "{out}", "--batch-size", "0"],
           ["--batch-size=0"]),
    "I4": ("inpaint", ["{photo}", "--model", "{foreign}", "--out", "{out}"], ["{foreign}", "not a ContextEncoder"]),
    "I5": ("inpaint", ["{photo}", "--model", "{good}", "--out", "{out}", "--mask", "{missing}.png"],
           ["{missing}.png"]),
    "I6": ("inpaint", ["{photo}", "--model", "{text}", "--out", "{out}"], ["{text}"]),
    "I7": ("inpaint", ["{photo}", "--model", "{good}", "--out", "{taken}"], ["{taken}/", "exists", "--overwrite"]),
    "I8": ("inpaint", ["{photo}", "--model", "{good}", "--out", "{text}"], ["--out={text}", "a file, not a directory"]),
    "V1": ("evaluate", ["--model", "{missing}.keras", "--out", "{out}"], ["{missing}.keras"]),
    "V2": ("evaluate", ["--model", "{good}", "--out", "{out}", "--split", "bogus"], ["invalid choice: 'bogus'"]),
    "V3": ("evaluate", ["--model", "{good}", "--out", "{out}", "--limit", "-1"], ["--limit=-1"]),
    "V4": ("evaluate", ["--model", "{good}", "--out", "{out}", "--data-dir", "{missing}"], ["{missing}"]),
    "V5": ("evaluate", ["--model", "{good}", "--out", "{out}", "--baselines", "magic"], ["unknown magic"]),
    "V6": ("evaluate", ["--model", "{foreign}", "--out", "{out}"], ["{foreign}", "not a ContextEncoder"]),
    "V7": ("evaluate", ["--model", "{good}", "--out", "{text}"], ["--out={text}", "a file, not a directory"]),
    "B1": ("bench", ["--json", "{empty}"], ["--json={empty}", "is a directory"]),
    "B2": ("bench", ["--json", "{text}/rows.json"], ["--json={text}/rows.json", "{text} is a file, not a directory"]),
    "S1": ("serving", ["{missing}.jpg"], ["{missing}.jpg"]),
    "S2": ("serving", ["{photo}", "--protocol", "ftp"], ["invalid choice: 'ftp'"]),
    "S3": ("serving", ["{text}"], ["{text}", "not a JPEG/PNG/GIF/BMP image"]),
    "S4": ("serving", ["{photo}", "--port", "1", "--timeout", "5", "--out", "{out}"], ["localhost:1"]),
    "S5": ("serving", ["{photo}", "--timeout", "abc"], ["expected a number, got 'abc'"]),
    "S6": ("serving", ["{photo}", "--port", "70000"], ["expected 1 to 65535"]),
    "S7": ("serving", ["{photo}", "--timeout", "nan"], ["expected 0.001 to"]),
    "S8": ("serving", ["{photo}", "--host", "127.0.0.1 bad"], ["expected a host name"]),
    "S9": ("serving", ["{png}", "--out", "{png}"], ["{png}", "is one of the inputs"]),
    "S10": ("serving", ["{photo}", "--load", "0"], ["expected 0.1 to"]),
    "S11": ("serving", ["{photo}", "--clients", "8"], ["need --load"]),
    "S12": ("serving", ["{photo}", "--load", "5", "--out", "report.png"], ["expected a .json path"]),
    "S13": ("serving", ["{photo}", "--load", "5", "--max-requests", "0"], ["expected 1 to"]),
    "S14": ("serving", ["{photo}", "--load", "5", "--out", "{json_dir}", "--overwrite"],
            ["--out={json_dir}", "is a directory"]),
    "S15": ("serving", ["{photo}", "--out", "{png_dir}", "--overwrite"], ["--out={png_dir}", "is a directory"]),
    "A1": ("app", ["--model", "{missing}.keras"], ["{missing}.keras"]),
    "A2": ("app", ["--model", "{foreign}"], ["{foreign}", "not a ContextEncoder"]),
    "A3": ("app", ["--port", "70000"], ["expected 1 to 65535"]),
    "A4": ("app", ["--serving-url", "http://127.0.0.1:1/v1/models/ctxenc"], ["--serving-url needs --model"]),
    "A5": ("app", ["--serving-url", "localhost:8501/v1/models/ctxenc", "--model", "{good}"],
           ["expected http://HOST:PORT/v1/models/NAME"]),
}
SUPPORTED = ["tensorflow (the default) and jax, which train", "torch, which builds and runs it but does not train"]
# id: (entry point, KERAS_BACKEND, whether jax is hidden, substrings the error line must contain)
BACKEND_CASES = {
    **{f"K{i}": (entry, "bogus", False, ["KERAS_BACKEND='bogus' is not a backend", *SUPPORTED])
       for i, entry in enumerate(("train.py", "export.py", "-m ctxenc_tf", "ctxenc-tf"), start=1)},
    **{f"K{i}": (entry, "jax", True, ["KERAS_BACKEND=jax, but jax is not installed: pip install -r "
                                      "requirements-jax.txt", *SUPPORTED])
       for i, entry in enumerate(("train.py", "export.py", "-m ctxenc_tf", "ctxenc-tf"), start=5)},
}
# Through the real entry points, one per command (train.py's: tests/test_train_cli.py).
SUBPROCESS_CASES = ("E3", "I2", "V5", "S3")

# train and export run through their documented scripts, the others as python -m ctxenc_tf <command>.
SCRIPTS = {"train": "train.py", "export": "export.py"}
COMMANDS = {"train": "train", "export": "export", "inpaint": "inpaint", "evaluate": "evaluate",
            "bench": "bench", "serving": "serve_client", "app": "app"}
TF_NOISE = ("WARNING: All log messages", "I0000", "E0000", "W0000")


def _main(command):
    return importlib.import_module(f"ctxenc_tf.cli.{COMMANDS[command]}").main


def _argv_prefix(command):
    if command in SCRIPTS:
        return [sys.executable, os.path.join(REPO, SCRIPTS[command])]
    return [sys.executable, "-m", "ctxenc_tf", COMMANDS[command].replace("_", "-")]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """The files the cases point at."""
    import keras

    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.training import resume
    from ctxenc_tf.utils import atomic
    root = tmp_path_factory.mktemp("bad_input")
    p = {k: str(root / k) for k in ("missing", "empty", "few", "junk", "out", "old_run")}
    os.makedirs(p["empty"])
    write_images(p["few"], 3)
    os.makedirs(p["junk"])
    for i in range(4):
        with open(os.path.join(p["junk"], f"junk{i}.jpg"), "w") as f:
            f.write("not an image\n")
    p["text"] = str(root / "notes.txt")
    with open(p["text"], "w") as f:
        f.write("hello\n")
    p["photo"] = os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])
    p["good"] = str(root / "good.keras")
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.1, 0.0, -0.1))), p["good"])
    p["foreign"] = str(root / "dense.keras")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(p["foreign"])
    # The resume state of a run with another architecture (bottleneck 16) in old_run/.
    backup = os.path.join(p["old_run"], "backup")
    os.makedirs(backup)
    old = tiny_config(data_dir=p["few"], output_dir=p["old_run"], bottleneck=16, batch_size=2)
    state = resume.TrainingState(1, 0, "state-e0001-s000000.weights.h5", 1.0, {}, old.to_dict(), "0" * 24)
    open(os.path.join(backup, state.weights), "w").close()
    state = dataclasses.replace(state, sha256=resume.file_sha256(os.path.join(backup, state.weights)))
    with open(os.path.join(backup, resume.STATE_FILE), "w") as f:
        json.dump(dataclasses.asdict(state), f)
    # A folder another writer holds for as long as the module's tests run (an flock on a
    # second open file conflicts in this process too).
    import contextlib

    from ctxenc_tf.utils.output_dir import exclusive_output
    p["locked"] = str(root / "locked")
    p["_lock"] = contextlib.ExitStack()
    p["_lock"].enter_context(exclusive_output(p["locked"], "another train.py"))
    p["png"] = str(root / "photo.png")
    from PIL import Image
    Image.open(p["photo"]).save(p["png"])
    # Folders named like the files serve-client writes.
    for key, name in (("json_dir", "report.json"), ("png_dir", "filled.png")):
        p[key] = str(root / name)
        os.makedirs(p[key])
    # A folder already holding a file named like the photo's output.
    p["taken"] = str(root / "taken")
    os.makedirs(p["taken"])
    stem = os.path.splitext(os.path.basename(p["photo"]))[0]
    with open(os.path.join(p["taken"], stem + "_filled.png"), "w") as f:
        f.write("mine\n")
    return p


def _expand(items, paths):
    return [item.format(**paths) for item in items]


def _argv(case, paths):
    command, argv, _ = CASES[case]
    if command == "train":  # tiny, quick settings unless the case sets them
        given = set(argv)
        defaults = {"--image-size": "32", "--bottleneck": "16", "--gen-filters": "8", "--disc-filters": "8",
                    "--batch-size": "2", "--epochs": "1", "--output-dir": paths["out"] + "/train"}
        argv = argv + [x for k, v in defaults.items() if k not in given for x in (k, v)]
    return _expand(argv, paths)


def check_one_error_line(code, stderr, needles):
    """Non-zero exit, no traceback, one ``error:`` line (argparse: usage + one error line)
    that contains every needle. Returns the line."""
    assert code not in (0, None), f"exit status {code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(TF_NOISE)]
    assert lines, "nothing on stderr"
    if lines[0].startswith("usage:"):  # argparse: usage block, then 'prog: error: ...'
        errors = [line for line in lines if re.match(r"^\S.*: error: ", line)]
        assert errors == [lines[-1]], stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_in_process(case, paths, capsys):
    from ctxenc_tf.cli.common import run_main
    command, _, needles = CASES[case]
    main = _main(command)
    try:
        code = run_main(main, _argv(case, paths))
    except SystemExit as e:
        code = e.code
    except Exception as e:  # an escaped exception is what a user would see as a traceback
        pytest.fail(f"{case}: Traceback ({type(e).__name__}: {e})")
    check_one_error_line(code, capsys.readouterr().err, _expand(needles, paths))


@pytest.mark.slow
def test_bad_input_subprocesses(paths):
    """A few cases through the real command lines, in parallel."""
    def run(case):
        command = CASES[case][0]
        env = dict(os.environ, PYTHONPATH=REPO)
        return subprocess.run(_argv_prefix(command) + _argv(case, paths), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)

    with concurrent.futures.ThreadPoolExecutor(len(SUBPROCESS_CASES)) as pool:
        results = dict(zip(SUBPROCESS_CASES, pool.map(run, SUBPROCESS_CASES)))
    for case, r in results.items():
        check_one_error_line(r.returncode, r.stderr, _expand(CASES[case][2], paths))


def _entry_point(entry):
    """The command line of an entry point; its command's arguments would be refused too
    (train.py would train the demo without ``--epochs 0``) if the backend were not first."""
    if entry == "ctxenc-tf":
        script = shutil.which("ctxenc-tf", path=os.path.dirname(sys.executable))
        if script is None:
            not_installed("the ctxenc-tf console script", "pip install -r requirements.txt -e .")
        return [script, "inpaint"]
    if entry == "-m ctxenc_tf":
        return [sys.executable, "-m", "ctxenc_tf", "inpaint"]
    return [sys.executable, os.path.join(REPO, entry), "--epochs", "0"]


@pytest.mark.parametrize("case", sorted(BACKEND_CASES))
def test_keras_backend_unknown_or_missing(case, tmp_path):
    entry, backend, hide_jax, needles = BACKEND_CASES[case]
    path = [REPO]
    if hide_jax:  # jax missing, as both importlib.util.find_spec and import see it
        (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["jax"] = None\n')
        path.insert(0, str(tmp_path))
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(path))
    r = subprocess.run(_entry_point(entry), cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    check_one_error_line(r.returncode, r.stderr, needles)


@pytest.mark.parametrize("backend", ["", "tensorflow", "jax"])
def test_keras_backends_that_work_pass_the_check(backend, monkeypatch):
    from ctxenc_tf.cli.backend_check import backend_problem

    if backend == "jax" and importlib.util.find_spec("jax") is None:
        not_installed("jax", "pip install -r requirements-jax.txt")
    monkeypatch.setenv("KERAS_BACKEND", backend)
    assert backend_problem() is None  # empty: Keras' own default


def test_table_lists_every_case():
    table = {row.split("|")[1].strip() for row in __doc__.splitlines() if re.match(r"^\| [A-Z]\d", row)}
    assert table == set(CASES) | set(BACKEND_CASES) and len(CASES) >= 20
