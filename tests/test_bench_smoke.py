"""The benchmark suite runs end to end at tiny sizes and prints every figure (not the goals).

Four benchmarks run at a time (each has its own database, Redis prefix and processes): a
smoke run's time is mostly processes starting and waiting, not CPU."""

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
    "idle worker's Redis commands/s", "one scrape as served", "one ops snapshot computed",
    "the floor now: one bare UPDATE", "due syncs queued: the tick",
    "records/s, Gmail first sync in realistic mode",
    "share of the per-user quota ceiling", "baseline in the same mode",
    "full first sync of the fleet", "one incremental cycle",
    "worker CPU-seconds per account per cycle", "Google calls per account per cycle",
    "one scheduler tick", "erasure: request → verified receipt (all zero: yes)",
    "growth of a tick", "more records (binary COPY, indexes rebuilt", "due among",
    "growth of a tick at", "growth of a scrape as served", "growth of an erasure's shred",
    "push: change → readable p50", "push: change → readable p99",
    "Gmail push: change → readable p50", "Gmail push: change → readable p99",
    "polling: change → readable p50", "polling: change → readable p99",
)


@pytest.mark.timeout(300)
def test_quick_run_prints_and_writes_every_figure(tmp_path: Path) -> None:
    """`bench.run --quick` measures every benchmark and writes each figure to its Markdown."""
    out = tmp_path / "benchmarks.md"
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--parallel",
                           "4", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    for figure in FIGURES:
        assert figure in text, figure
    assert "n/a" not in text, text
    assert "| cpu |" in text and "| commit |" in text
