"""The erase job: drive one erasure through its states until it is verified.

Each step is saved before the next begins and is safe to repeat, so a worker killed
mid-way leaves an erasure that the next run (or the recovery cron) finishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arq import Retry

from gwsync.connectors import oauth
from gwsync.connectors.errors import TemporaryError
from gwsync.storage import accounts, keys, purge
from gwsync.storage.models import Account, Erasure
from gwsync.tasks.retry import backoff
from gwsync.timeutil import rfc3339, utcnow
from gwsync.worker import logging
from gwsync.worker.deps import Deps

log = logging.get("gwsync.erase")
REVOKE_TRIES = 8


async def request(
    deps: Deps, account_ids: Sequence[str], *, subject_hash: str, trigger: str
) -> str:
    """Begin an erasure (fencing at once) and queue its job. Returns the erasure id."""
    async with deps.sessions.begin() as session:
        found = [await session.get(Account, i) for i in account_ids]
        targets = [a for a in found if a is not None and a.status != accounts.ERASED]
        erasure = await purge.begin(session, targets, subject_hash=subject_hash,
                                    trigger=trigger)
    await deps.queue.enqueue_erasure(erasure.id)
    log.info("erasure_requested", erasure_id=erasure.id, trigger=trigger,
             accounts=len(erasure.account_ids))
    return erasure.id


async def erase(ctx: dict[str, Any], erasure_id: str) -> dict[str, Any]:
    deps: Deps = ctx["deps"]
    if not isinstance(erasure_id, str):
        log.warning("bad_job_args", job="erase")
        return {"outcome": "bad_args"}
    async with deps.sessions() as session:
        erasure = await session.get(Erasure, erasure_id)
    if erasure is None:
        log.warning("erasure_unknown", erasure_id=erasure_id)
        return {"outcome": "unknown"}
    ids = list(erasure.account_ids)
    counts = dict(erasure.counts)
    if erasure.state in ("requested", "revoking"):
        await purge.advance(deps.sessions, erasure_id, "revoking")
        counts["grants_revoked"] = await _revoke_all(deps, ids, ctx.get("job_try", 1))
        counts["data_keys"] = await purge.shred(deps.sessions, ids)
        await purge.advance(deps.sessions, erasure_id, "shredded", counts=counts)
        erasure.state = "shredded"
    if erasure.state == "shredded":
        counts.update(await _delete_everything(deps, ids))
        await purge.advance(deps.sessions, erasure_id, "deleted", counts=counts)
        erasure.state = "deleted"
    if erasure.state == "deleted":
        verification = await _verify(deps, ids)
        await purge.advance(deps.sessions, erasure_id, "verified", verification=verification,
                            completed_at=utcnow())
    log.info("erasure_verified", erasure_id=erasure_id, accounts=len(ids))
    return {"outcome": "verified"}


async def _revoke_all(deps: Deps, account_ids: Sequence[str], job_try: int) -> int:
    """Revoke each grant at Google; retried until Google confirms or says it is dead."""
    revoked = 0
    for account_id in account_ids:
        async with deps.sessions() as session:
            account = await session.get(Account, account_id)
            try:
                grant = await accounts.grant(session, deps.settings.master_key, account)
            except keys.KeyShreddedError:
                continue  # shredded by an earlier run of this job: revoked then.
        try:
            outcome = await oauth.revoke(deps.oauth, grant.refresh_token, deps.http)
        except TemporaryError as exc:
            if job_try >= REVOKE_TRIES:
                log.error("revoke_gave_up", account_id=account_id, detail=exc.detail)
                continue
            raise Retry(defer=backoff(deps.settings, job_try)) from None
        revoked += outcome == "revoked"
        log.info("grant_revoked", account_id=account_id, outcome=outcome)
    return revoked


async def _delete_everything(deps: Deps, account_ids: Sequence[str]) -> dict[str, int]:
    counts = await purge.delete_rows(deps.sessions, account_ids)
    counts["queued_jobs"] = counts["redis_keys"] = 0
    for account_id in account_ids:
        jobs, redis_keys = await deps.queue.drop_account(account_id)
        counts["queued_jobs"] += jobs
        counts["redis_keys"] += redis_keys
    counts.pop("data_keys", None)  # destroyed (and counted) by the shred step
    return counts


async def _verify(deps: Deps, account_ids: Sequence[str]) -> dict[str, Any]:
    remaining = await purge.recount(deps.sessions, account_ids)
    remaining["queued_jobs"] = sum([len(await deps.queue.queued_jobs(a)) for a in account_ids])
    remaining["redis_keys"] = sum([len(await deps.queue.account_keys(a)) for a in account_ids])
    return {"remaining": remaining, "ok": not any(remaining.values()),
            "checked_at": rfc3339(utcnow())}
