"""The folder tree is the architecture: no import cycles, dependencies pointing one way
(cli -> benchmark -> export -> inference/training -> data -> model / faces -> schemas -> config/utils/errors;
run_files, the names of a training run's files, for training and the commands that read them),
no side effects on import, no TensorFlow in the model outside its TensorFlow steps.
(``tests/test_compat.py`` checks the private framework hooks ``ctxenc_tf/compat/`` relies on.)"""

import ast
import os
import subprocess
import sys

from helpers import REPO

PACKAGE = os.path.join(REPO, "ctxenc_tf")
# What each part may import besides itself; the rest of the package is off limits.
ALLOWED = {
    "errors": set(),
    "config": {"errors", "utils"},
    "run_files": set(),
    "schemas": {"config", "errors", "utils"},
    "utils": {"errors"},
    "compat": set(),
    "model": {"config", "errors", "utils", "compat"},
    "faces": {"config", "errors", "utils"},
    "data": {"config", "schemas", "errors", "utils", "model", "faces"},
    "training": {"config", "run_files", "schemas", "errors", "utils", "model", "data", "faces"},
    "inference": {"config", "schemas", "errors", "utils", "model", "data", "faces"},
    "export": {"config", "schemas", "errors", "utils", "model", "data", "faces", "inference"},
    "benchmark": {"config", "schemas", "errors", "utils", "compat", "model", "data", "faces", "inference", "export",
                  "training"},
    "cli": {"config", "run_files", "schemas", "errors", "utils", "model", "data", "faces", "inference", "export",
            "training", "benchmark"},
}


def _modules():
    """``{dotted module name: set of ctxenc_tf modules it imports}`` (function-level too)."""
    graph = {}
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            imported = set()
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ctxenc_tf"):
                    for alias in node.names:  # "from ctxenc_tf.data import pipeline" names a module
                        candidate = f"{node.module}.{alias.name}"
                        sub = os.path.join(REPO, *candidate.split("."))
                        imported.add(candidate if os.path.exists(sub + ".py") or os.path.isdir(sub) else node.module)
                elif isinstance(node, ast.Import):
                    imported |= {a.name for a in node.names if a.name.startswith("ctxenc_tf")}
            graph[module] = imported
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "package"


def test_no_import_cycles():
    graph = _modules()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep == node or dep not in graph or _part(dep) == "package":
                continue
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_dependencies_point_one_way():
    wrong = []
    for module, imported in sorted(_modules().items()):
        part = _part(module)
        if part not in ALLOWED:
            continue
        for dep in imported:
            target = _part(dep)
            if target not in (part, "package") and target not in ALLOWED[part]:
                wrong.append(f"{module} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_every_part_is_known():
    parts = {_part(m) for m in _modules()} - {"package", "__main__"}
    assert parts <= set(ALLOWED), parts - set(ALLOWED)


def test_importing_the_package_has_no_side_effects():
    """No TensorFlow import, no change to file descriptor 2, no environment variable set."""
    code = ("import os, sys; before = (os.fstat(2).st_ino, dict(os.environ)); import ctxenc_tf; "
            "assert 'tensorflow' not in sys.modules; assert (os.fstat(2).st_ino, dict(os.environ)) == before")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)


def test_run_file_names_import_no_framework():
    """The app learns the names of a run's checkpoints without loading TensorFlow or Keras."""
    code = "import sys, ctxenc_tf.run_files; assert not {'tensorflow', 'keras', 'jax'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_model_code_imports_no_tensorflow():
    """The model runs on every Keras backend: only its TensorFlow training steps (and
    compat's TensorFlow modules: the trainer hooks they use, and the profiler trace reader
    of the TensorFlow-only bench) import TensorFlow at module level, loaded under that
    backend alone (see context_encoder.py)."""
    wrong = []
    for folder, exempt in (("model", {"tensorflow_steps.py"}),
                           ("compat", {"tensorflow_trainer.py", "tensorflow_profiler.py"})):
        for name in sorted(os.listdir(os.path.join(PACKAGE, folder))):
            if not name.endswith(".py") or name in exempt:
                continue
            for node in ast.parse(open(os.path.join(PACKAGE, folder, name)).read()).body:
                modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module] if isinstance(node, ast.ImportFrom) else [])
                wrong += [f"{folder}/{name} imports {m}" for m in modules if m and m.split(".")[0] == "tensorflow"]
    assert not wrong, "\n".join(wrong)


def test_one_command_line_entry_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "ctxenc_tf", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    for command in ("train", "export", "inpaint", "evaluate", "bench", "serve-client", "app"):
        assert f"  {command} " in out
    bad = subprocess.run([sys.executable, "-m", "ctxenc_tf", "nonsense"], cwd=REPO, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: unknown command 'nonsense'")
    assert len(bad.stderr.strip().splitlines()) == 1
