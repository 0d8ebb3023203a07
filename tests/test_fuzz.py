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

from conftest import FACES, tiny_model, write_images

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
                f.write(data if not data.startswith(b"{") else json.dumps({"epoch": data.decode(errors="replace")}).encode())
            command, argv = "train", QUICK_TRAIN + ["--data-dir", world["images"], "--output-dir", out,
                                                    "--time-limit", "0.02"]
        check(*run(command, argv, world["root"]), f"{role}: {data[:60]!r}")

    one()
