"""Queue: enqueue-to-start latency at a steady rate, through a real worker process with
the production arq options (poll delay, max jobs), paced on the monotonic clock — and
what the idle worker costs Redis (its commands/s, counted with MONITOR)."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench.harness import BenchError, Deployment
from bench.queue_worker import JOB, latency_key
from bench.report import Row
from gwsync.worker.app import POLL_DELAY_S

NAME = "queue"
P99_GOAL_MS = 50.0
IDLE_WINDOW_S = 3.0


async def _idle_commands_per_s(dep: Deployment) -> float:
    """Commands an idle worker sends per second: those naming our prefix, seen by MONITOR
    (other clients of the same Redis are not counted)."""
    prefix = dep.settings.redis_prefix
    seen = 0
    async with dep.deps.queue.redis.monitor() as monitor:
        deadline = time.monotonic() + IDLE_WINDOW_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                command = await asyncio.wait_for(monitor.next_command(), left)
            except TimeoutError:
                break
            seen += prefix in str(command.get("command", ""))
    return seen / IDLE_WINDOW_S


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
        await asyncio.sleep(1.0)  # the worker goes idle
        idle = await _idle_commands_per_s(dep)
    finally:
        await dep.stop_workers()
    p50 = statistics.median(waits) * 1000
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000
    label = f"at {achieved:.0f} jobs/s for {seconds:g} s ({count:,} jobs)"
    return [Row(NAME, f"enqueue → start p50, {label}", f"{p50:.1f} ms", "reported"),
            Row(NAME, f"enqueue → start p99, {label}", f"{p99:.1f} ms",
                f"≤ {P99_GOAL_MS:g} ms", p99 <= P99_GOAL_MS),
            Row(NAME, f"idle worker's Redis commands/s (poll_delay {POLL_DELAY_S:g} s)",
                f"{idle:.0f}", "reported")]
