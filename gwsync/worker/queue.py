"""The seam between gwsync and arq: job ids, serialisation, and per-account Redis keys.

arq is maintenance-only; keeping it behind this module means job functions depend on
nothing of arq but their `ctx`. Jobs travel as msgpack — never pickle — so that
whoever can write to Redis cannot run code in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

SYNC = "sync_feature"
ERASE = "erase"


def serialize(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def deserialize(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False)


async def connect(redis_url: str, queue_name: str) -> ArqRedis:
    return await create_pool(
        RedisSettings.from_dsn(redis_url), job_serializer=serialize,
        job_deserializer=deserialize, default_queue_name=queue_name,
    )


class Queue:
    """Enqueue gwsync's jobs and find every Redis key that belongs to an account."""

    def __init__(self, redis: ArqRedis, prefix: str, queue_name: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.queue_name = queue_name

    def sync_job_id(self, account_id: str, feature: str) -> str:
        return f"{self.prefix}:sync:{account_id}:{feature}"

    def account_key(self, account_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "acct", account_id, *parts))

    async def enqueue_sync(self, account_id: str, feature: str, generation: int) -> bool:
        """One queued sync per account and feature; a request while one runs queues a
        single follow-up, so changes made during the run are not missed."""
        job_id = self.sync_job_id(account_id, feature)
        for candidate, defer in ((job_id, None), (f"{job_id}:followup", 1.0)):
            job = await self.redis.enqueue_job(
                SYNC, account_id, feature, generation, _job_id=candidate, _defer_by=defer)
            if job is not None:
                return True
            if not await self.redis.exists(in_progress_key_prefix + job_id):
                return False
        return False

    async def enqueue_erasure(self, erasure_id: str) -> bool:
        job = await self.redis.enqueue_job(ERASE, erasure_id,
                                           _job_id=f"{self.prefix}:erase:{erasure_id}")
        return job is not None

    @asynccontextmanager
    async def lock(self, account_id: str, feature: str, ttl_s: int) -> AsyncIterator[bool]:
        """Hold the single-flight lock of one account and feature, if it is free."""
        key = self.account_key(account_id, "lock", feature)
        held = bool(await self.redis.set(key, b"1", nx=True, ex=ttl_s))
        try:
            yield held
        finally:
            if held:
                await self.redis.delete(key)

    @asynccontextmanager
    async def lease(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        """Hold a key that lives only while this process does: refreshed every third of
        its lifetime, so a worker killed with `kill -9` lets it expire within `ttl_s`."""
        key = f"{self.prefix}:lease:{name}"
        ttl_ms = max(int(ttl_s * 1000), 100)
        await self.redis.set(key, b"1", px=ttl_ms)

        async def refresh() -> None:
            while True:
                await asyncio.sleep(ttl_s / 3)
                await self.redis.set(key, b"1", px=ttl_ms)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.redis.delete(key)

    async def leased(self, name: str) -> bool:
        return bool(await self.redis.exists(f"{self.prefix}:lease:{name}"))

    async def requeue_erasure(self, erasure_id: str) -> bool:
        """Make an erasure runnable again when no live worker holds its lease.

        A job whose worker died stays in arq's queue marked in progress until that mark
        expires (job timeout + 10 s); dropping the mark lets the next poll run it now.
        """
        job_id = f"{self.prefix}:erase:{erasure_id}"
        if await self.redis.zscore(self.queue_name, job_id) is not None:
            return bool(await self.redis.delete(in_progress_key_prefix + job_id))
        return await self.enqueue_erasure(erasure_id)

    async def queued_jobs(self, account_id: str) -> list[str]:
        marker = f":{account_id}:"
        members = await self.redis.zrange(self.queue_name, 0, -1)
        return [m.decode() for m in members if marker in m.decode()]

    async def account_keys(self, account_id: str) -> list[str]:
        keys = [k async for k in self.redis.scan_iter(match=self.account_key(account_id, "*"))]
        for prefix in (job_key_prefix, retry_key_prefix, result_key_prefix):
            pattern = f"{prefix}{self.prefix}:sync:{account_id}:*"
            keys += [k async for k in self.redis.scan_iter(match=pattern)]
        return [k.decode() if isinstance(k, bytes) else k for k in keys]

    async def drop_account(self, account_id: str) -> tuple[int, int]:
        """Remove the account's queued jobs and Redis keys → (jobs dropped, keys deleted)."""
        jobs = await self.queued_jobs(account_id)
        if jobs:
            await self.redis.zrem(self.queue_name, *jobs)
        keys = await self.account_keys(account_id)
        if keys:
            await self.redis.delete(*keys)
        return len(jobs), len(keys)
