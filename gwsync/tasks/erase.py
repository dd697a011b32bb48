"""The erase job: finish what an erasure request began, until it is verified.

The request already fenced, sealed and shredded (see storage/purge.py); the job revokes
the grants at Google, deletes every row and Redis key, and re-counts. Each step is saved
before the next and is safe to repeat. The job holds a lease while it runs, so the
recovery cron can tell a dead worker's erasure from a running one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gwsync.connectors import features, oauth
from gwsync.connectors.errors import TemporaryError
from gwsync.storage import accounts, purge
from gwsync.storage.models import Account, Erasure
from gwsync.tasks import watches
from gwsync.timeutil import rfc3339, utcnow
from gwsync.worker import logging
from gwsync.worker.deps import Deps

log = logging.get("gwsync.erase")


async def request(
    deps: Deps, account_ids: Sequence[str], *, subject_hash: str, trigger: str,
    scope: dict[str, Any] | None = None,
) -> str:
    """Begin an erasure and queue its job. Returns the erasure id.

    When this returns, a whole-account erasure has already fenced the accounts and
    destroyed their data keys.
    """
    async with deps.sessions.begin() as session:
        found = [await session.get(Account, i) for i in account_ids]
        targets = [a for a in found if a is not None and a.status != accounts.ERASED]
        erasure = await purge.begin(session, deps.settings.master_key, targets,
                                    subject_hash=subject_hash, trigger=trigger, scope=scope)
    await deps.queue.enqueue_erasure(erasure.id)
    log.info("erasure_requested", erasure_id=erasure.id, trigger=trigger,
             accounts=len(erasure.account_ids), partial=bool(scope))
    return erasure.id


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
    if erasure.state not in ("deleted", "verified"):
        counts = {**erasure.counts, **await _delete_everything(deps, erasure)}
        erasure = await purge.advance(deps.sessions, erasure_id, "deleted", counts=counts)
    if erasure.state != "verified":
        erasure = await purge.advance(deps.sessions, erasure_id, "verified",
                                      verification=await _verify(deps, erasure),
                                      completed_at=utcnow())
        await _resume_remaining_features(deps, erasure)
    log.info("erasure_verified", erasure_id=erasure_id, accounts=len(erasure.account_ids),
             revocation=erasure.revocation)
    return {"outcome": "verified", "revocation": erasure.revocation}


async def revoke(deps: Deps, erasure: Erasure) -> Erasure:
    """Try each sealed grant once; forget them once Google has answered for all."""
    outcomes = []
    for token in purge.sealed_tokens(deps.settings.master_key, erasure):
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
        jobs, redis_keys = await deps.queue.drop_account(account_id)
        counts["queued_jobs"] += jobs
        counts["redis_keys"] += redis_keys
    return counts


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
