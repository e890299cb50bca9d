"""Lint and types are part of the suite, so CI fails on either."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def _tool(name: str) -> list[str]:
    found = shutil.which(name, path=str(REPO / ".venv" / "bin")) or shutil.which(name)
    return [found] if found else [sys.executable, "-m", name]


def test_ruff_clean() -> None:
    result = subprocess.run([*_tool("ruff"), "check", "operator", "tests", "scripts"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = subprocess.run([*_tool("mypy")], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
