"""The arq worker: one flat WorkerSettings class, because arq reads only its own __dict__."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from gwsync.tasks.erase import erase
from gwsync.tasks.recover import resume_erasures, retry_revocations, sweep_retention
from gwsync.tasks.schedule import enqueue_due_syncs, recover_stuck_syncs
from gwsync.tasks.sync import MAX_TRIES, sync_feature
from gwsync.tasks.watches import WATCH, renew_watches, watch_feature
from gwsync.worker import job_metrics, logging, queue
from gwsync.worker.deps import Deps
from gwsync.worker.settings import Settings


async def startup(ctx: dict[str, Any]) -> None:
    ctx["deps"] = await Deps.open(ctx["settings"])


async def shutdown(ctx: dict[str, Any]) -> None:
    deps: Deps | None = ctx.get("deps")
    if deps is not None:
        await deps.close()


def worker_options(settings: Settings) -> dict[str, Any]:
    """Everything arq needs, spelt out: its defaults (pickle, hour-long results) bite."""
    timeout = settings.job_timeout_s
    return {
        "functions": [
            func(job_metrics.measured(queue.SYNC, sync_feature), name=queue.SYNC, timeout=timeout,
                 keep_result=0, max_tries=MAX_TRIES + 1),
            func(job_metrics.measured(queue.ERASE, erase), name=queue.ERASE, timeout=timeout,
                 keep_result=0, max_tries=50),
            func(job_metrics.measured(WATCH, watch_feature), name=WATCH, timeout=timeout,
                 keep_result=0, max_tries=4),
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
        "poll_delay": 0.1,
        "health_check_interval": 30,
        "handle_signals": True,
        "ctx": {"settings": settings},
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    return Worker(**{**worker_options(settings), **overrides})


def run(settings: Settings) -> None:
    """Start a worker process (blocking). Refuses to start without its secrets."""
    settings.require("worker")
    logging.configure(settings.log_format, settings.log_level)
    job_metrics.serve(settings)
    create_worker(settings).run()
