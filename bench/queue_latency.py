"""Queue: enqueue-to-start latency at a steady rate, through a real worker process with
the production arq options (poll delay, max jobs), paced on the monotonic clock."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench.harness import BenchError, Deployment
from bench.queue_worker import JOB, latency_key
from bench.report import Row

NAME = "queue"


async def _collected(dep: Deployment, count: int, within_s: float) -> list[float]:
    key = latency_key(dep.settings.redis_prefix)
    redis = dep.deps.queue.redis
    deadline = time.monotonic() + within_s
    while await redis.llen(key) < count:
        if time.monotonic() > deadline:
            raise BenchError("the queue worker did not run every job")
        await asyncio.sleep(0.05)
    values = [float(v) for v in await redis.lrange(key, 0, -1)]
    await redis.delete(key)
    return values


async def _paced(dep: Deployment, rate: float, count: int) -> float:
    """Enqueue `count` jobs at `rate` per second → the rate achieved."""
    redis = dep.deps.queue.redis
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await redis.enqueue_job(JOB, time.time())
    return count / (time.monotonic() - start)


async def run(dep: Deployment, seconds: float, rate: float = 200.0) -> list[Row]:
    await dep.start_worker(sys.executable, "-m", "bench.queue_worker")
    try:
        await dep.deps.queue.redis.enqueue_job(JOB, time.time())  # waits out start-up
        await _collected(dep, 1, 60)
        count = int(rate * seconds)
        achieved = await _paced(dep, rate, count)
        waits = sorted(await _collected(dep, count, 60))
    finally:
        await dep.stop_workers()
    p50 = statistics.median(waits) * 1000
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000
    label = f"at {achieved:.0f} jobs/s for {seconds:g} s ({count:,} jobs)"
    return [Row(NAME, f"enqueue → start p50, {label}", f"{p50:.1f} ms", "reported"),
            Row(NAME, f"enqueue → start p99, {label}", f"{p99:.1f} ms", "reported")]
