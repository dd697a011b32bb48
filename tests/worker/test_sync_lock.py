"""The single-flight lock of a sync: renewed while its holder lives, short-lived after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gwsync.worker import queue
from gwsync.worker.deps import Deps
from tests.conftest import REDIS_URL

ACCOUNT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
async def jobs(redis_prefix: str) -> AsyncIterator[queue.Queue]:
    redis = await queue.connect(REDIS_URL, f"{redis_prefix}:queue")
    yield queue.Queue(redis, redis_prefix, f"{redis_prefix}:queue")
    await redis.aclose()


async def test_a_held_lock_outlives_its_ttl_and_excludes_others(jobs: queue.Queue) -> None:
    """While its holder runs, the lock is renewed past its TTL and nobody else gets it."""
    async with jobs.lock(ACCOUNT, "contacts", ttl_s=0.3) as held:
        assert held
        await asyncio.sleep(0.8)
        async with jobs.lock(ACCOUNT, "contacts", ttl_s=0.3) as second:
            assert not second
        assert await jobs.locked(ACCOUNT, "contacts")
    assert not await jobs.locked(ACCOUNT, "contacts")
    async with jobs.lock(ACCOUNT, "contacts", ttl_s=0.3) as again:
        assert again


async def test_a_lock_whose_holder_stopped_renewing_expires_within_its_ttl(
    jobs: queue.Queue
) -> None:
    """A holder that dies without releasing (kill -9) frees the lock after its TTL."""
    key = jobs.lock_key(ACCOUNT, "contacts")
    await jobs.redis.set(key, b"dead-holder", px=300)  # what a killed worker leaves behind
    async with jobs.lock(ACCOUNT, "contacts", ttl_s=0.3) as held:
        assert not held
    await asyncio.sleep(0.4)
    async with jobs.lock(ACCOUNT, "contacts", ttl_s=0.3) as held:
        assert held


async def test_releasing_never_deletes_a_lock_another_holder_took(jobs: queue.Queue) -> None:
    """If a lock lapsed and was taken by another run, the first run's exit leaves it alone."""
    key = jobs.lock_key(ACCOUNT, "contacts")
    async with jobs.lock(ACCOUNT, "contacts", ttl_s=30) as held:
        assert held
        await jobs.redis.set(key, b"another-run", px=30_000)
    assert await jobs.redis.get(key) == b"another-run"


async def test_a_request_brings_a_scheduled_sync_forward(deps: Deps) -> None:
    """A sync queued for later (jitter, backoff) starts now when one is requested now."""
    account_id = "0" * 36
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1, defer_s=300)
    job_id = deps.queue.sync_job_id(account_id, "contacts")
    later = await deps.queue.redis.zscore(deps.queue.queue_name, job_id)
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1) is False  # coalesced
    now = await deps.queue.redis.zscore(deps.queue.queue_name, job_id)
    assert now < later - 250_000
    assert await deps.queue.enqueue_sync(account_id, "contacts", 1, defer_s=600) is False
    assert await deps.queue.redis.zscore(deps.queue.queue_name, job_id) == now  # never later
