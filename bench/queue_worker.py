"""A worker process for the queue benchmark: the production arq options, with one
bench-only job that records how long it waited between enqueue and start.

Run by bench/queue_latency.py as ``python -m bench.queue_worker`` with the deployment's
environment; never part of the real worker.
"""

from __future__ import annotations

import time
from typing import Any

from arq.worker import func

from gwsync.core import logs
from gwsync.core.settings import Settings
from gwsync.worker.app import create_worker

JOB = "bench_noop"


def latency_key(prefix: str) -> str:
    return f"{prefix}:bench:latency"


async def bench_noop(ctx: dict[str, Any], enqueued_at: float) -> None:
    """Push (start − enqueue) in seconds; both clocks are this machine's wall clock."""
    waited = time.time() - enqueued_at
    await ctx["redis"].rpush(latency_key(ctx["settings"].redis_prefix), f"{waited:.6f}")


def main() -> None:
    settings = Settings().require("worker")
    logs.configure(settings.log_format, settings.log_level)
    create_worker(settings, functions=[func(bench_noop, name=JOB, keep_result=0)],
                  cron_jobs=[]).run()


if __name__ == "__main__":
    main()
