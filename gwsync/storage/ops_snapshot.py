"""The ops picture, computed once from the database and Redis.

The ops page, `gwsync status` and the state gauges of `/metrics` all render this one
snapshot, so they show the same numbers by construction. It reads counts and ages only:
no user id, email, token or record content ever enters it.

It costs what the fleet's size costs, never what the data's does: records are counted
from `record_counts` (kept by the record store), jobs in progress from the queue's due
members (never a SCAN of the keyspace), and a snapshot is reused for `MAX_AGE_S` and
served up to a scrape interval old while the next one is taken in the background, so a
scrape costs a cache read and several Prometheus servers and ops pages cost one snapshot
per few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core import logs
from gwsync.core.timeutil import as_utc, rfc3339, utcnow
from gwsync.domain.features import FEATURES
from gwsync.storage import outbox
from gwsync.storage.accounts import ACTIVE
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import (
    AccessLog,
    Account,
    Erasure,
    RecordCount,
    SyncState,
)

T = TypeVar("T")
log = logs.get("gwsync.ops_snapshot")

#: A feature not synced for this many scheduling intervals (or never) is behind schedule.
BEHIND_INTERVALS = 2
#: An erasure should be verified within minutes; one older than this is overdue (alerts).
ERASURE_DEADLINE = timedelta(hours=1)
#: Refused reads are counted over this window.
REFUSED_WINDOW = timedelta(hours=24)
#: Sync statuses that mean the last run failed.
FAILED = ("error", "needs_permission")
#: Job throughput is counted per minute in Redis for this many minutes.
THROUGHPUT_MINUTES = 60
#: A snapshot this young is served again as it is.
MAX_AGE_S = 2.0
#: A snapshot up to this old is served while the next is taken in the background:
#: Prometheus's default scrape interval, so a scrape sees data at most one interval old.
SERVE_STALE_S = 15.0


@dataclass(frozen=True)
class Sources:
    """What a snapshot reads: the database and the queue's Redis — no secrets needed."""

    sessions: SessionFactory
    redis: ArqRedis
    prefix: str
    queue_name: str
    #: GWSYNC_SYNC_INTERVAL_S: the scheduler refreshes every feature this often.
    sync_interval_s: float

    @property
    def behind_after(self) -> timedelta:
        return timedelta(seconds=BEHIND_INTERVALS * self.sync_interval_s)


@dataclass(frozen=True)
class FailureGroup:
    """Syncs whose last run failed with one error category."""

    category: str
    count: int
    features: dict[str, int]
    latest: str | None


@dataclass(frozen=True)
class PendingErasures:
    """Unverified erasures in one state, and how old the oldest is."""

    state: str
    count: int
    oldest_age_s: float


@dataclass(frozen=True)
class OpsSnapshot:
    taken_at: str
    queue_name: str
    queue_depth: int
    queue_due: int
    in_progress: int
    #: Job runs finished in the last hour, by outcome (counted by the workers in Redis).
    finished_last_hour: dict[str, int]
    accounts_by_status: dict[str, int]
    syncs_by_status: dict[str, int]
    failures: list[FailureGroup]
    behind_schedule: dict[str, int]
    erasures_by_state: dict[str, int]
    erasures_pending: list[PendingErasures]
    erasures_overdue: int
    refused_reads: dict[str, int]
    records_by_feature: dict[str, int]
    behind_after_s: float
    #: Events for the main app not delivered yet: `pending` (retrying) and `failed`
    #: (given up), by event type; and how long the oldest pending one has waited.
    app_webhooks: dict[str, dict[str, int]] = field(default_factory=dict)
    app_webhook_oldest_pending_s: float = 0.0
    erasure_deadline_s: float = ERASURE_DEADLINE.total_seconds()
    refused_window_s: float = REFUSED_WINDOW.total_seconds()
    notes: list[str] = field(default_factory=list)

    @property
    def oldest_pending_erasure_s(self) -> float:
        return max((p.oldest_age_s for p in self.erasures_pending), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "oldest_pending_erasure_s": self.oldest_pending_erasure_s}


#: (event loop, session factory, prefix) → (monotonic time taken, snapshot), a lock and
#: the refresh under way, each: one process's deployments (and tests' loops) never share
#: an entry.
_Key = tuple[int, int, str]
_cache: dict[_Key, tuple[float, OpsSnapshot]] = {}
_locks: dict[_Key, asyncio.Lock] = {}
_refreshing: dict[_Key, asyncio.Task[None]] = {}


async def take(src: Sources, max_age_s: float | None = None) -> OpsSnapshot:
    """The snapshot, reused while younger than `max_age_s` (default `MAX_AGE_S`).

    With the default, a snapshot up to `SERVE_STALE_S` old (one scrape interval) is
    served at once and a fresh one is taken in the background for the next caller, so a
    scrape costs a cache read, not the queries (stale-while-revalidate). Concurrent
    callers wait for one computation rather than each running their own.
    """
    key = (id(asyncio.get_running_loop()), id(src.sessions), src.prefix)
    cached = _cache.get(key)
    age = time.monotonic() - cached[0] if cached is not None else None
    if max_age_s is None and cached is not None and age is not None and age < SERVE_STALE_S:
        if age >= MAX_AGE_S and key not in _refreshing:
            _refreshing[key] = asyncio.create_task(_refresh(src, key))
        return cached[1]
    return await _take_now(src, key, MAX_AGE_S if max_age_s is None else max_age_s)


async def _take_now(src: Sources, key: _Key, age_limit: float) -> OpsSnapshot:
    async with _locks.setdefault(key, asyncio.Lock()):
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < age_limit:
            return cached[1]
        snap = await take_fresh(src)
        _cache[key] = (time.monotonic(), snap)
        return snap


async def _refresh(src: Sources, key: _Key) -> None:
    """Take the next snapshot in the background; a failure leaves the old one to age out
    (the next caller past `SERVE_STALE_S` computes it in the open, and sees the error)."""
    try:
        await _take_now(src, key, 0.0)
    except Exception as exc:  # noqa: BLE001 — a background refresh must not crash the loop
        log.warning("ops_snapshot_refresh_failed", error=type(exc).__name__)
    finally:
        _refreshing.pop(key, None)


async def settle() -> None:
    """Wait for the background refreshes of this loop (before its connections close)."""
    loop = id(asyncio.get_running_loop())
    tasks = [t for k, t in list(_refreshing.items()) if k[0] == loop]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def take_fresh(src: Sources) -> OpsSnapshot:
    """A snapshot computed now: a handful of grouped queries over accounts and sync
    states, none over records or access-log history beyond the refused-reads window.

    The queries run on three connections at once (and Redis alongside), so a snapshot
    takes about as long as its slowest group, not the sum.
    """
    now = utcnow()
    queue, finished, first, second, behind = await asyncio.gather(
        _queue(src), finished_last_hour(src.redis, src.prefix),
        _in_session(src, _accounts_and_erasures, now), _in_session(src, _syncs_and_records),
        _in_session(src, _behind_and_webhooks, now - src.behind_after))
    behind, webhooks = behind
    accounts_by_status, (erasures_by_state, pending, overdue), refused = first
    syncs_by_status, failures, records = second
    return OpsSnapshot(
        taken_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        queue_name=src.queue_name, **queue, finished_last_hour=finished,
        accounts_by_status=accounts_by_status, syncs_by_status=syncs_by_status,
        failures=failures, behind_schedule=behind,
        behind_after_s=src.behind_after.total_seconds(),
        erasures_by_state=erasures_by_state, erasures_pending=pending,
        erasures_overdue=overdue, refused_reads=refused, records_by_feature=records,
        app_webhooks=webhooks.counts,
        app_webhook_oldest_pending_s=_age_s(now, webhooks.oldest),
    )


async def _in_session(src: Sources, read: Callable[..., Awaitable[T]], *args: Any) -> T:
    async with src.sessions() as session:
        return await read(session, *args)


async def _accounts_and_erasures(session: AsyncSession, now: datetime) -> tuple[
        dict[str, int], tuple[dict[str, int], list[PendingErasures], int], dict[str, int]]:
    return (await _grouped(session, Account.status), await _erasures(session, now),
            await _refused(session, now))


async def _syncs_and_records(session: AsyncSession) -> tuple[
        dict[str, int], list[FailureGroup], dict[str, int]]:
    return (await _grouped(session, SyncState.status), await _failures(session),
            await _record_counts(session))


async def _behind_and_webhooks(session: AsyncSession, cutoff: datetime) -> tuple[
        dict[str, int], outbox.Undelivered]:
    return await _behind(session, cutoff), await outbox.undelivered(session)


async def _queue(src: Sources) -> dict[str, Any]:  # its keys are OpsSnapshot's queue fields
    """ZCARD of arq's queue, the jobs due now, and the in-progress markers of our jobs.

    arq keeps a running job in the queue until it ends, so the jobs in progress are among
    the due members: their markers are counted with one EXISTS, never a SCAN (which would
    cost the whole keyspace). Only sync and erase jobs count: arq keeps a cron job's
    marker for a minute after it ends, so cron markers would overstate it.
    """
    now_ms = int(time.time() * 1000)
    due = await src.redis.zrangebyscore(src.queue_name, "-inf", now_ms)
    ours = tuple(f"{src.prefix}:{kind}:".encode() for kind in ("sync", "erase"))
    markers = [in_progress_key_prefix + m.decode() for m in due if m.startswith(ours)]
    in_progress = int(await src.redis.exists(*markers)) if markers else 0
    return {"queue_depth": int(await src.redis.zcard(src.queue_name)),
            "queue_due": len(due), "in_progress": in_progress}


async def _grouped(session: AsyncSession, column: Any, *where: Any) -> dict[str, int]:
    rows = await session.execute(
        select(column, func.count()).where(*where).group_by(column).order_by(column))
    return {str(key): int(count) for key, count in rows.all()}


async def _record_counts(session: AsyncSession) -> dict[str, int]:
    """Fetched records per feature, from the counts the record store keeps."""
    rows = await session.execute(
        select(RecordCount.feature, func.sum(RecordCount.records))
        .group_by(RecordCount.feature).order_by(RecordCount.feature))
    return {str(name): int(total) for name, total in rows.all() if total}


async def _failures(session: AsyncSession) -> list[FailureGroup]:
    """Syncs whose last run failed, grouped by error category (most frequent first)."""
    rows = await session.execute(
        select(SyncState.error_category, SyncState.feature, func.count(),
               func.max(SyncState.started_at))
        .where(SyncState.status.in_(FAILED))
        .group_by(SyncState.error_category, SyncState.feature))
    groups: dict[str, dict[str, Any]] = {}
    for category, feature, count, latest in rows.all():
        group = groups.setdefault(category or "unknown", {"features": {}, "latest": None})
        group["features"][feature] = int(count)
        if latest is not None and (group["latest"] is None or latest > group["latest"]):
            group["latest"] = latest
    found = [FailureGroup(name, sum(g["features"].values()), g["features"],
                          rfc3339(g["latest"]) if g["latest"] else None)
             for name, g in groups.items()]
    return sorted(found, key=lambda g: (-g.count, g.category))


async def _behind(session: AsyncSession, cutoff: datetime) -> dict[str, int]:
    """Per feature: active accounts that granted it but have not synced it since `cutoff`.

    One grouped query over the rows behind (not one per feature, each testing every
    account's scopes in SQL): the grant check is done here, once per distinct scope set.
    """
    rows = await session.execute(
        select(SyncState.feature, Account.granted_scopes, func.count())
        .join(Account, Account.id == SyncState.account_id)
        .where(Account.status == ACTIVE,
               or_(SyncState.last_synced_at.is_(None), SyncState.last_synced_at < cutoff))
        .group_by(SyncState.feature, Account.granted_scopes))
    found: dict[str, int] = {}
    for name, granted, count in rows.all():
        feature = FEATURES.get(name)
        if feature is not None and feature.scope in str(granted).split():
            found[name] = found.get(name, 0) + int(count)
    return dict(sorted(found.items()))


async def _erasures(
    session: AsyncSession, now: datetime
) -> tuple[dict[str, int], list[PendingErasures], int]:
    by_state = await _grouped(session, Erasure.state)
    rows = await session.execute(
        select(Erasure.state, func.count(), func.min(Erasure.requested_at))
        .where(Erasure.state != "verified").group_by(Erasure.state).order_by(Erasure.state))
    pending = [PendingErasures(state, int(count), _age_s(now, oldest))
               for state, count, oldest in rows.all()]
    overdue = await session.scalar(
        select(func.count()).select_from(Erasure)
        .where(Erasure.state != "verified", Erasure.requested_at < now - ERASURE_DEADLINE))
    return by_state, pending, int(overdue or 0)


async def _refused(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Refused reads in the window, by the use they named (most frequent first)."""
    rows = await session.execute(
        select(AccessLog.use, func.count())
        .where(AccessLog.decision == "refused", AccessLog.at >= now - REFUSED_WINDOW)
        .group_by(AccessLog.use).order_by(func.count().desc(), AccessLog.use))
    return {str(use): int(count) for use, count in rows.all()}


def _age_s(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    return max(0.0, round((now - as_utc(then)).total_seconds(), 1))


# -- throughput: the workers count finished runs per minute in Redis ------------------------


def _minute_key(prefix: str, minute: int, outcome: str) -> str:
    return f"{prefix}:ops:finished:{outcome}:{minute}"


#: Outcomes counted for throughput (the job metrics' outcomes).
OUTCOMES = ("ok", "failed", "retry", "error", "skipped")


async def count_finished(redis: ArqRedis, prefix: str, outcome: str) -> None:
    """Bump this minute's counter of finished runs (kept two hours, shared by all workers)."""
    bucket = outcome if outcome in OUTCOMES else "skipped"
    key = _minute_key(prefix, int(time.time() // 60), bucket)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, 2 * 3600)
        await pipe.execute()


async def finished_last_hour(redis: ArqRedis, prefix: str) -> dict[str, int]:
    minute = int(time.time() // 60)
    minutes = range(minute - THROUGHPUT_MINUTES + 1, minute + 1)
    found: dict[str, int] = {}
    for outcome in OUTCOMES:
        values = await redis.mget([_minute_key(prefix, m, outcome) for m in minutes])
        total = sum(int(v) for v in values if v is not None)
        if total:
            found[outcome] = total
    return found
