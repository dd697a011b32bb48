"""Scale of the background paths: one ops snapshot (a scrape), one scheduler tick and one
erasure, at each fleet size (up to 200k accounts / 20M records), with 200k unrelated keys
in Redis — and the growth between every pair of sizes.

The fleet is seeded straight into PostgreSQL with binary COPY (accounts, five sync states
each, records of small dummy ciphertext, their counts; bench/scale_seed.py), so seeding
millions of rows takes minutes, not a sync per account. One feature of every account is
due, so a tick at N accounts has N syncs to enqueue; at the largest size the tick is also
timed with only the previous size's count due (20k on full runs: the goal's), the rest of
the fleet not due. The erased account is a real one (data key, sealed
grant revoked at the emulator) holding its share of records, a quota window and a queued
sync (no running one); its erase job runs in this process, timed from the request.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from arq.constants import job_key_prefix
from arq.jobs import deserialize_job

from bench import scale_rows
from bench.harness import BenchError, Deployment, mail_scope
from bench.report import Row
from bench.scale_seed import DUE_FEATURE, copy_records, seed
from gwsync.core import queue as jobs
from gwsync.core.timeutil import utcnow
from gwsync.storage import ops_snapshot
from gwsync.storage.models import Erasure
from gwsync.tasks import erase
from gwsync.tasks.schedule import DISPATCH, dispatch_due_syncs, enqueue_due_syncs

#: (accounts, records) per size, each grown from the last. Full: up to 200k accounts /
#: 20M records, seeded in a few minutes (docs/benchmarks.md's notes give the times).
FULL = ((2_000, 200_000), (20_000, 2_000_000), (200_000, 20_000_000))
QUICK = ((100, 1_000), (1_000, 10_000))
#: The sync interval of the run: the features not due were synced a minute before they
#: were seeded, and must stay not due through the largest size's seeding (minutes).
INTERVAL_S = 3_600.0
NOISE_KEYS = 200_000
#: --quick's fleets are tiny; so is its noise (the smoke test runs the whole quick suite).
QUICK_NOISE_KEYS = 20_000


def _pg_dsn(dep: Deployment) -> str:
    return dep.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")


async def _noise(dep: Deployment, count: int) -> None:
    """Keys of nobody in particular, so any SCAN of the keyspace would show."""
    redis = dep.deps.queue.redis
    for start in range(0, count, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, start + 10_000):
                pipe.set(f"{dep.settings.redis_prefix}:noise:{n}", b"x")
            await pipe.execute()


async def _scrape_ms(dep: Deployment, cached: bool = False) -> float:
    """One snapshot's time: computed now, or as a scrape within the cache age gets it."""
    started = time.perf_counter()
    if cached:
        await dep.deps.snapshot()
    else:
        await ops_snapshot.take_fresh(dep.deps.ops_sources)
    return (time.perf_counter() - started) * 1000


async def _make_due(dep: Deployment, ids: list[str]) -> None:
    """Every account's DUE_FEATURE due again and not queued (an earlier tick moved it on).

    Due since a moment of its own, as a claim leaves a row due an interval after its
    last one: made due again at the seed's DUE_NOW, the rows would land among the index
    entries the previous ticks emptied there, and a tick of 20,000 due rows at 200,000
    accounts read 1,874 index pages where one at 20,000 accounts read 377 (an artifact
    of reusing one key, which no fleet's schedule does)."""
    now = utcnow()
    old = now - timedelta(seconds=dep.settings.sync_interval_s + 60)
    conn = await asyncpg.connect(_pg_dsn(dep))
    try:
        await conn.execute("UPDATE sync_states SET next_due_at = $1, started_at = $2, "
                           "last_synced_at = $2 WHERE feature = $3 AND account_id = ANY($4)",
                           now - timedelta(seconds=1), old, DUE_FEATURE, ids)
        # As autovacuum leaves a table between ticks: the dead versions that UPDATE (and
        # the last tick) left behind are gone from the heap and the indexes.
        await conn.execute("VACUUM ANALYZE sync_states")
    finally:
        await conn.close()
    queue = dep.deps.queue
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.delete(queue.queue_name)
        for account_id in ids:
            pipe.delete(f"arq:job:{queue.sync_job_id(account_id, DUE_FEATURE)}")
        await pipe.execute()


async def _dispatch(dep: Deployment) -> int:
    """Run the dispatch jobs a tick queued, one after another in this process → syncs
    queued (a worker pool runs them side by side; back to back is their total cost)."""
    queue, queued = dep.deps.queue, 0
    for job_id in await queue.redis.zrange(queue.queue_name, 0, -1):
        data = await queue.redis.get(job_key_prefix + job_id.decode())
        if data is None:
            continue
        job = deserialize_job(data, deserializer=jobs.deserialize)
        if job.function == DISPATCH:
            await queue.redis.zrem(queue.queue_name, job_id)
            queued += (await dispatch_due_syncs({"deps": dep.deps}, *job.args))["queued"]
    return queued


async def _tick(dep: Deployment, ids: list[str]) -> tuple[float, float, float]:
    """(one tick's ms; all its due rows enqueued, the tick and then its dispatch jobs, ms;
    the floor's ms: one bare UPDATE moving the same due rows on, the least any design that
    records a tick in the database pays on this machine now)."""
    await _make_due(dep, ids)
    due = len(ids)
    started = time.perf_counter()
    queued = await enqueue_due_syncs({"deps": dep.deps})
    ms = (time.perf_counter() - started) * 1000
    queued += await _dispatch(dep)
    all_ms = (time.perf_counter() - started) * 1000
    if queued != due:
        raise BenchError(f"the tick and its dispatch jobs queued {queued} syncs, {due} were due")
    await _make_due(dep, ids)
    conn = await asyncpg.connect(_pg_dsn(dep))
    try:
        started = time.perf_counter()
        await conn.execute("UPDATE sync_states SET next_due_at = now() + interval '15 min' "
                           "WHERE next_due_at <= now()")
        floor_ms = (time.perf_counter() - started) * 1000
    finally:
        await conn.close()
    return ms, all_ms, floor_ms


async def _victim(dep: Deployment, per_account: int) -> str:
    """A real account (data key, grant) with records, quota and a queued sync.

    No sync holds its lock: the erase job waits for a running sync to stop (up to the lock's
    TTL; gwsync/tasks/erase.py), which is that sync's time, not the erasure's.
    """
    _, token = await dep.emulator.gmail_user(0)
    account_id = await dep.connect(token, mail_scope())
    await copy_records(_pg_dsn(dep), [account_id], per_account)
    queue = dep.deps.queue
    if dep.deps.limiter is not None:
        await dep.deps.limiter.acquire("gmail", account_id, 5)
    await queue.enqueue_sync(account_id, "mail_activity", 1, defer_s=600)
    return account_id


async def _erasure(dep: Deployment, per_account: int) -> tuple[float, float, bool]:
    """(request → data key destroyed ms, request → verified s, verification ok)."""
    account_id = await _victim(dep, per_account)
    started = time.perf_counter()
    erasure_id = await erase.request(dep.deps, [account_id], subject_hash="bench",
                                     trigger="user_request")
    shred_ms = (time.perf_counter() - started) * 1000
    await erase.erase({"deps": dep.deps}, erasure_id)
    verified_s = time.perf_counter() - started
    async with dep.deps.sessions() as session:
        found = await session.get(Erasure, erasure_id)
    ok = bool(found is not None and found.state == "verified" and found.verification.get("ok")
              and found.counts.get("redis_keys", 0) >= 3)
    return shred_ms, verified_s, ok


async def _measure(dep: Deployment, ids: list[str], records: int,
                   part_due: int | None) -> dict[str, Any]:
    accounts = len(ids)
    per_account = max(1, records // accounts)
    scrapes = sorted([await _scrape_ms(dep) for _ in range(5)])
    await dep.deps.snapshot()
    cached = []
    for _ in range(5):  # past MAX_AGE_S: served from the cache, refreshed behind it
        await asyncio.sleep(ops_snapshot.MAX_AGE_S)
        cached.append(await _scrape_ms(dep, cached=True))
        await ops_snapshot.settle()
    cached.sort()
    tick_ms, all_ms, floor_ms = await _tick(dep, ids)
    # As many due as at the smaller size (the goal's 20k on full runs), among the whole
    # fleet: the others not due. O(due) means the same time as there.
    part_ms, part_all_ms, part_floor_ms = (None, None, None)
    if part_due is not None and accounts > part_due:
        part_ms, part_all_ms, part_floor_ms = await _tick(dep, ids[:part_due])
    shred_ms, verified_s, ok = await _erasure(dep, per_account)
    return {"accounts": accounts, "records": records, "scrape_ms": scrapes[len(scrapes) // 2],
            "cached_ms": cached[len(cached) // 2],
            "tick_ms": tick_ms, "all_ms": all_ms, "floor_ms": floor_ms, "part_due": part_due,
            "part_ms": part_ms, "part_all_ms": part_all_ms, "part_floor_ms": part_floor_ms,
            "shred_ms": shred_ms, "verified_s": verified_s, "ok": ok}


async def run(dep: Deployment, sizes: tuple[tuple[int, int], ...]) -> list[Row]:
    if dep.db_kind != "postgresql":
        raise BenchError("the scale benchmark seeds PostgreSQL with COPY")
    noise = NOISE_KEYS if sizes[-1][0] >= 10_000 else QUICK_NOISE_KEYS
    await _noise(dep, noise)
    measured: list[dict[str, Any]] = []
    ids: list[str] = []
    seeded_records = 0
    interval = timedelta(seconds=dep.settings.sync_interval_s)
    part_due = sizes[-2][0] if len(sizes) > 1 else None
    for accounts, records in sizes:
        more = [str(uuid.uuid4()) for _ in range(accounts - len(ids))]
        started = time.perf_counter()
        took = await seed(_pg_dsn(dep), more,
                          max(1, (records - seeded_records) // max(1, len(more))), interval)
        seeding = {"seed_s": time.perf_counter() - started, "seed_steps": took,
                   "seeded": (len(more), records - seeded_records)}
        ids += more
        seeded_records = records
        measured.append({**await _measure(dep, ids, records, part_due), **seeding,
                         "noise": noise, "load": os.getloadavg()})
    rows = [row for m in measured for row in scale_rows.rows(m)]
    for n, small in enumerate(measured):
        for large in measured[n + 1:]:
            rows += scale_rows.growth(small, large)
    return rows
