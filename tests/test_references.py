"""Cross-references in docstrings and docs point at things that exist.

Every ``:mod:``, ``:func:``, ``:class:``, ``:meth:``, ``:data:``, ``:attr:`` and ``:exc:``
reference in a docstring of the package, the scripts and the tests is resolved as Sphinx
would: a dotted path from an importable module (``~`` dropped, a leading ``.`` relative to
the package), else a name in the docstring's own module (and, inside a class, the class).
The docs and the README get the same check for their references, and every ``ctxenc_tf.``
dotted name and package file path they name in backticks must exist. These are the
references a move or a rename leaves behind without any test noticing.
"""

import ast
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROLE = re.compile(r":(mod|func|class|meth|data|attr|exc):`([^`]+)`")
PACKAGE_DIRS = ("ctxenc_tf",)
SCRIPTS = ("train.py", "export.py")


def _module_name(path: pathlib.Path) -> str:
    """The import name of a file of the package, a top-level script or a test module."""
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "tests":
        return relative.stem  # tests/ is on sys.path (rootdir conftest), as the tests import it
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_files() -> list:
    files = [p for d in PACKAGE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    return files + [ROOT / s for s in SCRIPTS] + sorted((ROOT / "tests").glob("*.py"))


def _docstring_references(path: pathlib.Path) -> list:
    """``(role, target, enclosing class name or None, line)`` for each role in a docstring."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, cls):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                line = node.body[0].lineno
                found.extend((role, target, cls, line) for role, target in ROLE.findall(doc))
        for child in ast.iter_child_nodes(node):
            visit(child, child.name if isinstance(child, ast.ClassDef) else cls)

    visit(tree, None)
    return found


def _import_prefix(dotted: str):
    """The longest importable module prefix of ``dotted`` and the attribute path after it."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        return module, parts[k:]
    return None, parts


def _getattr_path(obj, names) -> bool:
    for name in names:
        if not hasattr(obj, name):
            # dataclass fields without defaults are annotations, not class attributes
            if name not in getattr(obj, "__annotations__", {}):
                return False
            return name == names[-1]
        obj = getattr(obj, name)
    return True


def resolves(target: str, module_name: str | None = None, cls: str | None = None) -> bool:
    """Whether a reference ``target`` resolves, seen from ``module_name`` (and class ``cls``)."""
    target = target.lstrip("~")
    if target.startswith("."):
        home = importlib.import_module(module_name)
        package = module_name if hasattr(home, "__path__") else module_name.rsplit(".", 1)[0]
        target = package + target
    module, rest = _import_prefix(target)
    if module is not None and _getattr_path(module, rest):
        return True
    if module_name is None:
        return False
    home = importlib.import_module(module_name)
    names = target.split(".")
    if _getattr_path(home, names):
        return True
    return cls is not None and _getattr_path(getattr(home, cls), names)


def _docstring_cases():
    for path in _python_files():
        for role, target, cls, line in _docstring_references(path):
            yield pytest.param(path, role, target, cls, id=f"{path.relative_to(ROOT)}:{line}:{target}")


@pytest.mark.parametrize("path,role,target,cls", list(_docstring_cases()))
def test_docstring_reference_resolves(path, role, target, cls):
    assert resolves(target, _module_name(path), cls), (
        f"{path.relative_to(ROOT)}: :{role}:`{target}` names nothing that exists")


DOTTED = re.compile(r"`(ctxenc_tf(?:\.\w+)+)`")
PACKAGE_PATH = re.compile(r"`((?:ctxenc_tf/)?(?:\w+/)*\w+\.py)`")


def _doc_files() -> list:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _package_file_exists(path: str) -> bool:
    """A backticked ``.py`` path as the docs write it: from the repository root, or from the
    package (``model/masks.py``); a bare file name (``conftest.py``) is not a path."""
    if "/" not in path:
        return True
    return (ROOT / path).is_file() or (ROOT / "ctxenc_tf" / path).is_file()


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: p.name)
def test_docs_name_what_exists(doc):
    text = doc.read_text()
    missing = [f":{role}:`{t}`" for role, t in ROLE.findall(text) if not resolves(t)]
    missing += [name for name in DOTTED.findall(text) if not resolves(name)]
    missing += [path for path in PACKAGE_PATH.findall(text) if not _package_file_exists(path)]
    assert not missing, f"{doc.name} names what does not exist: {sorted(set(missing))}"


def test_the_checks_catch_a_stale_reference():
    """The resolver is not vacuous: the old flat layout's names do not resolve."""
    assert resolves("ctxenc_tf.data.pipeline.training_batches")
    assert not resolves("ctxenc_tf.pipeline.training_batches")
    assert not resolves("~ctxenc_tf.DataError", "ctxenc_tf.data.pipeline")
    assert resolves("ConfigError", "ctxenc_tf.config")
    assert not _package_file_exists("model/no_such_module.py")
