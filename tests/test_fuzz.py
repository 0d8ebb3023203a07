"""Property-based bad input (hypothesis): generated flag values and generated file bytes
thrown at every command, in-process. Whatever comes in, a command ends with exit status
0, 1 (some inputs skipped) or 2 and, when it fails, one error line; never a traceback.

Each command starts from quick settings (a 32x32 model, four images, a 1-second time
limit) so that the values that happen to be valid finish fast; one generated flag value
(or file) goes in on top of them."""

import argparse
import contextlib
import io
import json
import os
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import FACES, tiny_model, write_images

pytestmark = pytest.mark.slow

COMMANDS = ("train", "export", "inpaint", "evaluate", "serve_client")
QUICK_TRAIN = ["--image-size", "32", "--bottleneck", "8", "--gen-filters", "4", "--disc-filters", "4",
               "--batch-size", "2", "--epochs", "1", "--no-jit-compile"]
FUZZ_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

def _inside(value: str) -> str:
    """A generated value made harmless as a path: runs happen in a temporary folder, and a
    value naming the root or a parent (``/``, ``..``) must not make a command write there."""
    return value.replace("/", "_").replace("\\", "_").replace("..", "__")


VALUES = st.one_of(
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "0", "-1", "nan", "inf", "-inf", "1e309", "\udcff", "a,b,,c", "*", " "]),
    st.text(max_size=12).filter(lambda t: not t.startswith("-")),
).map(_inside)


def _flags(command) -> list:
    """The value-taking ``--flags`` of a command, read from its own parser."""
    import importlib

    module = importlib.import_module(f"ctxenc_tf.cli.{command}")
    captured = {}

    def grab(parser, args=None, namespace=None):
        captured["parser"] = parser
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab
    try:
        with contextlib.suppress(SystemExit):
            module.parse_args([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return sorted(opt for action in captured["parser"]._actions for opt in action.option_strings
                  if opt.startswith("--") and action.nargs != 0 and opt != "--help")


def run(command, argv, cwd):
    """``(exit status, stderr)`` of one in-process run through the command-line entry, in
    the folder ``cwd`` (a generated relative path lands there, not in the repository)."""
    import importlib

    from ctxenc_tf.cli.common import run_main
    err = io.StringIO()
    code = 0
    with contextlib.chdir(cwd), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = run_main(importlib.import_module(f"ctxenc_tf.cli.{command}").main, argv)
        except SystemExit as e:
            code = e.code
    return code, err.getvalue()


def check(code, stderr, what):
    assert "Traceback" not in stderr, f"{what}\n{stderr}"
    assert code in (0, 1, 2), f"{what}: exit {code}\n{stderr}"
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert lines and re.match(r"^(error: |\S.*: error: )", lines[-1]), f"{what}\n{stderr}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ctxenc_tf.model.context_encoder import ContextEncoder
    from ctxenc_tf.utils import atomic
    root = tmp_path_factory.mktemp("fuzz")
    w = {"root": root, "images": str(root / "images"), "model": str(root / "m.keras"),
         "photo": os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])}
    write_images(w["images"], 6)
    atomic.save_model(ContextEncoder(tiny_model(fill_value=(0.0, 0.0, 0.0), mask_type="random_square")), w["model"])
    w["counter"] = iter(range(10**9))
    return w


def base_argv(command, w) -> tuple:
    """``(before, after)``: quick settings the fuzzed flag may override, then the fixed ones."""
    n = next(w["counter"])
    out = str(w["root"] / f"out{n}")
    if command == "train":
        return QUICK_TRAIN, ["--data-dir", w["images"], "--output-dir", out, "--time-limit", "0.02",
                             "--train-limit", "4", "--val-limit", "2"]
    if command == "export":
        return ["--variants", "float32", "--parity-images", "2"], ["--checkpoint", w["model"], "--out", out]
    if command == "inpaint":
        return [], [w["photo"], "--model", w["model"], "--out", out, "--progress", "off"]
    if command == "evaluate":
        return ["--limit", "2", "--baselines", "mean"], ["--model", w["model"], "--data-dir", w["images"],
                                                        "--out", out, "--progress", "off"]
    return ["--timeout", "0.5", "--port", "1"], [w["photo"], "--out", out]


@pytest.mark.parametrize("command", COMMANDS)
def test_generated_flag_values(command, world):
    flags = _flags(command)
    assert flags

    @FUZZ_SETTINGS
    @given(flag=st.sampled_from(flags), value=VALUES)
    def one(flag, value):
        before, after = base_argv(command, world)
        if flag in after:  # a fixed flag: fuzz it in its place instead
            after = after[:after.index(flag) + 1] + [value] + after[after.index(flag) + 2:]
            argv = before + after
        else:
            argv = before + [flag, value] + after
        check(*run(command, argv, world["root"]), f"{command} {flag} {value!r}")

    one()


FILE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff" + b),
    st.binary(max_size=300).map(lambda b: b"PK\x03\x04" + b),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@pytest.mark.parametrize("role", ["photo", "mask", "model", "partition", "state"])
def test_generated_file_bytes(role, world):
    @FUZZ_SETTINGS
    @given(data=FILE_BYTES)
    def one(data):
        n = next(world["counter"])
        folder = world["root"] / f"files{n}"
        folder.mkdir()
        path = folder / {"photo": "p.jpg", "mask": "m.png", "model": "x.keras", "partition": "list_eval_partition.txt",
                         "state": "state.json"}[role]
        out = str(folder / "out")
        if role == "photo":
            path.write_bytes(data)
            command, argv = "inpaint", [str(path), "--model", world["model"], "--out", out, "--progress", "off"]
        elif role == "mask":
            path.write_bytes(data)
            command, argv = "inpaint", [world["photo"], "--model", world["model"], "--mask", str(path),
                                        "--out", out, "--progress", "off"]
        elif role == "model":
            path.write_bytes(data)
            command, argv = "evaluate", ["--model", str(path), "--data-dir", world["images"], "--out", out,
                                         "--progress", "off", "--baselines", "none"]
        elif role == "partition":  # a CelebA layout whose partition file is generated
            shutil.copytree(world["images"], folder / "img_align_celeba")
            path.write_bytes(data)
            command, argv = "train", QUICK_TRAIN + ["--data-dir", str(folder), "--output-dir", out,
                                                    "--time-limit", "0.02"]
        else:  # a resume state file that is generated
            os.makedirs(os.path.join(out, "backup"))
            with open(os.path.join(out, "backup", "state.json"), "wb") as f:
                f.write(data if not data.startswith(b"{")
                        else json.dumps({"epoch": data.decode(errors="replace")}).encode())
            command, argv = "train", QUICK_TRAIN + ["--data-dir", world["images"], "--output-dir", out,
                                                    "--time-limit", "0.02"]
        check(*run(command, argv, world["root"]), f"{role}: {data[:60]!r}")

    one()


# ---- Structured: well-formed files with wrong content ---------------------------------
# Every file a command reads back (ctxenc_tf/schemas.py), parsed fine but edited: one field
# replaced by another JSON type, an out-of-range number, a huge or empty string, dropped,
# or its key written twice. Read directly (milliseconds each): the reader returns, or
# raises its one-line error naming the file; the file is never changed. Then a few
# generated edits through the commands that read them.

DROP, TWICE = "drop", "twice"
HUGE = "x" * 100_000
OTHER_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2.5, -0.5, 10**30, -10**30, 1e308, float("inf"),
                     float("-inf"), float("nan"), "", " ", "32", "three", HUGE, "../../x", "/etc/passwd",
                     [], [None], [0, 0, 0], {}, {"a": 1}]),
    st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)


def _paths(value, path=()):
    """Every location inside a JSON document: object keys and list items, nested."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield path + (key,)
        yield from _paths(child, path + (key,))


def edited(document, path, change) -> str:
    """``document`` as JSON text with ``change`` at ``path``: :data:`DROP` removes it,
    ``(TWICE, value)`` writes its key a second time with ``value`` (a list item is replaced
    instead), anything else replaces it."""
    doc = json.loads(json.dumps(document))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    mark = "\u2063twice\u2063"
    if change == DROP:
        del parent[key]
    elif isinstance(change, tuple) and isinstance(parent, dict):
        parent[mark] = change[1]
    else:
        parent[key] = change[1] if isinstance(change, tuple) else change
    return json.dumps(doc).replace(json.dumps(mark), json.dumps(key), 1)


def edits(document):
    """Hypothesis strategy of ``(path, change)`` over every location of ``document``."""
    return st.tuples(st.sampled_from(list(_paths(document))),
                     st.one_of(OTHER_VALUES, st.just(DROP), st.tuples(st.just(TWICE), OTHER_VALUES)))


def read_back(path, text: str, read, error) -> None:
    """Write ``text`` to ``path`` and read it: either it passes, or one line of ``error``
    naming ``path``; the file keeps its bytes."""
    path.write_text(text, encoding="utf-8")
    before = path.read_bytes()
    try:
        read(str(path))
    except error as e:
        line = str(e)
        assert line.startswith(f"{path}") and "\n" not in line and len(line) < 600, line
    assert path.read_bytes() == before


def _documents(files):
    """``{name: (document, reader, error type)}`` of every JSON file read back."""
    from ctxenc_tf import schemas
    from ctxenc_tf.errors import CheckpointError, ConfigError, DataError

    def load(*parts):
        with open(os.path.join(*parts)) as f:
            return json.load(f)

    aligned = {"format": schemas.ALIGNED_FORMAT, "source": "/photos",
               "settings": {"max_faces": None, "min_face": 32, "face_confidence": 0.95, "exclude": ""},
               "detector": {"name": "MTCNN", "package": "mtcnn 1.0.0", "detection_side": 1024},
               "frame": {"size": [178, 218], "landmarks": [[70.7, 112.0], [108.2, 112.0], [89.5, 134.5],
                                                          [73.0, 152.5], [106.0, 152.5]]},
               "photos_read": 3, "faces": 2, "faces_too_small": 1, "faces_beyond_max": 0,
               "without_face": ["b.jpg"], "unreadable": [["c.jpg", "empty file"]]}
    return {
        "state": (load(files["run"], "backup", "state.json"),
                  lambda p: schemas.read_training_state(p, steps_per_epoch=2), ConfigError),
        "prepared": (load(files["prepared"], "prepared.json"), schemas.read_prepared, DataError),
        "aligned": (aligned, schemas.read_aligned, DataError),
        "export_config": (load(files["export"], "config.json"), schemas.read_model_config, CheckpointError),
    }


STRUCTURED_SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", ["state", "prepared", "aligned", "export_config"])
def test_every_field_of_every_read_back_file_edited(name, read_back_files, tmp_path):
    """Each location of the file with each kind of edit (the generated values on top of a
    fixed list that holds every JSON type), through the file's reader."""
    document, read, error = _documents(read_back_files)[name]
    path = tmp_path / "file.json"
    read_back(path, json.dumps(document), read, error)  # the unedited file passes
    read(str(path))
    for location in _paths(document):
        for change in (DROP, (TWICE, None), None, True, 0, -1, 2.5, 10**30, float("-inf"),
                       "", HUGE, [], {}):
            read_back(path, edited(document, location, change), read, error)

    @STRUCTURED_SETTINGS
    @given(edit=edits(document))
    def one(edit):
        read_back(path, edited(document, *edit), read, error)

    one()


PARTITION_LINES = st.lists(st.one_of(
    st.tuples(st.sampled_from(["000001.jpg", "000002.jpg", "a b.jpg", "../x.jpg", "/abs.jpg", HUGE]),
              st.sampled_from(["0", "1", "2", "3", "-1", "x", "", "0 0", "1.0"])).map(" ".join),
    st.text(max_size=30),
), max_size=8).map("\n".join)


def test_generated_partition_files(tmp_path):
    """CelebA's partition: wrong split numbers, extra or missing columns, paths out of the
    image folder, a file listed twice."""
    from ctxenc_tf import schemas
    from ctxenc_tf.errors import DataError
    path = tmp_path / "list_eval_partition.txt"

    @STRUCTURED_SETTINGS
    @given(text=PARTITION_LINES)
    def one(text):
        read_back(path, text, schemas.read_partition, DataError)

    one()
    path.write_text("000001.jpg 0\n000002.jpg 1\n000001.jpg 2\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt:3: '000001.jpg' is listed again \(first on line 1\)"):
        schemas.read_partition(str(path))


COMMAND_SETTINGS = settings(max_examples=3, deadline=None, derandomize=True,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", ["state", "prepared", "export_config"])
def test_generated_edits_through_the_commands(name, read_back_files, tmp_path):
    """A few generated edits through the command that reads the file: train resuming a run
    (without state.prev.json), train on a prepared folder, inpaint with a TFLite export.
    Exit 0 or one error line; the edited folder keeps its files and bytes."""
    from helpers import READ_BACK_TRAIN
    document, _, _ = _documents(read_back_files)[name]
    counter = iter(range(10**6))

    @COMMAND_SETTINGS
    @given(edit=edits(document))
    def one(edit):
        folder = tmp_path / str(next(counter))
        if name == "state":
            shutil.copytree(read_back_files["run"], folder)
            previous = folder / "backup" / "state.prev.json"
            os.remove(folder / "backup" / json.loads(previous.read_text())["weights"])
            os.remove(previous)
            target = folder / "backup" / "state.json"
            command, argv = "train", READ_BACK_TRAIN + ["--epochs", "3", "--data-dir", read_back_files["images"],
                                                        "--output-dir", str(folder), "--time-limit", "0.02"]
        elif name == "prepared":
            shutil.copytree(read_back_files["prepared"], folder)
            target = folder / "prepared.json"
            command, argv = "train", READ_BACK_TRAIN + ["--epochs", "1", "--data-dir", str(folder), "--output-dir",
                                                        str(tmp_path / f"out{next(counter)}"), "--time-limit", "0.02"]
        else:
            shutil.copytree(read_back_files["export"], folder)
            target = folder / "config.json"
            command, argv = "inpaint", [world_photo(), "--model", str(folder / "tflite" / "ctxenc_float32.tflite"),
                                        "--out", str(tmp_path / f"out{next(counter)}"), "--progress", "off"]
        target.write_text(edited(document, *edit))
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".ctxenc")}
        code, stderr = run(command, argv, tmp_path)
        check(code, stderr, f"{name} {edit!r:.200}")
        # a flag the command no longer has would stop it before the file it means to read
        assert "unrecognized arguments" not in stderr, f"{name} {edit!r:.200}\n{stderr}"
        if code == 2 or name != "state":  # a resumed run rewrites its state: only a refusal leaves it
            after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".ctxenc")}
            assert after == before, f"{name} {edit!r:.200}"

    one()


def world_photo() -> str:
    return os.path.join(FACES, sorted(f for f in os.listdir(FACES) if f.endswith(".jpg"))[0])
