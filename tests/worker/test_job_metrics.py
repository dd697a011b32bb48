"""The worker serves its own metrics, and counts job outcomes and retries as they happen."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from arq import Retry

from gwsync.core import metrics
from gwsync.core.settings import Settings
from gwsync.worker import job_metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        return resp.read().decode()


def test_worker_serves_its_registry_on_the_configured_port() -> None:
    """With GWSYNC_WORKER_METRICS_PORT set, the worker's event metrics answer on it."""
    server = job_metrics.serve(Settings(worker_metrics_port=_free_port()), host="127.0.0.1")
    assert server is not None
    try:
        text = _get(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert "gwsync_jobs_total" in text and "gwsync_google_api_calls_total" in text


def test_port_zero_serves_nothing() -> None:
    """GWSYNC_WORKER_METRICS_PORT=0 turns the worker's metrics server off."""
    assert job_metrics.serve(Settings(worker_metrics_port=0)) is None


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_measured_counts_outcomes_and_retries() -> None:
    """A returned outcome, a Retry and a crash are each counted under their own outcome."""
    async def job(_ctx: dict[str, Any], what: str) -> dict[str, str]:
        if what == "retry":
            raise Retry(defer=1)
        if what == "crash":
            raise RuntimeError("boom")
        return {"outcome": what}

    wrapped = job_metrics.measured("test_task", job)
    before = {o: _value("gwsync_jobs_total", task="test_task", outcome=o)
              for o in ("failed", "retry", "error", "other")}
    retries = _value("gwsync_job_retries_total", task="test_task")
    await wrapped({}, "failed")
    await wrapped({}, "made-up outcome")
    with pytest.raises(Retry):
        await wrapped({}, "retry")
    with pytest.raises(RuntimeError):
        await wrapped({}, "crash")
    for outcome in before:
        assert _value("gwsync_jobs_total", task="test_task", outcome=outcome) \
            - before[outcome] == 1
    assert _value("gwsync_job_retries_total", task="test_task") - retries == 1
    assert _value("gwsync_job_duration_seconds_count", task="test_task") >= 4
