"""The arq worker: one flat WorkerSettings class, because arq reads only its own __dict__."""

from __future__ import annotations

from typing import Any, cast

from arq import cron
from arq.connections import RedisSettings
from arq.typing import WorkerCoroutine
from arq.worker import Function, Worker, func

from gwsync.core import logs, queue
from gwsync.core.settings import Settings
from gwsync.tasks.app_webhooks import deliver_app_webhooks
from gwsync.tasks.deps import Deps
from gwsync.tasks.erase import erase
from gwsync.tasks.recover import resume_erasures, retry_revocations, sweep_retention
from gwsync.tasks.schedule import (
    DISPATCH,
    dispatch_due_syncs,
    enqueue_due_syncs,
    recover_stuck_syncs,
)
from gwsync.tasks.sync import MAX_TRIES, sync_feature
from gwsync.tasks.watches import WATCH, renew_watches, watch_feature
from gwsync.worker import job_metrics
from gwsync.worker.liveness import HEALTH_CHECK_INTERVAL_S

#: How often an idle worker asks Redis for due jobs (one ZRANGEBYSCORE each time), which
#: bounds the enqueue → start latency: 0.02 s keeps the p99 under 50 ms at 200 jobs/s for
#: 50 commands/s per idle worker process (bench/queue_latency.py measures both).
POLL_DELAY_S = 0.02


async def startup(ctx: dict[str, Any]) -> None:
    ctx["deps"] = await Deps.open(ctx["settings"])


async def shutdown(ctx: dict[str, Any]) -> None:
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        await deps.close()


def _measured_job(name: str, job: job_metrics.JobFunction, timeout: int,
                  max_tries: int) -> Function:
    """An arq function counted by job_metrics (arq's protocol type cannot name the wrapper)."""
    return func(cast(WorkerCoroutine, job_metrics.measured(name, job)), name=name,
                timeout=timeout, keep_result=0, max_tries=max_tries)


def _webhook_crons(settings: Settings) -> list[Any]:
    """Every 2 s, the main app's events go out; with no webhook configured, no cron."""
    if not settings.app_webhooks:
        return []
    return [cron(deliver_app_webhooks, name=f"{settings.redis_prefix}:deliver_app_webhooks",
                 second=set(range(0, 60, 2)), run_at_startup=True, keep_result=0)]


def worker_options(settings: Settings) -> dict[str, Any]:
    """Everything arq needs, spelt out: its defaults (pickle, hour-long results) bite."""
    timeout = settings.job_timeout_s
    return {
        "functions": [
            _measured_job(queue.SYNC, sync_feature, timeout, max_tries=MAX_TRIES + 1),
            _measured_job(queue.ERASE, erase, timeout, max_tries=50),
            _measured_job(WATCH, watch_feature, timeout, max_tries=4),
            # A tick's further slices; a failed one is left to the next tick (it stays due).
            _measured_job(DISPATCH, dispatch_due_syncs, timeout, max_tries=1),
        ],
        "cron_jobs": [
            cron(resume_erasures, name=f"{settings.redis_prefix}:resume_erasures",
                 second=set(range(0, 60, 10)), run_at_startup=True, keep_result=0),
            cron(retry_revocations, name=f"{settings.redis_prefix}:retry_revocations",
                 second=15, keep_result=0),
            cron(sweep_retention, name=f"{settings.redis_prefix}:sweep_retention",
                 minute=set(range(0, 60, 10)), second=45, keep_result=0),
            cron(enqueue_due_syncs, name=f"{settings.redis_prefix}:enqueue_due_syncs",
                 second=30, keep_result=0),
            cron(recover_stuck_syncs, name=f"{settings.redis_prefix}:recover_stuck_syncs",
                 second=set(range(5, 60, 10)), run_at_startup=True, keep_result=0),
            cron(renew_watches, name=f"{settings.redis_prefix}:renew_watches",
                 minute=set(range(0, 60, 15)), second=50, keep_result=0),
            *_webhook_crons(settings),
        ],
        "on_startup": startup,
        "on_shutdown": shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "job_serializer": queue.serialize,
        "job_deserializer": queue.deserialize,
        "keep_result": 0,
        "job_timeout": timeout,
        "max_jobs": settings.worker_max_jobs,
        "poll_delay": POLL_DELAY_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "handle_signals": True,
        # An erasure cancels its accounts' running jobs (gwsync.core.queue.Queue
        # .abort_running); costs one ZRANGE of arq's abort set per poll.
        "allow_abort_jobs": True,
        # SIGTERM: stop taking jobs, let running ones finish for this long, then cancel.
        "job_completion_wait": settings.worker_stop_grace_s,
        "ctx": {"settings": settings},
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**{**worker_options(settings), **overrides})


def run(settings: Settings) -> None:
    """Start a worker process (blocking). Refuses to start without its secrets."""
    settings.require("worker")
    logs.configure(settings.log_format, settings.log_level)
    job_metrics.serve(settings)
    create_worker(settings).run()

