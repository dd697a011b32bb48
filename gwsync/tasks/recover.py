"""Crons that make erasure and retention durable whatever crashes.

- `resume_erasures` re-queues erasures whose worker died (no live lease).
- `retry_revocations` keeps asking Google to revoke grants it could not reach before.
- `sweep_retention` erases records past their `expires_at`, with a receipt like any other.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gwsync.core import logs
from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.storage import outbox
from gwsync.storage.models import Account, Erasure, Record
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps

log = logs.get("gwsync.recover")


async def resume_erasures(ctx: dict[str, Any]) -> int:
    """Re-queue erasures nobody leases. One requested less than a lease ago may be a job a
    live worker has just picked up and not yet leased: freeing its in-progress mark would
    start a second run of the same job beside it, so it waits for the next look."""
    deps: Deps = ctx["deps"]
    settled = utcnow() - timedelta(seconds=deps.settings.erasure_lease_s)
    async with deps.sessions() as session:
        pending = list(await session.scalars(select(Erasure.id).where(
            Erasure.state != "verified", Erasure.requested_at < settled)))
    resumed = 0
    for erasure_id in pending:
        if not await deps.queue.leased(f"erasure:{erasure_id}"):
            resumed += await deps.queue.requeue_erasure(erasure_id)
    if resumed:
        log.info("erasures_resumed", count=resumed)
    return resumed


async def retry_revocations(ctx: dict[str, Any]) -> int:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        pending = list(await session.scalars(select(Erasure).where(
            Erasure.state == "verified", Erasure.revocation == "pending")))
    done = 0
    for erasure in pending:
        done += (await erase.revoke(deps, erasure)).revocation != "pending"
    return done


async def sweep_retention(ctx: dict[str, Any]) -> int:
    """One partial erasure per account holding records past retention; and the bodies
    of given-up app webhooks past their keep window go (they name the app's user)."""
    deps: Deps = ctx["deps"]
    cutoff = utcnow()
    await outbox.forget_given_up(deps.sessions, cutoff - timedelta(
        seconds=deps.settings.app_webhook_keep_failed_s))
    async with deps.sessions() as session:
        rows = (await session.execute(
            select(Record.account_id, Account.subject_hash).distinct()
            .join(Account, Account.id == Record.account_id)
            .where(Record.expires_at < cutoff))).all()
    for account_id, subject in rows:
        await erase.request(deps, [account_id], subject_hash=subject, trigger="retention",
                            scope={"expired_before": rfc3339(cutoff)})
    return len(rows)
