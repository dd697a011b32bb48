"""Crons that make erasure and retention durable whatever crashes.

- `resume_erasures` re-queues erasures whose worker died (no live lease).
- `retry_revocations` keeps asking Google to revoke grants it could not reach before.
- `sweep_retention` erases records past their `expires_at`, with a receipt like any other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gwsync.storage.models import Account, Erasure, Record
from gwsync.tasks import erase
from gwsync.timeutil import rfc3339, utcnow
from gwsync.worker import logging
from gwsync.worker.deps import Deps

log = logging.get("gwsync.recover")


async def resume_erasures(ctx: dict[str, Any]) -> int:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        pending = list(await session.scalars(
            select(Erasure.id).where(Erasure.state != "verified")))
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
    """One partial erasure per account holding records past retention."""
    deps: Deps = ctx["deps"]
    cutoff = utcnow()
    async with deps.sessions() as session:
        rows = (await session.execute(
            select(Record.account_id, Account.subject_hash).distinct()
            .join(Account, Account.id == Record.account_id)
            .where(Record.expires_at < cutoff))).all()
    for account_id, subject in rows:
        await erase.request(deps, [account_id], subject_hash=subject, trigger="retention",
                            scope={"expired_before": rfc3339(cutoff)})
    return len(rows)
