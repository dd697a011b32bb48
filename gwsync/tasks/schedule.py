"""Scheduling crons: every enabled feature is refreshed at an interval; stuck syncs recover.

Push notifications make most syncs prompt; `enqueue_due_syncs` is the floor under them,
so a lost notification, or a feature without push, still converges within
`GWSYNC_SYNC_INTERVAL_S`. `recover_stuck_syncs` finds runs that stopped without saying so
(a worker killed, a job timed out) and runs them again. Both are safe on every worker at
once: enqueueing is single-flight per job id, and a stuck state is taken over with a
compare-and-set on its `started_at`. Logs carry counts only.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, or_, select, update

from gwsync.connectors import features, registry
from gwsync.connectors.errors import Category
from gwsync.storage import accounts
from gwsync.storage.models import Account, SyncState
from gwsync.timeutil import utcnow
from gwsync.worker import logging
from gwsync.worker.deps import Deps

log = logging.get("gwsync.schedule")
#: Rows read per query, so a large fleet never loads into memory at once.
BATCH = 500
RUNNING = "running"


def _candidates() -> Select[Any]:
    """Sync states of active accounts whose feature has a connector, in key order."""
    return (select(SyncState.account_id, SyncState.feature, SyncState.started_at,
                   Account.generation, Account.granted_scopes)
            .join(Account, Account.id == SyncState.account_id)
            .where(Account.status == accounts.ACTIVE,
                   SyncState.feature.in_(list(registry.CONNECTORS)))
            .order_by(SyncState.account_id, SyncState.feature)
            .limit(BATCH))


async def _batches(deps: Deps, query: Select[Any]) -> AsyncIterator[list[Any]]:
    """`query`'s rows, BATCH at a time, paging on the (account, feature) key."""
    after: tuple[str, str] | None = None
    while True:
        page = query if after is None else query.where(or_(
            SyncState.account_id > after[0],
            and_(SyncState.account_id == after[0], SyncState.feature > after[1])))
        async with deps.sessions() as session:
            rows = list((await session.execute(page)).all())
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        after = (rows[-1].account_id, rows[-1].feature)


def _enabled(row: Any) -> bool:
    return features.get(row.feature).scope in row.granted_scopes.split()


def _jitter(deps: Deps) -> float | None:
    """A random start within the jitter window, so a fleet's syncs do not all start at once."""
    window = deps.settings.sync_jitter_s
    return random.random() * window if window > 0 else None  # noqa: S311 — not a secret


async def enqueue_due_syncs(ctx: dict[str, Any]) -> int:
    """Enqueue every enabled feature not attempted within the interval → how many queued.

    "Attempted" counts a failed run too (`started_at`), so a failing feature is retried
    once per interval, not once per cron tick.
    """
    deps: Deps = ctx["deps"]
    cutoff = utcnow() - timedelta(seconds=deps.settings.sync_interval_s)
    due = _candidates().where(
        SyncState.status != RUNNING,
        or_(SyncState.started_at.is_(None), SyncState.started_at < cutoff),
        or_(SyncState.last_synced_at.is_(None), SyncState.last_synced_at < cutoff))
    queued = 0
    async for rows in _batches(deps, due):
        for row in filter(_enabled, rows):
            queued += await deps.queue.enqueue_sync(row.account_id, row.feature, row.generation,
                                                    defer_s=_jitter(deps))
    if queued:
        log.info("due_syncs_enqueued", count=queued)
    return queued


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
    return bool(result.rowcount == 1)
