"""The seam between gwsync and arq: job ids, serialisation, and per-account Redis keys.

arq is maintenance-only; keeping it behind this module means job functions depend on
nothing of arq but their `ctx`. Jobs travel as msgpack — never pickle — so that
whoever can write to Redis cannot run code in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from redis.exceptions import RedisError

SYNC = "sync_feature"
ERASE = "erase"

#: Renew a held key if it is still ours, or take it back if it lapsed meanwhile.
_RENEW = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] or not held then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
#: Delete a held key only if it is still ours (it may have lapsed and been taken).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 100)


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

    async def enqueue_sync(self, account_id: str, feature: str, generation: int,
                           defer_s: float | None = None) -> bool:
        """One queued sync per account and feature; a request while one runs queues a
        single follow-up, so changes made during the run are not missed."""
        job_id = self.sync_job_id(account_id, feature)
        followup = max(defer_s or 0.0, 1.0)
        for candidate, defer in ((job_id, defer_s or None), (f"{job_id}:followup", followup)):
            job = await self.redis.enqueue_job(
                SYNC, account_id, feature, generation, _job_id=candidate, _defer_by=defer)
            if job is not None:
                return True
            if not await self.redis.exists(in_progress_key_prefix + job_id):
                return await self._bring_forward(job_id, defer_s)
        return False

    async def _bring_forward(self, job_id: str, defer_s: float | None) -> bool:
        """A request for a sync already queued for later (the scheduler's jitter, a
        backoff) moves that job's start up to when this request wants it, never later."""
        due_ms = int((time.time() + (defer_s or 0.0)) * 1000)
        await self.redis.zadd(self.queue_name, {job_id: due_ms}, xx=True, lt=True)
        return False

    async def enqueue_erasure(self, erasure_id: str) -> bool:
        job = await self.redis.enqueue_job(ERASE, erasure_id,
                                           _job_id=f"{self.prefix}:erase:{erasure_id}")
        return job is not None

    def lock_key(self, account_id: str, feature: str) -> str:
        return self.account_key(account_id, "lock", feature)

    @asynccontextmanager
    async def lock(self, account_id: str, feature: str, ttl_s: float) -> AsyncIterator[bool]:
        """Hold the single-flight lock of one account and feature, if it is free.

        Held like a lease, so a worker killed mid-sync frees it within `ttl_s` rather than
        after the job timeout.
        """
        key, token = self.lock_key(account_id, feature), secrets.token_bytes(16)
        if not await self.redis.set(key, token, nx=True, px=_ms(ttl_s)):
            yield False
            return
        async with self._kept_alive(key, token, ttl_s):
            yield True

    async def locked(self, account_id: str, feature: str) -> bool:
        return bool(await self.redis.exists(self.lock_key(account_id, feature)))

    @asynccontextmanager
    async def lease(self, name: str, ttl_s: float) -> AsyncIterator[None]:
        """Hold a key that lives only while this process does, so a worker killed with
        `kill -9` lets it expire within `ttl_s`."""
        key, token = f"{self.prefix}:lease:{name}", secrets.token_bytes(16)
        await self.redis.set(key, token, px=_ms(ttl_s))
        async with self._kept_alive(key, token, ttl_s):
            yield

    async def leased(self, name: str) -> bool:
        return bool(await self.redis.exists(f"{self.prefix}:lease:{name}"))

    @asynccontextmanager
    async def _kept_alive(self, key: str, token: bytes, ttl_s: float) -> AsyncIterator[None]:
        """Renew `key` every third of its lifetime while the body runs; release it after."""
        renew: Callable[..., Awaitable[int]] = self.redis.register_script(_RENEW)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(ttl_s / 3)
                with contextlib.suppress(RedisError):  # a blip: the next beat tries again
                    await renew(keys=[key], args=[token, _ms(ttl_s)])

        task = asyncio.create_task(heartbeat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.redis.register_script(_RELEASE)(keys=[key], args=[token])

    async def _unblock(self, job_id: str) -> bool | None:
        """Let a queued job whose worker died run at the next poll.

        Such a job stays in arq's queue marked in progress until that mark expires (job
        timeout + 10 s); dropping the mark frees it now. → None when the job is not queued,
        else whether a mark was dropped.
        """
        if await self.redis.zscore(self.queue_name, job_id) is None:
            return None
        return bool(await self.redis.delete(in_progress_key_prefix + job_id))

    async def requeue_erasure(self, erasure_id: str) -> bool:
        """Make an erasure runnable again when no live worker holds its lease."""
        unblocked = await self._unblock(f"{self.prefix}:erase:{erasure_id}")
        return unblocked if unblocked is not None else await self.enqueue_erasure(erasure_id)

    async def requeue_sync(self, account_id: str, feature: str, generation: int) -> bool:
        """Make a sync runnable again when no live worker holds its lock → whether one is
        now waiting to run (its queued job freed, or a new one enqueued)."""
        job_id = self.sync_job_id(account_id, feature)
        unblocked = [await self._unblock(j) for j in (job_id, f"{job_id}:followup")]
        if any(u is not None for u in unblocked):
            return True
        return await self.enqueue_sync(account_id, feature, generation)

    async def queued_jobs(self, account_id: str) -> list[str]:
        marker = f":{account_id}:"
        members = await self.redis.zrange(self.queue_name, 0, -1)
        return [m.decode() for m in members if marker in m.decode()]

    async def account_keys(self, account_id: str) -> list[str]:
        keys = [k async for k in self.redis.scan_iter(match=self.account_key(account_id, "*"))]
        for prefix in (job_key_prefix, retry_key_prefix, result_key_prefix):
            pattern = f"{prefix}{self.prefix}:*:{account_id}:*"  # sync and watch jobs
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
