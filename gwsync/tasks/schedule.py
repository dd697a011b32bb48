"""Scheduling crons: every enabled feature is refreshed at an interval; stuck syncs recover.

Push notifications make most syncs prompt; `enqueue_due_syncs` is the floor under them,
so a lost notification, or a feature without push, still converges within
`GWSYNC_SYNC_INTERVAL_S`. `recover_stuck_syncs` finds runs that stopped without saying so
(a worker killed, a job timed out) and runs them again. Both are safe on every worker at
once: enqueueing is single-flight per job id, and a stuck state is taken over with a
compare-and-set on its `started_at`. Logs carry counts only.

A tick costs what is due, not the fleet, and a bounded amount of it in one place: one
index-only statement cuts the due range of `ix_sync_states_next_due_at` into slices of
SLICE keys (the database counts; the tick reads one key per slice), and the tick hands
each slice to a `dispatch_due_syncs` job, queued in one round trip, which the worker pool
runs at once and side by side (a due range that fits one slice it claims itself). A
claim reads a slice's rows, enqueues the due ones in one Redis call and moves every row it
read a sync interval on (or to when its last attempt makes it due, for a row a
push-triggered sync refreshed meanwhile). Each row is read about once an interval.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import registry
from gwsync.connectors.errors import Category
from gwsync.core import logs
from gwsync.core.timeutil import as_utc, utcnow
from gwsync.domain import features
from gwsync.storage import accounts
from gwsync.storage.models import Account, SyncState
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.schedule")
#: Rows read per statement, so a large fleet never loads into memory at once (and a
#: tick's claim holds its row locks only while one batch is enqueued).
BATCH = 5000
RUNNING = "running"
#: Due rows in one unit of a tick's work (docs/architecture.md §9): past one slice, the
#: tick queues a dispatch job per slice, so neither the cron, nor one transaction's row
#: locks, nor one Redis script ever covers more rows than this.
SLICE = 500
DISPATCH = "dispatch_due_syncs"
#: The due-sync cron's period: a re-checked row's next look is rounded up to it.
MINUTE_S = 60
#: Core, not ORM: the tick's statements return plain rows, with no ORM bookkeeping.
_STATES = cast(Table, SyncState.__table__)
_OWNERS = cast(Table, Account.__table__)


def _candidates() -> Select[*tuple[Any, ...]]:
    """Sync states of active accounts whose feature has a connector, in key order."""
    return (select(SyncState.account_id, SyncState.feature, SyncState.started_at,
                   Account.generation, Account.granted_scopes)
            .join(Account, Account.id == SyncState.account_id)
            .where(Account.status == accounts.ACTIVE,
                   SyncState.feature.in_(list(registry.CONNECTORS)))
            .order_by(SyncState.account_id, SyncState.feature)
            .limit(BATCH))


async def _batches(deps: Deps, query: Select[*tuple[Any, ...]]) -> AsyncIterator[list[Any]]:
    """`query`'s rows, BATCH at a time, paging on the (account, feature) key.

    The page predicate is a row-value comparison, which an index on the key can serve
    (an OR of the two columns' comparisons could not: every page would read the table).
    """
    after: tuple[str, str] | None = None
    while True:
        page = query if after is None else query.where(
            tuple_(SyncState.account_id, SyncState.feature) > tuple_(*after))
        async with deps.sessions() as session:
            rows = list((await session.execute(page)).all())
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        after = (rows[-1].account_id, rows[-1].feature)


def _enabled(row: Any) -> bool:
    return _covers(row.feature, row.granted_scopes)


@functools.lru_cache(maxsize=1024)
def _covers(feature: str, granted_scopes: str) -> bool:
    """Whether the grant covers the feature (a fleet shares a few scope sets: cached)."""
    return features.get(feature).scope in granted_scopes.split()


#: A position in `ix_sync_states_next_due_at`: (next_due_at, account_id, feature).
Key = tuple[datetime, str, str]


def _index_key() -> Any:
    return tuple_(_STATES.c.next_due_at, _STATES.c.account_id, _STATES.c.feature)


def _key_value(key: Key) -> Any:
    """`key` as a row value typed like the index's columns (SQLite stores times as text)."""
    columns = (_STATES.c.next_due_at, _STATES.c.account_id, _STATES.c.feature)
    return tuple_(*(literal(v, type_=c.type) for v, c in zip(key, columns, strict=True)))


def slice_bounds(now: datetime, size: int) -> Select[*tuple[Any, ...]]:
    """Every `size`-th key of the due range, in index order: the database numbers the due
    keys over the index alone, so the tick reads due ÷ size rows, not one per due row."""
    states = _STATES
    ranked = (select(states.c.next_due_at, states.c.account_id, states.c.feature,
                     func.row_number().over(order_by=(
                         states.c.next_due_at, states.c.account_id, states.c.feature))
                     .label("n"))
              .where(states.c.next_due_at <= now).subquery())
    return (select(ranked.c.next_due_at, ranked.c.account_id, ranked.c.feature)
            .where(ranked.c.n % size == 0).order_by(ranked.c.n))


def due_rows(now: datetime, interval: timedelta, limit: int = BATCH,
             after: Key | None = None, upto: Key | None = None) -> Update:
    """Claim up to `limit` rows whose `next_due_at` has come, in one statement: the
    oldest-due range of `ix_sync_states_next_due_at` (within the slice (after, upto] of its
    keys, when given; rows another claim holds are skipped on PostgreSQL; SQLite has one
    writer), each moved an interval on, and returned with the rule decided in SQL
    (`eligible`, `due`), so a row comes back as a few short columns, not its account's
    scope list."""
    states = _STATES
    claimed = (select(states.c.account_id, states.c.feature)
               .where(states.c.next_due_at <= now)
               .order_by(states.c.next_due_at).limit(limit)
               .with_for_update(skip_locked=True))
    if after is not None:
        claimed = claimed.where(_index_key() > _key_value(after))
    if upto is not None:
        claimed = claimed.where(_index_key() <= _key_value(upto))
    cutoff = now - interval
    due = and_(states.c.status != RUNNING,
               or_(states.c.started_at.is_(None), states.c.started_at < cutoff),
               or_(states.c.last_synced_at.is_(None), states.c.last_synced_at < cutoff))
    return (update(states)
            .where(tuple_(states.c.account_id, states.c.feature).in_(claimed))
            .values(next_due_at=now + interval)
            .returning(states.c.account_id, states.c.feature, states.c.started_at,
                       states.c.last_synced_at, _owner(_OWNERS.c.generation).label("generation"),
                       _owner(_eligible_sql()).label("eligible"), due.label("due")))


def _owner(column: Any) -> Any:
    """`column` of the row's account (a subquery: SQLite's RETURNING cannot name an
    UPDATE's FROM)."""
    return select(column).where(_OWNERS.c.id == _STATES.c.account_id).scalar_subquery()


def _eligible_sql() -> Any:
    """An active account whose grant covers the feature, which has a connector: the scope
    is found as a whole word of the space-separated grant (scopes hold no LIKE wildcard)."""
    scope = case({name: features.get(name).scope for name in registry.CONNECTORS},
                 value=_STATES.c.feature, else_=None)
    grant = literal(" ") + _OWNERS.c.granted_scopes + literal(" ")
    return and_(_OWNERS.c.status == accounts.ACTIVE,
                grant.contains(literal(" ") + scope + literal(" ")))


def _last_attempt(row: Any) -> datetime | None:
    """When the row's feature was last attempted: a run's start or its end, if any."""
    seen = [as_utc(t) for t in (row.started_at, row.last_synced_at) if t is not None]
    return max(seen, default=None)


def _next_look(row: Any, now: datetime, interval: timedelta) -> datetime:
    """When the scheduler should read an eligible row it did not queue again: an interval
    after its last attempt (a push-triggered sync ran meanwhile, or one still runs), never
    before the next tick."""
    last = _last_attempt(row) or now
    return max(last + interval, now + timedelta(seconds=MINUTE_S))


def _jitter(deps: Deps) -> float | None:
    """A random start within the jitter window, so a fleet's syncs do not all start at once."""
    window = deps.settings.sync_jitter_s
    return random.random() * window if window > 0 else None  # noqa: S311 — not a secret


async def enqueue_due_syncs(ctx: dict[str, Any]) -> int:
    """Enqueue every enabled feature not attempted within the interval → how many queued
    here: all of them when they fit one slice, else none, each slice being handed to a
    dispatch job (queued in one round trip, claimed by the worker pool side by side).

    A slice whose job is lost or fails stays due: the next tick covers it. Safe on every
    worker at once (a row is claimed once: the claim moves it on).
    """
    deps: Deps = ctx["deps"]
    now = utcnow()
    async with deps.sessions() as session:
        bounds = [_as_key(r) for r in (await session.execute(slice_bounds(now, SLICE))).all()]
    if not bounds:
        queued = await claim_slice(deps, now, None, None)
        if queued:
            log.info("due_syncs_enqueued", count=queued)
        return queued
    edges: list[Key | None] = [None, *bounds, None]
    stamp = int(now.timestamp() * 1000)
    dispatched = await deps.queue.enqueue_jobs(DISPATCH, [
        (f"{deps.queue.prefix}:dispatch:{stamp}:{n}", (_wire(after), _wire(upto), now.isoformat()))
        for n, (after, upto) in enumerate(zip(edges, edges[1:], strict=False))])
    log.info("due_syncs_dispatched", slices=dispatched)
    return 0


async def dispatch_due_syncs(ctx: dict[str, Any], after: Any, upto: Any,
                             now: Any) -> dict[str, Any]:
    """The job a tick queues per slice: claim and enqueue its due rows, those with keys in
    (after, upto] that were due at the tick (`now`) → `{"outcome", "queued"}`."""
    deps: Deps = ctx["deps"]
    try:
        bounds, tick = (_unwire(after), _unwire(upto)), datetime.fromisoformat(now)
    except (TypeError, ValueError):
        log.warning("bad_job_args", job=DISPATCH)
        return {"outcome": "bad_args"}
    return {"outcome": "ok", "queued": await claim_slice(deps, as_utc(tick), *bounds)}


async def claim_slice(deps: Deps, now: datetime, after: Key | None, upto: Key | None) -> int:
    """Per BATCH of the slice's due rows: one UPDATE … RETURNING claims them and moves them
    an interval on, one Redis call enqueues those to run, and the claim commits only after
    the enqueue (a crash in between leaves the rows due: the next tick enqueues them,
    single-flight) → how many queued."""
    interval = timedelta(seconds=deps.settings.sync_interval_s)
    queued = 0
    while True:
        async with deps.sessions.begin() as session:
            rows = list((await session.execute(
                due_rows(now, interval, after=after, upto=upto))).all())
            queued += await deps.queue.enqueue_syncs(
                [(r.account_id, r.feature, r.generation, _jitter(deps))
                 for r in rows if r.eligible and r.due])
            await _look_sooner(session, [r for r in rows if r.eligible and not r.due],
                               now, interval)
        if len(rows) < BATCH:
            return queued


def _as_key(row: Any) -> Key:
    return (as_utc(row.next_due_at), row.account_id, row.feature)


def _wire(key: Key | None) -> list[str] | None:
    """A key as a job argument (msgpack carries no datetime)."""
    return None if key is None else [key[0].isoformat(), key[1], key[2]]


def _unwire(key: Any) -> Key | None:
    """A job argument back as a key; TypeError or ValueError unless it is one."""
    if key is None:
        return None
    when, account_id, feature = key
    if not (isinstance(account_id, str) and isinstance(feature, str)):
        raise TypeError("a key is (time, account id, feature)")
    return (as_utc(datetime.fromisoformat(when)), account_id, feature)


async def _look_sooner(session: AsyncSession, rows: list[Any], now: datetime,
                       interval: timedelta) -> None:
    """Bring forward the next look at eligible rows not queued (running, or attempted
    within the interval), to when they fall due: one executemany. The others (withdrawn
    features, inactive accounts) are looked at again an interval on; what enables them
    enqueues their sync itself."""
    params = [{"a": r.account_id, "f": r.feature, "due": _next_look(r, now, interval)}
              for r in rows]
    if not params:
        return
    states = _STATES
    await session.execute(update(states).where(
        states.c.account_id == bindparam("a"), states.c.feature == bindparam("f"))
        .values(next_due_at=bindparam("due")), params)


async def recover_stuck_syncs(ctx: dict[str, Any]) -> int:
    """Mark runs stuck past the timeout, whose lock is gone, as `error`/`stuck`, and run
    them again → how many were recovered."""
    deps: Deps = ctx["deps"]
    cutoff = utcnow() - timedelta(seconds=deps.settings.stuck_after_s)
    stuck = _candidates().where(SyncState.status == RUNNING, SyncState.started_at < cutoff)
    recovered = 0
    async for rows in _batches(deps, stuck):
        for row in rows:
            if await deps.queue.locked(row.account_id, row.feature):
                continue  # a live worker still renews it: slow, not stuck
            if not await _mark_stuck(deps, row.account_id, row.feature, row.started_at):
                continue
            recovered += 1
            if _enabled(row):  # a withdrawn feature is only marked, never run again
                await deps.queue.requeue_sync(row.account_id, row.feature, row.generation)
    if recovered:
        log.warning("stuck_syncs_recovered", count=recovered)
    return recovered


async def _mark_stuck(deps: Deps, account_id: str, feature: str, started_at: datetime) -> bool:
    """Record the stuck run, unless it finished or another run began since it was read."""
    async with deps.sessions.begin() as session:
        result = await session.execute(
            update(SyncState)
            .where(SyncState.account_id == account_id, SyncState.feature == feature,
                   SyncState.status == RUNNING, SyncState.started_at == started_at)
            .values(status="error", error_category=str(Category.STUCK),
                    last_error="the run stopped without finishing; queued again")
            .execution_options(synchronize_session=False))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # DML gives a CursorResult
