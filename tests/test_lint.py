"""The lint step: ``ruff check`` over the repository with pyproject.toml's settings
(pycodestyle, pyflakes, import order; 120 columns). Ruff is pinned in requirements.txt,
so CI's result is this machine's."""

import subprocess
import sys

from helpers import REPO, not_installed


def test_ruff_finds_nothing():
    try:
        import ruff  # noqa: F401
    except ImportError:
        not_installed("ruff", "pip install -r requirements.txt")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
