"""The erase job: finish what an erasure request began, until it is verified.

The request already fenced, sealed and shredded (see storage/purge.py); the job revokes
the grants at Google, deletes every row and Redis key, and re-counts. Each step is saved
before the next and is safe to repeat. The job holds a lease while it runs, so the
recovery cron can tell a dead worker's erasure from a running one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.connectors import oauth
from gwsync.connectors.errors import TemporaryError
from gwsync.core import logs
from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.domain import features
from gwsync.storage import accounts, purge
from gwsync.storage.db import flush_residue
from gwsync.storage.models import Account, Erasure
from gwsync.tasks import watches
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.erase")
#: How often the erase job looks whether the account's aborted syncs have ended.
STOP_POLL_S = 0.05


async def request(
    deps: Deps, account_ids: Sequence[str], *, subject_hash: str, trigger: str,
    scope: dict[str, Any] | None = None, requested_by_job: str | None = None,
) -> str:
    """Begin an erasure and queue its job. Returns the erasure id.

    `requested_by_job`: the id of the job asking (a sync told the grant is dead), which
    ends by itself and must not be aborted in the middle of asking.

    When this returns, a whole-account erasure has already fenced the accounts and
    destroyed their data keys, and their running jobs have been told to stop.
    """
    async with deps.sessions.begin() as session:
        erasure = await begin(deps, session, account_ids, subject_hash, trigger, scope)
    await start(deps, erasure, keep=requested_by_job)
    return erasure.id


async def disconnect(deps: Deps, account_id: str, subject_hash: str) -> tuple[str | None, bool]:
    """Erase the account, unless an erasure of it has begun: then answer with that one.

    Returns the erasure id (None if the account is gone and no erasure names it) and
    whether this call began it. The account's row lock is taken before its status is
    read, so of concurrent DELETEs one begins the erasure and the others find it.
    """
    async with deps.sessions.begin() as session:
        await accounts.lock(session, [account_id])
        account = await session.get(Account, account_id)
        if account is None or account.status != accounts.ACTIVE:
            found = [] if account is None else await purge.erasures_of(session, account)
            whole = [e for e in found if purge.is_whole(e)]
            return (whole[0].id if whole else None), False
        erasure = await begin(deps, session, [account_id], subject_hash, "disconnect", None)
    await start(deps, erasure)
    return erasure.id, True


async def begin(
    deps: Deps, session: AsyncSession, account_ids: Sequence[str], subject_hash: str,
    trigger: str, scope: dict[str, Any] | None = None,
) -> Erasure:
    """Begin an erasure in the caller's transaction; `start` it once that commits.

    The Redis fence comes first, before anything else of the erasure: from then on no job
    of the accounts sends Google another request (gwsync/tasks/liveness.py). If the
    transaction fails, the fence stays until it expires — a failed erasure is retried by
    whoever asked, and stopping syncs meanwhile is the safe side. The ledger entry is
    committed at once, outside this transaction, so a restore replays it.
    """
    if scope is None and account_ids:
        await deps.queue.fence_erased(account_ids, deps.settings.stuck_after_s)
    await accounts.lock(session, account_ids)  # one erasure of an account at a time
    found = [await session.get(Account, i) for i in account_ids]
    targets = [a for a in found if a is not None and a.status != accounts.ERASED]
    erasure = await purge.begin(session, deps.keyring, targets,
                                subject_hash=subject_hash, trigger=trigger, scope=scope)
    if deps.ledger is not None and erasure.account_ids:
        await deps.ledger.record(erasure)
    await _announce(deps, session, erasure, targets)
    return erasure


def revoked_at_google(trigger: str) -> bool:
    """Google said the grant is gone: `invalid_grant`, or a Cross-Account Protection event."""
    return trigger == "invalid_grant" or trigger.startswith("risc_")


async def _announce(deps: Deps, session: AsyncSession, erasure: Erasure,
                    targets: Sequence[Account]) -> None:
    """The erasure's events, in its first transaction: `account.revoked` now, and
    `erasure.verified` held until the transaction that verifies it (the user id it names
    is gone from the account by then). Retention sweeps are routine and announce nothing."""
    if erasure.trigger == "retention":
        return
    data: dict[str, Any] = {"trigger": erasure.trigger, "whole_account": purge.is_whole(erasure)}
    if "features" in erasure.scope:
        data["features"] = list(erasure.scope["features"])
    for account in targets:
        if revoked_at_google(erasure.trigger):
            await deps.outbox.add(session, "account.revoked", account.id, account.user_id,
                                  erasure_id=erasure.id, data={"reason": erasure.trigger})
        await deps.outbox.add(session, "erasure.verified", account.id, account.user_id,
                              erasure_id=erasure.id, held=True, data=data)


async def start(deps: Deps, erasure: Erasure, keep: str | None = None) -> None:
    """After `begin` committed: stop the accounts' running jobs (but `keep`, the job
    asking), then queue the erasure's work."""
    if erasure.scope is None:
        for account_id in erasure.account_ids:
            await deps.queue.abort_running(account_id, keep=keep)
    await deps.queue.enqueue_erasure(erasure.id)
    log.info("erasure_requested", erasure_id=erasure.id, trigger=erasure.trigger,
             accounts=len(erasure.account_ids), partial=bool(erasure.scope))


#: Deletion passes one erase job makes before it leaves an erasure it cannot verify to the
#: cron (which resumes it a lease later, and the overdue alert names it).
DELETION_PASSES = 2


async def erase(ctx: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    deps: Deps = ctx["deps"]
    if not isinstance(erasure_id, str):
        log.warning("bad_job_args", job="erase")
        return {"outcome": "bad_args"}
    async with deps.queue.lease(f"erasure:{erasure_id}", deps.settings.erasure_lease_s):
        return await _finish(deps, erasure_id)


async def _finish(deps: Deps, erasure_id: str) -> dict[str, Any]:
    async with deps.sessions() as session:
        erasure = await session.get(Erasure, erasure_id)
    if erasure is None:
        log.warning("erasure_unknown", erasure_id=erasure_id)
        return {"outcome": "unknown"}
    if erasure.revocation == "pending":
        await watches.stop_for_erasure(deps, erasure)  # needs the grants: before revoking
        erasure = await revoke(deps, erasure)
    if erasure.state != "verified":
        erasure = await _delete_until_nothing_is_left(deps, erasure)
        if erasure.state != "verified":
            return {"outcome": "not_verified"}
        await _resume_remaining_features(deps, erasure)
        await flush_residue(deps.engine)  # the deleted rows' pages out of SQLite's WAL
    log.info("erasure_verified", erasure_id=erasure_id, accounts=len(erasure.account_ids),
             revocation=erasure.revocation)
    return {"outcome": "verified", "revocation": erasure.revocation}


async def _delete_until_nothing_is_left(deps: Deps, erasure: Erasure) -> Erasure:
    """Delete, then re-count; "verified" is recorded only when the re-count finds nothing,
    since the receipt and the app's `erasure.verified` say so. What a re-count still finds
    (a key a late call re-created, a row a stopped sync wrote) is deleted once more; if it
    is still there, the erasure keeps its state and the failed check, and the cron resumes
    it (docs/architecture.md §6) — an unverified erasure is never reported as done."""
    verification: dict[str, Any] = {}
    for _ in range(DELETION_PASSES):
        if erasure.state != "deleted" or verification:
            erasure = await _delete(deps, erasure)
        verification = await _verify(deps, erasure)
        if verification["ok"]:
            return await purge.advance(deps.sessions, erasure.id, "verified",
                                       verification=verification, completed_at=utcnow())
    left = sorted(kind for kind, n in verification["remaining"].items() if n)
    log.error("erasure_not_verified", erasure_id=erasure.id, remaining=left)
    return await purge.advance(deps.sessions, erasure.id, None, verification=verification)


async def _delete(deps: Deps, erasure: Erasure) -> Erasure:
    """One deletion pass, counted: a later pass adds what it found to the first's counts."""
    again, found = erasure.state == "deleted", await _delete_everything(deps, erasure)
    counts = dict(erasure.counts)
    for kind, n in found.items():
        counts[kind] = counts.get(kind, 0) + n if again else n
    return await purge.advance(deps.sessions, erasure.id, "deleted", counts=counts)


async def revoke(deps: Deps, erasure: Erasure) -> Erasure:
    """Try each sealed grant once; forget them once Google has answered for all."""
    outcomes = []
    for token in purge.sealed_tokens(deps.keyring, erasure):
        try:
            outcomes.append(await oauth.revoke(deps.oauth, token, deps.http))
        except TemporaryError as exc:
            log.warning("revoke_deferred", erasure_id=erasure.id, detail=exc.detail)
            return await purge.advance(deps.sessions, erasure.id, None,
                                       last_error=exc.detail[:200])
    outcome = "revoked" if "revoked" in outcomes else "already_invalid"
    steps = {**erasure.steps, "revoked": rfc3339(utcnow())}
    counts = {**erasure.counts, "grants_revoked": outcomes.count("revoked")}
    return await purge.advance(deps.sessions, erasure.id, None, revocation=outcome,
                               revoke_ciphertext=None, steps=steps, counts=counts,
                               last_error=None)


async def _delete_everything(deps: Deps, erasure: Erasure) -> dict[str, int]:
    counts = await purge.delete_rows(deps.sessions, erasure)
    if not purge.is_whole(erasure):
        return counts
    counts.pop("data_keys", None)  # destroyed (and counted) when the erasure began
    counts["queued_jobs"] = counts["redis_keys"] = 0
    for account_id in erasure.account_ids:
        await _until_stopped(deps, account_id)
        jobs, redis_keys = await deps.queue.drop_account(account_id)
        counts["queued_jobs"] += jobs
        counts["redis_keys"] += redis_keys
    return counts


async def _until_stopped(deps: Deps, account_id: str) -> None:
    """Wait until no sync of the account holds its lock: the aborted runs have ended (or a
    paused holder's lock lapsed, and the fence stops it if it wakes), so "verified" means
    none is still running and none re-creates a key after the keys are deleted."""
    deadline = time.monotonic() + deps.settings.sync_lock_s + 1.0
    names = list(features.FEATURES)
    while time.monotonic() < deadline:
        if not any([await deps.queue.locked(account_id, n) for n in names]):
            return
        await asyncio.sleep(STOP_POLL_S)
    log.warning("erasure_sync_still_locked", account_id=account_id)


async def _verify(deps: Deps, erasure: Erasure) -> dict[str, Any]:
    remaining = await purge.recount(deps.sessions, erasure)
    if purge.is_whole(erasure):
        ids = erasure.account_ids
        remaining["queued_jobs"] = sum([len(await deps.queue.queued_jobs(a)) for a in ids])
        remaining["redis_keys"] = sum([len(await deps.queue.account_keys(a)) for a in ids])
    return {"remaining": remaining, "ok": not any(remaining.values()),
            "checked_at": rfc3339(utcnow())}


async def _resume_remaining_features(deps: Deps, erasure: Erasure) -> None:
    """A partial erasure fenced the account's in-flight syncs: queue its features again."""
    if "features" not in erasure.scope:
        return
    async with deps.sessions() as session:
        found = [await session.get(Account, i) for i in erasure.account_ids]
    for account in found:
        if account is None or account.status != accounts.ACTIVE:
            continue
        granted = frozenset(account.granted_scopes.split())
        for feature in features.FEATURES.values():
            if feature.scope in granted:
                await deps.queue.enqueue_sync(account.id, feature.name, account.generation)
