"""The static checks are part of the test command: lint, strict types and the layers.

Each runs as its own process from this venv, with its configuration from pyproject.toml,
so `bin/test` (and CI) fail on what a reviewer would otherwise have to catch by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    """`command` from the repository root, its output kept for the failure message."""
    return subprocess.run([str(c) for c in command], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")


def test_ruff_finds_nothing_in_the_code_tests_and_benchmarks() -> None:
    """`ruff check gwsync tests bench` reports no problem."""
    assert_clean(run(sys.executable, "-m", "ruff", "check", "gwsync", "tests", "bench"))


# A cold run reads the stubs of every Google API (about a minute of CPU); then it is cached.
@pytest.mark.timeout(900)
def test_gwsync_is_clean_under_mypy_strict() -> None:
    """mypy, configured by pyproject's [tool.mypy] (strict, gwsync/), finds no error."""
    assert_clean(run(sys.executable, "-m", "mypy"))


def test_imports_respect_the_layers() -> None:
    """lint-imports keeps every contract of pyproject's [tool.importlinter]."""
    assert_clean(run(BIN / "lint-imports"))
