"""The sync job: one feature of one account, full or incremental, checkpointed per page.

The job is thin orchestration: the connector talks to Google, the record store writes
(fenced by the account generation), and the outcome is recorded in the feature's sync
state under a named error category. Only `invalid_grant` starts a purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq import Retry
from sqlalchemy import update

from gwsync.connectors import features, oauth, quota, registry
from gwsync.connectors.base import Connector
from gwsync.connectors.errors import (
    CursorExpiredError,
    GoogleError,
    PermissionLostError,
    RevokedError,
    TemporaryError,
)
from gwsync.storage import accounts, derived, keys
from gwsync.storage.models import Account, SyncState
from gwsync.tasks import erase, grants, watches
from gwsync.tasks.retry import backoff, retry_delay
from gwsync.timeutil import utcnow
from gwsync.worker import logging, metrics
from gwsync.worker.deps import Deps

log = logging.get("gwsync.sync")
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


class Skip(Exception):
    """The run has nothing to do (account gone, erased, or feature not granted)."""


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
                      ctx.get("job_try", 1))
        return await run.run()


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


class SyncRun:
    def __init__(self, deps: Deps, account_id: str, feature: features.Feature,
                 generation: int, job_try: int) -> None:
        self.deps = deps
        self.account_id = account_id
        self.feature = feature
        self.generation = generation
        self.job_try = job_try
        self.records_written = 0
        self.api_calls = 0
        self.epoch = 0

    async def run(self) -> dict[str, Any]:
        bound = log.bind(account_id=self.account_id, feature=self.feature.name)
        try:
            snap = await self._snapshot()
            await self._set_state(status="running", started_at=utcnow())
            connector = await self._connector(snap)
            try:
                await self._sync(connector, snap)
            finally:
                connector.close()
            await derived.refresh(self.deps.store, self.account_id, self.generation,
                                  self.feature.name, self.epoch)
        except Skip as why:
            bound.info("sync_skipped", reason=str(why))
            return {"outcome": "skipped", "reason": str(why)}
        except (accounts.FencedError, keys.KeyShreddedError):
            bound.info("sync_fenced")
            return {"outcome": "fenced"}
        except GoogleError as exc:
            return await self._failed(exc, bound)
        await self._set_state(status="ok", error_category=None, last_error=None,
                              last_synced_at=utcnow())
        bound.info("sync_done", records=self.records_written, api_calls=self.api_calls)
        await watches.after_sync(self.deps, self.account_id, self.feature.name, self.generation)
        return {"outcome": "ok", "records": self.records_written, "api_calls": self.api_calls}

    async def _snapshot(self) -> Snapshot:
        master = self.deps.settings.master_key
        async with self.deps.sessions() as session:
            account = await session.get(Account, self.account_id)
            if account is None or account.status != accounts.ACTIVE:
                raise Skip("account not active")
            if account.generation != self.generation:
                raise Skip("account generation moved on")
            granted = frozenset(account.granted_scopes.split())
            if self.feature.scope not in granted:
                raise Skip("feature scope not granted")
            state = await session.get(SyncState, (self.account_id, self.feature.name))
            grant = await accounts.grant(session, master, account)
        if state is None:
            raise Skip("no sync state")
        return Snapshot(self.generation, grant.refresh_token, granted, state.stage,
                        state.cursor, state.page_token, state.epoch)

    async def _connector(self, snap: Snapshot) -> Connector:
        token = await oauth.access_token(self.deps.oauth, snap.refresh_token, self.feature.scope)
        budget = quota.Budget(self.deps.limiter, self.account_id)
        return registry.CONNECTORS[self.feature.name](token.token, self.deps, budget)

    async def _sync(self, connector: Connector, snap: Snapshot) -> None:
        if snap.stage == "incremental" and snap.cursor:
            try:
                await self._incremental(connector, snap.cursor, snap.epoch)
                return
            except CursorExpiredError:
                log.info("cursor_expired", account_id=self.account_id, feature=self.feature.name)
                await self._full(connector, None, snap.epoch + 1)
                return
        resuming = snap.page_token is not None and snap.stage == "full"
        await self._full(connector, snap.page_token if resuming else None,
                         snap.epoch if resuming else snap.epoch + 1)

    async def _full(self, connector: Connector, page_token: str | None, epoch: int) -> None:
        """Every item; then delete what this full sync did not see."""
        self.epoch = epoch
        await self._set_state(stage="full", epoch=epoch)
        cursor: str | None = None
        async for fetched in connector.full(page_token):
            cursor = fetched.next_cursor or cursor
            await self._write(fetched, epoch, {"page_token": fetched.next_page_token})
        now = utcnow()
        await self.deps.store.delete_stale(
            self.account_id, self.generation, self.feature, epoch=epoch,
            state={"stage": "incremental" if cursor else "full", "cursor": cursor,
                   "page_token": None, "full_synced_at": now})

    async def _incremental(self, connector: Connector, cursor: str, epoch: int) -> None:
        self.epoch = epoch
        async for fetched in connector.incremental(cursor):
            state = {"cursor": fetched.next_cursor} if fetched.next_cursor else {}
            await self._write(fetched, epoch, state)

    async def _write(self, fetched: Any, epoch: int, state: dict[str, Any]) -> None:
        self.api_calls += fetched.api_calls
        self.records_written += len(fetched.page.upserts)
        await self.deps.store.write_page(self.account_id, self.generation, self.feature,
                                         fetched.page, epoch=epoch, state=state)
        metrics.RECORDS_SYNCED.labels(feature=self.feature.name).inc(len(fetched.page.upserts))

    async def _set_state(self, **values: Any) -> None:
        async with self.deps.sessions.begin() as session:
            await accounts.fence(session, self.account_id, self.generation)
            await session.execute(update(SyncState).where(
                SyncState.account_id == self.account_id,
                SyncState.feature == self.feature.name).values(**values))

    async def _failed(self, exc: GoogleError, bound: Any) -> dict[str, Any]:
        if isinstance(exc, TemporaryError):
            return await self._defer(exc, bound)
        bound.warning("sync_failed", category=str(exc.category), detail=exc.detail)
        status = "needs_permission" if isinstance(exc, PermissionLostError) else "error"
        try:
            await self._set_state(status=status, error_category=str(exc.category),
                                  last_error=exc.detail[:500])
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
            await grants.recheck(self.deps, self.account_id, snap.refresh_token)
        except Skip:
            return
        except RevokedError:
            await self._purge_revoked()

    async def _purge_revoked(self) -> None:
        """Google said the grant is dead: erase everything of this account."""
        async with self.deps.sessions() as session:
            account = await session.get(Account, self.account_id)
            subject = account.subject_hash if account else ""
        await erase.request(self.deps, [self.account_id], subject_hash=subject,
                            trigger="invalid_grant")
