"""The benchmark suite runs end to end at tiny sizes and prints every figure (not the goals)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "baseline: sequential messages.get", "ours: one worker process", "ours ÷ baseline",
    "API calls for k = 10 new messages", "worker peak RSS, 300-record sync",
    "worker peak RSS, 1,000-record sync", "growth 300 → 1,000 records",
    "enqueue → start p50", "enqueue → start p99",
    "request → data key destroyed", "request → verified receipt",
    "achieved units/s ÷ ceiling",
)


@pytest.mark.timeout(300)
def test_quick_run_prints_and_writes_every_figure(tmp_path: Path) -> None:
    """`bench.run --quick` measures every benchmark and writes each figure to its Markdown."""
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for figure in FIGURES:
        assert figure in text, figure
    assert "n/a" not in text, text
    assert "| cpu |" in text and "| commit |" in text
