"""The single-flight lock of a sync: renewed while its holder lives, short-lived after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gwsync.worker import queue
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
