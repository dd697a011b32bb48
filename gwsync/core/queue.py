"""The seam between gwsync and arq: job ids, serialisation, and per-account Redis keys.

arq is maintenance-only; keeping it behind this module means job functions depend on
nothing of arq but their `ctx`. Jobs travel as msgpack — never pickle — so that
whoever can write to Redis cannot run code in the worker.

Every key of an account lives under one hash tag, `<prefix>:{acct:<id>}:…` (one Redis
Cluster slot), and two index sets under it name what an erasure must remove: `…:keys`
(the account's own keys, registered when written) and `…:jobs` (its job ids, registered
when enqueued). An erasure reads those two sets — never SCANs the keyspace, never reads
the whole queue (docs/architecture.md §8).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import serialize_job
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


#: arq's enqueue of many syncs, done server-side in one call: a job whose id is queued,
#: running or kept is not enqueued again; a sync already queued is brought forward
#: (never later); one running gets a single follow-up. Each job id is also added to its
#: account's job index. The batch travels as one msgpack argument (raw strings: Redis's
#: cmsgpack reads no bin type), so the client packs one command, not a dozen arguments
#: per job.
#: KEYS: the queue. ARGV: msgpack [[job id, follow-up id, job index, data, score,
#: follow-up score], …], now (ms), expiry extra (ms), arq's job, result and in-progress
#: key prefixes. → how many jobs were newly queued.
#: It names keys it was not passed (arq's, the accounts' indexes): fine on one Redis, not
#: on a Cluster — neither is arq's own enqueue (docs/architecture.md §8).
_ENQUEUE_SYNCS = """
local batch = cmsgpack.unpack(ARGV[1])
local now, extra = tonumber(ARGV[2]), tonumber(ARGV[3])
local jobp, resultp, runp = ARGV[4], ARGV[5], ARGV[6]
local queued = 0
local function try(id, score, data)
  if redis.call('exists', jobp .. id, resultp .. id) > 0 then return false end
  redis.call('psetex', jobp .. id, score - now + extra, data)
  redis.call('zadd', KEYS[1], score, id)
  return true
end
local function bring_forward(id, score)
  redis.call('zadd', KEYS[1], 'XX', 'LT', score, id)
end
for _, job in ipairs(batch) do
  local id, followup, index, data, score, fscore = unpack(job)
  redis.call('sadd', index, id, followup)
  if try(id, score, data) then
    queued = queued + 1
  elseif redis.call('exists', runp .. id) == 0 then
    bring_forward(id, score)
  elseif try(followup, fscore, data) then
    queued = queued + 1
  elseif redis.call('exists', runp .. id) == 0 then
    bring_forward(id, score)
  end
end
return queued
"""
#: arq's enqueue of many jobs of one function, server-side in one call: a job whose id
#: is queued, running or kept is not enqueued again. KEYS: the queue. ARGV: msgpack
#: [[job id, data], …], now (ms), expiry (ms), arq's job and result key prefixes.
#: → how many jobs were newly queued. Like _ENQUEUE_SYNCS it names keys it was not
#: passed (arq's job keys): one Redis, not a Cluster (docs/architecture.md §8).
_ENQUEUE_JOBS = """
local now, expiry = tonumber(ARGV[2]), tonumber(ARGV[3])
local jobp, resultp = ARGV[4], ARGV[5]
local queued = 0
for _, job in ipairs(cmsgpack.unpack(ARGV[1])) do
  local id, data = job[1], job[2]
  if redis.call('exists', jobp .. id, resultp .. id) == 0 then
    redis.call('psetex', jobp .. id, expiry, data)
    redis.call('zadd', KEYS[1], now, id)
    queued = queued + 1
  end
end
return queued
"""
#: arq's default: a queued job's key outlives its due time by a day.
_EXPIRES_EXTRA_MS = 86_400_000


def account_key(prefix: str, account_id: str, *parts: str) -> str:
    """A key of the account: under its hash tag, so all its keys share one Cluster slot."""
    return ":".join((prefix, f"{{acct:{account_id}}}", *parts))


def keys_index(prefix: str, account_id: str) -> str:
    """The set naming every key of the account that exists or did: whoever writes a key
    under `account_key` adds its name here, in the same round trip."""
    return account_key(prefix, account_id, "keys")


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 100)


def serialize(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def deserialize(data: bytes) -> dict[str, Any]:
    found: dict[str, Any] = msgpack.unpackb(data, raw=False)
    return found


async def connect(redis_url: str, queue_name: str) -> ArqRedis:
    return await create_pool(
        RedisSettings.from_dsn(redis_url), job_serializer=serialize,
        job_deserializer=deserialize, default_queue_name=queue_name,
    )


@dataclass
class Held:
    """A lock as its holder sees it: truthy when taken; `lost` once another took it over."""

    taken: bool
    lost: bool = False

    def __bool__(self) -> bool:
        return self.taken


class Queue:
    """Enqueue gwsync's jobs and find every Redis key that belongs to an account."""

    def __init__(self, redis: ArqRedis, prefix: str, queue_name: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.queue_name = queue_name

    def sync_job_id(self, account_id: str, feature: str) -> str:
        return f"{self.prefix}:sync:{account_id}:{feature}"

    def account_key(self, account_id: str, *parts: str) -> str:
        return account_key(self.prefix, account_id, *parts)

    def keys_index(self, account_id: str) -> str:
        return keys_index(self.prefix, account_id)

    def jobs_index(self, account_id: str) -> str:
        """The set naming every job id enqueued for the account."""
        return account_key(self.prefix, account_id, "jobs")

    async def enqueue_account_job(self, function: str, account_id: str, *args: Any,
                                  job_id: str) -> bool:
        """Enqueue a job of the account under `job_id`, registered so an erasure finds it."""
        await cast(Awaitable[int], self.redis.sadd(self.jobs_index(account_id), job_id))
        job = await self.redis.enqueue_job(function, account_id, *args, _job_id=job_id)
        return job is not None

    async def enqueue_sync(self, account_id: str, feature: str, generation: int,
                           defer_s: float | None = None) -> bool:
        """One queued sync per account and feature; a request while one runs queues a
        single follow-up, so changes made during the run are not missed."""
        return await self.enqueue_syncs([(account_id, feature, generation, defer_s)]) == 1

    async def enqueue_syncs(self, syncs: Sequence[tuple[str, str, int, float | None]]) -> int:
        """`enqueue_sync` for many (account, feature, generation, defer) at once, in one
        round trip → how many were newly queued.

        A request for a sync already queued for later (the scheduler's jitter, a backoff)
        moves that job's start up to when this request wants it, never later.
        """
        if not syncs:
            return 0
        now_ms = int(time.time() * 1000)
        batch = []
        for account_id, feature, generation, defer_s in syncs:
            job_id = self.sync_job_id(account_id, feature)
            data = serialize_job(SYNC, (account_id, feature, generation), {}, None, now_ms,
                                 serializer=serialize)
            batch.append((job_id, f"{job_id}:followup", self.jobs_index(account_id), data,
                          now_ms + int((defer_s or 0.0) * 1000),
                          now_ms + int(max(defer_s or 0.0, 1.0) * 1000)))
        script = self.redis.register_script(_ENQUEUE_SYNCS)
        queued = await script(keys=[self.queue_name], args=[
            msgpack.packb(batch, use_bin_type=False), now_ms, _EXPIRES_EXTRA_MS,
            job_key_prefix, result_key_prefix, in_progress_key_prefix])
        return int(queued)

    async def enqueue_jobs(self, function: str,
                           jobs: Sequence[tuple[str, tuple[Any, ...]]]) -> int:
        """Enqueue (job id, args) jobs of `function` to run now, in one round trip (none
        when there are none) → how many were newly queued; an id already queued is not."""
        if not jobs:
            return 0
        now_ms = int(time.time() * 1000)
        batch = [(job_id, serialize_job(function, args, {}, None, now_ms, serializer=serialize))
                 for job_id, args in jobs]
        script = self.redis.register_script(_ENQUEUE_JOBS)
        return int(await script(keys=[self.queue_name], args=[
            msgpack.packb(batch, use_bin_type=False), now_ms, _EXPIRES_EXTRA_MS,
            job_key_prefix, result_key_prefix]))

    async def enqueue_erasure(self, erasure_id: str) -> bool:
        job = await self.redis.enqueue_job(ERASE, erasure_id,
                                           _job_id=f"{self.prefix}:erase:{erasure_id}")
        return job is not None

    def lock_key(self, account_id: str, feature: str) -> str:
        return self.account_key(account_id, "lock", feature)

    @asynccontextmanager
    async def lock(self, account_id: str, feature: str, ttl_s: float) -> AsyncIterator[Held]:
        """Hold the single-flight lock of one account and feature, if it is free.

        Held like a lease, so a worker killed mid-sync frees it within `ttl_s` rather than
        after the job timeout. A renewal that finds the lock taken by another (this
        process was paused past `ttl_s`) marks it lost and cancels the body's task: the
        run stops at its next await instead of syncing beside the new holder.
        """
        key, token = self.lock_key(account_id, feature), secrets.token_bytes(16)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(key, token, nx=True, px=_ms(ttl_s))
            pipe.sadd(self.keys_index(account_id), key)
            taken, _ = await pipe.execute()
        if not taken:
            yield Held(taken=False)
            return
        held, body = Held(taken=True), asyncio.current_task()

        def lose() -> None:
            held.lost = True
            if body is not None:
                body.cancel("the sync lock was taken over")

        async with self._kept_alive(key, token, ttl_s, on_lost=lose):
            yield held

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
    async def _kept_alive(self, key: str, token: bytes, ttl_s: float,
                          on_lost: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Renew `key` every third of its lifetime while the body runs; release it after.
        A renewal refused because another holds the key calls `on_lost` and stops."""
        renew: Callable[..., Awaitable[int]] = self.redis.register_script(_RENEW)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(ttl_s / 3)
                with contextlib.suppress(RedisError):  # a blip: the next beat tries again
                    if not await renew(keys=[key], args=[token, _ms(ttl_s)]):
                        if on_lost is not None:
                            on_lost()
                        return

        task = asyncio.create_task(heartbeat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.redis.register_script(_RELEASE)(keys=[key], args=[token])

    def erased_key(self, account_id: str) -> str:
        """The account's erasure fence: set before an erasure begins, checked before every
        Google call of the account's jobs. Deliberately outside `…:keys`: it must outlive
        the erasure's own key deletion, so it expires instead (docs/architecture.md §8)."""
        return self.account_key(account_id, "erased")

    async def fence_erased(self, account_ids: Sequence[str], ttl_s: float) -> None:
        """Mark the accounts as being erased, for `ttl_s` (longer than any job can run)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for account_id in account_ids:
                pipe.set(self.erased_key(account_id), b"1", px=_ms(ttl_s))
            await pipe.execute()

    async def is_erased(self, account_id: str) -> bool:
        """Whether an erasure of the account has begun (one EXISTS)."""
        return bool(await self.redis.exists(self.erased_key(account_id)))

    async def abort_running(self, account_id: str, keep: str | None = None) -> int:
        """Ask arq to cancel every job of the account that a worker is running now, but
        `keep` → how many. Only running ones: an abort mark on a job no worker runs would
        linger in arq's shared abort set, naming the account."""
        ids = [j for j in await self._job_ids(account_id) if j != keep]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(in_progress_key_prefix + job_id)
            running = [j for j, on in zip(ids, await pipe.execute(), strict=True) if on]
        if running:
            now_ms = int(time.time() * 1000)
            await self.redis.zadd(abort_jobs_ss, dict.fromkeys(running, now_ms))
        return len(running)

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

    async def _job_ids(self, account_id: str) -> list[str]:
        return sorted(m.decode() for m in await self._members(self.jobs_index(account_id)))

    async def _members(self, key: str) -> set[bytes]:
        return await cast(Awaitable[set[bytes]], self.redis.smembers(key))

    async def queued_jobs(self, account_id: str) -> list[str]:
        """The account's job ids still in the queue: its registered ids, one ZMSCORE."""
        ids = await self._job_ids(account_id)
        if not ids:
            return []
        scores = await self.redis.zmscore(self.queue_name, ids)
        return [job_id for job_id, score in zip(ids, scores, strict=True) if score is not None]

    async def account_keys(self, account_id: str) -> list[str]:
        """Every Redis key of the account that exists, index sets included: named by the
        two index sets and checked with EXISTS, so it costs the account's keys only."""
        names = [m.decode() for m in await self._members(self.keys_index(account_id))]
        for job_id in await self._job_ids(account_id):
            names += [p + job_id for p in (job_key_prefix, retry_key_prefix, result_key_prefix)]
        names += [self.keys_index(account_id), self.jobs_index(account_id)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(name)
            found = await pipe.execute()
        return [name for name, exists in zip(names, found, strict=True) if exists]

    async def drop_account(self, account_id: str) -> tuple[int, int]:
        """Remove the account's queued jobs and Redis keys → (jobs dropped, keys deleted)."""
        jobs = await self.queued_jobs(account_id)
        if jobs:
            await self.redis.zrem(self.queue_name, *jobs)
        known = await self._job_ids(account_id)
        if known:  # abort marks no worker consumed (the job had ended meanwhile)
            await self.redis.zrem(abort_jobs_ss, *known)
        keys = await self.account_keys(account_id)
        if keys:
            await self.redis.delete(*keys)
        return len(jobs), len(keys)
