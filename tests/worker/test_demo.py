"""`gwsync demo` end to end, as a user runs it: real web and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("GWSYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent


def _demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "gwsync"), "demo", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, check=False)


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus GWSYNC_ settings; the demo's temp dir under `tmp`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_")}
    return {**env, "COLUMNS": "120", "TMPDIR": str(tmp), **extra}


@pytest.mark.timeout(150)
def test_demo_runs_the_whole_flow_to_a_verified_receipt(tmp_path: Path) -> None:
    """The demo connects, syncs, is refused ai_training and ends with a verified erasure."""
    result = _demo(_env(tmp_path, GWSYNC_REDIS_URL=REDIS_URL), "--contacts", "30")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert '"state": "verified"' in result.stdout
    assert '"ok": true' in result.stdout
    assert "limited_use_violation" in result.stdout
    assert "30/30" in result.stdout
    assert "erasure verified: 30 records deleted" in result.stdout


@pytest.mark.timeout(150)
def test_demo_without_redis_names_the_package_to_install(tmp_path: Path) -> None:
    """With no Redis answering and no redis-server on PATH, the demo exits 2 naming the package."""
    env = _env(tmp_path, GWSYNC_REDIS_URL="redis://127.0.0.1:1/0", PATH=str(BIN))
    result = _demo(env, "--contacts", "3")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "apt-get install redis-server" in result.stdout
    assert "brew install redis" in result.stdout
