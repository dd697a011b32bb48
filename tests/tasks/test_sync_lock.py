"""The single-flight lock of a sync: renewed while its holder lives, short-lived after."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from gwsync.core import metrics, queue
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage.models import Record
from gwsync.tasks.deps import Deps
from tests.conftest import REDIS_URL, Emulator, RunWorker
from tests.helpers import Background, connect, eventually, stored_contacts

LIST = "people.people.connections.list"
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


def _busy_deferrals() -> float:
    return metrics.REGISTRY.get_sample_value(
        "gwsync_job_deferrals_total", {"task": "sync_feature", "reason": "busy"}) or 0.0


async def _records(deps: Deps) -> int:
    async with deps.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Record)) or 0)


async def test_a_held_lock_defers_the_second_run(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """A sync job run while another run holds the account's feature lock is put off, not
    run: no call to Google, no record; once the lock is released, it runs."""
    grant = seed_demo_user(emulator.state, 2)
    account_id = await connect(api, grant.refresh_token)  # queues the sync
    deferred_before = _busy_deferrals()
    async with Background() as background:  # awaited once the lock is released
        async with deps.queue.lock(account_id, "contacts", 30) as held:
            assert held
            worker = background.start(run_worker())

            async def deferred() -> bool:
                return _busy_deferrals() >= deferred_before + 2  # the job, then its follow-up
            await eventually(deferred, within_s=10, every_s=0.02)
            assert not worker.done()  # the deferred sync keeps the burst worker waiting
            assert [c for c in emulator.state.calls() if c["method"] == LIST] == []
            assert await _records(deps) == 0
    assert len(await stored_contacts(deps, account_id)) == 2
