"""The ops picture, computed once from the database and Redis.

The ops page, `gwsync status` and the state gauges of `/metrics` all render this one
snapshot, so they show the same numbers by construction. It reads counts and ages only:
no user id, email, token or record content ever enters it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix
from sqlalchemy import func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors.features import FEATURES
from gwsync.storage.accounts import ACTIVE
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import (
    AccessLog,
    Account,
    Erasure,
    Record,
    SyncState,
    is_source_record,
)
from gwsync.timeutil import as_utc, rfc3339, utcnow
from gwsync.worker.deps import Deps

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

    @classmethod
    def of(cls, deps: Deps) -> Sources:
        return cls(deps.sessions, deps.queue.redis, deps.queue.prefix, deps.queue.queue_name,
                   deps.settings.sync_interval_s)


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
    erasure_deadline_s: float = ERASURE_DEADLINE.total_seconds()
    refused_window_s: float = REFUSED_WINDOW.total_seconds()
    notes: list[str] = field(default_factory=list)

    @property
    def oldest_pending_erasure_s(self) -> float:
        return max((p.oldest_age_s for p in self.erasures_pending), default=0.0)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "oldest_pending_erasure_s": self.oldest_pending_erasure_s}


async def snapshot(deps: Deps) -> OpsSnapshot:
    """The ops picture of the deployment `deps` is wired to."""
    return await take(Sources.of(deps))


async def take(src: Sources) -> OpsSnapshot:
    now = utcnow()
    queue = await _queue(src)
    async with src.sessions() as session:
        erasures_by_state, pending, overdue = await _erasures(session, now)
        return OpsSnapshot(
            taken_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            queue_name=src.queue_name, **queue,
            finished_last_hour=await finished_last_hour(src.redis, src.prefix),
            accounts_by_status=await _grouped(session, Account.status),
            syncs_by_status=await _grouped(session, SyncState.status),
            failures=await _failures(session),
            behind_schedule=await _behind(session, now - src.behind_after),
            behind_after_s=src.behind_after.total_seconds(),
            erasures_by_state=erasures_by_state, erasures_pending=pending,
            erasures_overdue=overdue, refused_reads=await _refused(session, now),
            records_by_feature=await _grouped(session, Record.feature, is_source_record()),
        )


async def _queue(src: Sources) -> dict[str, int]:
    """ZCARD of arq's queue, the jobs due now, and the in-progress markers of our jobs.

    Only sync and erase jobs count as in progress: arq keeps a cron job's marker for a
    minute after it ends, so cron markers would overstate it.
    """
    now_ms = int(time.time() * 1000)
    in_progress = 0
    for kind in ("sync", "erase"):
        pattern = f"{in_progress_key_prefix}{src.prefix}:{kind}:*"
        in_progress += len([k async for k in src.redis.scan_iter(match=pattern, count=500)])
    return {"queue_depth": int(await src.redis.zcard(src.queue_name)),
            "queue_due": int(await src.redis.zcount(src.queue_name, "-inf", now_ms)),
            "in_progress": in_progress}


async def _grouped(session: AsyncSession, column: Any, *where: Any) -> dict[str, int]:
    rows = await session.execute(
        select(column, func.count()).where(*where).group_by(column).order_by(column))
    return {str(key): int(count) for key, count in rows.all()}


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
    """Per feature: active accounts that granted it but have not synced it since `cutoff`."""
    padded = literal(" ") + Account.granted_scopes + literal(" ")
    found: dict[str, int] = {}
    for name, feature in FEATURES.items():
        count = await session.scalar(
            select(func.count()).select_from(SyncState)
            .join(Account, Account.id == SyncState.account_id)
            .where(Account.status == ACTIVE, SyncState.feature == name,
                   padded.contains(f" {feature.scope} ", autoescape=True),
                   or_(SyncState.last_synced_at.is_(None), SyncState.last_synced_at < cutoff)))
        if count:
            found[name] = int(count)
    return found


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
