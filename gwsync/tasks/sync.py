"""The sync job: one feature of one account, full or incremental, checkpointed per page.

The job is thin orchestration: the connector talks to Google, the record store writes
(fenced by the account generation), and the outcome is recorded in the feature's sync
state under a named error category. Only `invalid_grant` starts a purge.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from arq import Retry
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import oauth, quota, registry
from gwsync.connectors.base import Connector
from gwsync.connectors.errors import (
    CursorExpiredError,
    GoogleError,
    PageTokenRefusedError,
    PermissionLostError,
    RevokedError,
    TemporaryError,
)
from gwsync.core import logs, metrics
from gwsync.core.timeutil import utcnow
from gwsync.domain import features
from gwsync.storage import accounts, derived, keys, leases
from gwsync.storage.models import Account, RecordCount, SyncState
from gwsync.tasks import erase, grants, watches
from gwsync.tasks.deps import Deps
from gwsync.tasks.liveness import Live
from gwsync.tasks.outcomes import Skip
from gwsync.tasks.retry import backoff, retry_delay

log = logs.get("gwsync.sync")
MAX_TRIES = 5


@dataclass(frozen=True)
class Snapshot:
    """What a run starts from, read in one transaction."""

    generation: int
    refresh_token: str
    granted: frozenset[str]
    stage: str
    cursor: str | None
    page_token: str | None
    epoch: int
    #: The state's status before this run: the app hears of a lost permission once.
    status: str = "idle"


def _valid_args(account_id: Any, feature: Any, generation: Any) -> bool:
    return (isinstance(account_id, str) and len(account_id) == 36
            and feature in features.FEATURES and feature in registry.CONNECTORS
            and isinstance(generation, int) and not isinstance(generation, bool))


async def sync_feature(
    ctx: dict[str, Any], account_id: str, feature: str, generation: int
) -> dict[str, Any]:
    deps: Deps = ctx["deps"]
    if not _valid_args(account_id, feature, generation):
        log.warning("bad_job_args", job="sync_feature")
        return {"outcome": "bad_args"}
    async with deps.queue.lock(account_id, feature, deps.settings.sync_lock_s) as held:
        if not held:
            return await _busy(deps, account_id, feature, generation, ctx.get("job_try", 1))
        run = SyncRun(deps, account_id, features.get(feature), generation,
                      ctx.get("job_try", 1), job_id=ctx.get("job_id"))
        try:
            return await run.run()
        except asyncio.CancelledError:
            if held.lost:
                _uncancel()
                log.warning("sync_lock_lost", account_id=account_id, feature=feature)
                return {"outcome": "fenced"}
            if not await _erased(deps, account_id):
                raise  # a worker shutting down: the job runs again
            _uncancel()  # the erasure aborted the run (tasks/liveness.py): it ended, fine
            log.info("sync_aborted", account_id=account_id, feature=feature,
                     reason="erasing")
            return {"outcome": "fenced"}


async def _erased(deps: Deps, account_id: str) -> bool:
    """Whether the cancel came from the account's erasure (its fence is set)."""
    try:
        return await deps.queue.is_erased(account_id)
    except RedisError:
        return False


def _uncancel() -> None:
    """The cancel was ours (the lock was lost) or the erasure's (its abort), not a worker
    shutting down: end the job normally."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


async def _busy(
    deps: Deps, account_id: str, feature: str, generation: int, job_try: int
) -> dict[str, Any]:
    """Another run holds the feature: hand this request to the queued follow-up (it will
    see what changed during that run); if one is queued already, wait for the holder."""
    metrics.JOB_DEFERRALS.labels(task="sync_feature", reason="busy").inc()
    delay = backoff(deps.settings, job_try)
    if await deps.queue.enqueue_sync(account_id, feature, generation, defer_s=delay):
        return {"outcome": "busy", "requeued": True}
    raise Retry(defer=delay)


async def write_behind(pages: AsyncIterator[Any],
                        write: Callable[[Any], Awaitable[None]]) -> None:
    """Write each page while the connector fetches the next, one write at a time and in
    order: a page's transaction (fence, keys, upsert, checkpoint) took an eighth of a
    Gmail full sync's time with nothing else going on (bench/ingest.py, timed).

    A write's failure (fenced, lease lost, key shredded) surfaces before the next page
    is written, at most one page fetch later; those calls are still guarded by the
    erasure fence (`Live`). When fetching fails, the page already fetched is saved first
    and a failed write is what the run reports, as when they ran one after the other. A
    cancelled run (lock lost, erasure abort) cancels its write too.
    """
    pending: asyncio.Future[None] | None = None
    try:
        async for fetched in pages:
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(write(fetched))
    except asyncio.CancelledError:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        raise
    except BaseException:
        if pending is not None:
            await pending  # its own failure, if any, comes first, as it did in sequence
        raise
    if pending is not None:
        await pending


class SyncRun:
    def __init__(self, deps: Deps, account_id: str, feature: features.Feature,
                 generation: int, job_try: int, job_id: str | None = None) -> None:
        self.deps = deps
        self.job_id = job_id
        self.account_id = account_id
        self.feature = feature
        self.generation = generation
        self.job_try = job_try
        self.records_written = 0
        self.records_removed = 0
        self.api_calls = 0
        self.mode = "incremental"
        self.prior_status = "idle"
        self.epoch = 0
        #: This run's fencing token (gwsync/storage/leases.py), taken with the lock.
        self.lease: int | None = None
        #: Asked before every Google call: stops the run once an erasure begins.
        self.live = Live(deps.queue, account_id)

    async def run(self) -> dict[str, Any]:
        bound = log.bind(account_id=self.account_id, feature=self.feature.name)
        try:
            snap = await self._begin()
            self.prior_status = snap.status
            connector = await self._connector(snap)
            try:
                await self._sync(connector, snap)
            finally:
                connector.close()
            if self._derived_stale() or await derived.missing(
                    self.deps.store, self.account_id, self.feature.name):
                await derived.refresh(self.deps.store, self.account_id, self.generation,
                                      self.feature.name, self.epoch, lease=self.lease)
        except Skip as why:
            bound.info("sync_skipped", reason=str(why))
            return {"outcome": "skipped", "reason": str(why)}
        except (accounts.FencedError, keys.KeyShreddedError):
            bound.info("sync_fenced")
            return {"outcome": "fenced"}
        except GoogleError as exc:
            return await self._failed(exc, bound)
        await self._set_state(status="ok", error_category=None, last_error=None,
                              last_synced_at=utcnow(), announce=("sync.completed", {
                                  "mode": self.mode, "records_upserted": self.records_written,
                                  "records_removed": self.records_removed}))
        bound.info("sync_done", records=self.records_written, api_calls=self.api_calls)
        await watches.after_sync(self.deps, self.account_id, self.feature.name, self.generation)
        return {"outcome": "ok", "records": self.records_written, "api_calls": self.api_calls}

    async def _begin(self) -> Snapshot:
        """Read what the run starts from, take the lease and mark the state running — in
        one transaction: each transaction is a pool checkout, its ping and a commit, and
        these three were a fifth of a no-change sync's CPU (bench/fleet.py, profiled)."""
        async with self.deps.sessions.begin() as session:
            snap = await self._read(session)
            await accounts.fence(session, self.account_id, self.generation)
            self.lease = await leases.take(session, self.account_id, self.feature.name)
            await session.execute(update(SyncState).where(
                SyncState.account_id == self.account_id,
                SyncState.feature == self.feature.name).values(
                    status="running", started_at=utcnow()))
        return snap

    async def _snapshot(self) -> Snapshot:
        async with self.deps.sessions() as session:
            return await self._read(session)

    async def _read(self, session: AsyncSession) -> Snapshot:
        account = await session.get(Account, self.account_id)
        if account is None or account.status != accounts.ACTIVE:
            raise Skip("account not active")
        if account.generation != self.generation:
            raise Skip("account generation moved on")
        granted = frozenset(account.granted_scopes.split())
        if self.feature.scope not in granted:
            raise Skip("feature scope not granted")
        state = await session.get(SyncState, (self.account_id, self.feature.name))
        if state is None:
            raise Skip("no sync state")
        grant = await accounts.grant(session, self.deps.keyring, account)
        return Snapshot(self.generation, grant.refresh_token, granted, state.stage,
                        state.cursor, state.page_token, state.epoch, state.status)

    def _derived_stale(self) -> bool:
        """Whether the feature's derived data may be out of date: not when an incremental
        run changed nothing after a run that ended ok (that run refreshed it before its
        `ok`). A crashed, failed or full run recomputes it; so does any run that finds it
        gone (`derived.missing`)."""
        unchanged = self.mode == "incremental" and not (
            self.records_written or self.records_removed)
        return not (unchanged and self.prior_status == "ok")

    async def _connector(self, snap: Snapshot) -> Connector:
        await self.live()  # the refresh itself is a call with the account's grant
        token = await oauth.access_token(self.deps.oauth, snap.refresh_token, self.feature.scope)
        budget = quota.Budget(self.deps.limiter, self.account_id, self.live)
        build = registry.CONNECTORS[self.feature.name]
        return build(token.token, self.deps.connector_options, budget)

    async def _sync(self, connector: Connector, snap: Snapshot) -> None:
        if snap.stage == "incremental" and snap.cursor:
            try:
                await self._incremental(connector, snap.cursor, snap.epoch)
                return
            except CursorExpiredError:
                log.info("cursor_expired", account_id=self.account_id, feature=self.feature.name)
                await self._crawl(connector, None, snap.epoch + 1)
                return
        resuming = snap.page_token is not None and snap.stage == "full"
        await self._crawl(connector, snap.page_token if resuming else None,
                          snap.epoch if resuming else snap.epoch + 1)

    async def _crawl(self, connector: Connector, page_token: str | None, epoch: int) -> None:
        """A full sync; when Google refuses one of its page tokens (they expire, e.g.
        after a long deferral), once more from the first page under a new epoch, so
        what the dead listing stored but no longer exists is swept (docs/google.md §9.1).
        A second refusal in the same run fails it as `cursor_expired`."""
        try:
            await self._full(connector, page_token, epoch)
        except PageTokenRefusedError:
            log.info("page_token_refused", account_id=self.account_id,
                     feature=self.feature.name)
            await self._full(connector, None, self.epoch + 1)

    async def _full(self, connector: Connector, page_token: str | None, epoch: int) -> None:
        """Every item; then delete what this full sync did not see."""
        self.epoch = epoch
        self.mode = "full"
        fresh = {} if page_token else {"page_token": None}  # a new crawl drops the old token
        await self._set_state(stage="full", epoch=epoch, **fresh)
        cursor: str | None = None

        async def write(fetched: Any) -> None:
            nonlocal cursor
            cursor = fetched.next_cursor or cursor
            await self._write(fetched, epoch, {"page_token": fetched.next_page_token})
        await write_behind(connector.full(page_token), write)
        now = utcnow()
        self.records_removed += await self.deps.store.delete_stale(
            self.account_id, self.generation, self.feature, epoch=epoch,
            state={"stage": "incremental" if cursor else "full", "cursor": cursor,
                   "page_token": None, "full_synced_at": now}, lease=self.lease)

    async def _incremental(self, connector: Connector, cursor: str, epoch: int) -> None:
        self.epoch = epoch

        async def write(fetched: Any) -> None:
            state = {"cursor": fetched.next_cursor} if fetched.next_cursor else {}
            await self._write(fetched, epoch, state)
        await write_behind(connector.incremental(cursor), write)

    async def _write(self, fetched: Any, epoch: int, state: dict[str, Any]) -> None:
        self.api_calls += fetched.api_calls
        self.records_written += len(fetched.page.upserts)
        self.records_removed += len(fetched.page.removals)
        await self.deps.store.write_page(self.account_id, self.generation, self.feature,
                                         fetched.page, epoch=epoch, state=state,
                                         lease=self.lease)
        metrics.RECORDS_SYNCED.labels(feature=self.feature.name).inc(len(fetched.page.upserts))

    async def _set_state(self, *, announce: tuple[str, dict[str, Any]] | None = None,
                         **values: Any) -> None:
        """Save the state; `announce` adds its event for the app in the same transaction."""
        async with self.deps.sessions.begin() as session:
            await accounts.fence(session, self.account_id, self.generation)
            if self.lease is not None:
                await leases.check(session, self.account_id, self.feature.name, self.lease)
            await session.execute(update(SyncState).where(
                SyncState.account_id == self.account_id,
                SyncState.feature == self.feature.name).values(**values))
            if announce is not None and self.deps.outbox.enabled:
                await self._announce(session, *announce)

    async def _announce(self, session: AsyncSession, type_: str, data: dict[str, Any]) -> None:
        """Counts and the feature only: never a record's contents or identifiers."""
        account = await session.get(Account, self.account_id)
        data = {"feature": self.feature.name, **data}
        if type_ == "sync.completed":
            held = await session.get(RecordCount, (self.account_id, self.feature.name))
            data["records_held"] = held.records if held else 0
        await self.deps.outbox.add(session, type_, self.account_id,
                                   account.user_id if account else None, data=data)

    async def _failed(self, exc: GoogleError, bound: Any) -> dict[str, Any]:
        if isinstance(exc, TemporaryError):
            return await self._defer(exc, bound)
        bound.warning("sync_failed", category=str(exc.category), detail=exc.detail)
        lost = isinstance(exc, PermissionLostError)
        try:
            await self._set_state(status="needs_permission" if lost else "error",
                                  error_category=str(exc.category), last_error=exc.detail[:500],
                                  announce=("feature.needs_permission", {
                                      "scope": self.feature.scope})
                                  if lost and self.prior_status != "needs_permission" else None)
        except accounts.FencedError:
            return {"outcome": "fenced"}
        if isinstance(exc, PermissionLostError):
            await self._recheck_grant()
        elif isinstance(exc, RevokedError):
            await self._purge_revoked()
        return {"outcome": "failed", "category": str(exc.category)}

    async def _defer(self, exc: TemporaryError, bound: Any) -> dict[str, Any]:
        """A temporary error never fails a sync: it runs again later from its checkpoint.

        Retried in this job up to MAX_TRIES (after `Retry-After`, or with backoff), then
        handed to a new deferred job, since arq would fail this one past its tries.
        """
        delay = retry_delay(self.deps.settings, self.job_try, exc.retry_after)
        bound.warning("sync_deferred", detail=exc.detail, defer_s=round(delay, 3),
                      job_try=self.job_try)
        try:
            await self._set_state(status="deferred", error_category=str(exc.category),
                                  last_error=exc.detail[:500])
        except accounts.FencedError:
            return {"outcome": "fenced"}
        if isinstance(exc, quota.QuotaWaitError):
            metrics.JOB_DEFERRALS.labels(task="sync_feature", reason="quota").inc()
        if self.job_try < MAX_TRIES:
            raise Retry(defer=delay)
        await self.deps.queue.enqueue_sync(self.account_id, self.feature.name,
                                           self.generation, defer_s=delay)
        return {"outcome": "retry", "defer_s": delay}

    async def _recheck_grant(self) -> None:
        """A scope was refused: if Google confirms it is gone, the feature is erased."""
        try:
            snap = await self._snapshot()
            await self.live()
            await grants.recheck(self.deps, self.account_id, snap.refresh_token)
        except (Skip, accounts.FencedError):
            return
        except RevokedError:
            await self._purge_revoked()

    async def _purge_revoked(self) -> None:
        """Google said the grant is dead: erase everything of this account."""
        async with self.deps.sessions() as session:
            account = await session.get(Account, self.account_id)
            subject = account.subject_hash if account else ""
        await erase.request(self.deps, [self.account_id], subject_hash=subject,
                            trigger="invalid_grant", requested_by_job=self.job_id)
