"""Job outcomes, durations and retries, measured around each arq job function.

arq's `on_job_start`/`after_job_end` hooks see neither the function nor its outcome, so
the measuring is a thin wrapper the worker registers instead of the bare job function.
Each run is also counted per minute in Redis, where the web process reads throughput
across all workers for the ops page.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any
from wsgiref.simple_server import WSGIServer

from arq import Retry
from prometheus_client import start_http_server
from redis.exceptions import RedisError

from gwsync.core import logs, metrics, queue
from gwsync.core.settings import Settings
from gwsync.core.timeutil import as_utc
from gwsync.storage import ops_snapshot
from gwsync.storage.models import Erasure

log = logs.get("gwsync.job_metrics")
JobFunction = Callable[..., Coroutine[Any, Any, Any]]


def outcome_of(result: Any) -> str:
    """The outcome a job reported (`{"outcome": ...}`), or `ok` for a plain return."""
    if isinstance(result, dict) and isinstance(result.get("outcome"), str):
        outcome: str = result["outcome"]
        return outcome
    return "ok"


def measured(task: str, function: JobFunction) -> JobFunction:
    """`function`, counted by outcome and timed; a Retry counts as a retry, not a failure."""

    @functools.wraps(function)
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await function(ctx, *args, **kwargs)
            outcome = outcome_of(result)
            return result
        except Retry:
            outcome = "retry"
            metrics.JOB_RETRIES.labels(task=task).inc()
            raise
        finally:
            seconds = time.perf_counter() - started
            metrics.JOBS.labels(task=task, outcome=_bounded(outcome)).inc()
            metrics.JOB_SECONDS.labels(task=task).observe(seconds)
            await _count_finished(ctx, _bounded(outcome))
            if task == queue.ERASE and outcome == "verified" and args:
                await _erasure_done(ctx, args[0], seconds)

    return run


#: Outcomes the jobs return; anything else is counted as `other` (labels stay a closed set).
KNOWN_OUTCOMES = frozenset({"ok", "failed", "skipped", "fenced", "bad_args", "unknown",
                            "verified", "retry", "error"})


def _bounded(outcome: str) -> str:
    return outcome if outcome in KNOWN_OUTCOMES else "other"


async def _count_finished(ctx: dict[str, Any], outcome: str) -> None:
    deps = ctx.get("deps")
    if deps is None:
        return
    bucket = {"verified": "ok", "fenced": "skipped", "bad_args": "failed",
              "unknown": "failed"}.get(outcome, outcome)
    try:
        await ops_snapshot.count_finished(deps.queue.redis, deps.queue.prefix, bucket)
    except RedisError:
        log.warning("throughput_count_failed")  # the metric is a view; the job went on


async def _erasure_done(ctx: dict[str, Any], erasure_id: Any, run_s: float) -> None:
    """Observe request → verification once: only when this run is the one that verified it."""
    deps = ctx.get("deps")
    if deps is None or not isinstance(erasure_id, str):
        return
    async with deps.sessions() as session:
        erasure = await session.get(Erasure, erasure_id)
    if erasure is None or erasure.completed_at is None:
        return
    completed, requested = as_utc(erasure.completed_at), as_utc(erasure.requested_at)
    if (time.time() - completed.timestamp()) <= run_s + 1:
        metrics.ERASURE_SECONDS.observe(max(0.0, (completed - requested).total_seconds()))


def serve(settings: Settings, host: str = "0.0.0.0") -> WSGIServer | None:
    """Expose this worker's metrics on `GWSYNC_WORKER_METRICS_PORT` (0: not at all).

    A busy port is logged, not fatal: a worker that cannot be scraped still does its jobs.
    """
    port = settings.worker_metrics_port
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.REGISTRY)
    except OSError as exc:
        log.error("worker_metrics_port_unavailable", port=port, error=type(exc).__name__)
        return None
    log.info("worker_metrics_serving", port=port)
    return server
