"""Erasure, as a durable state machine: requested → revoking → shredded → deleted → verified.

Beginning an erasure bumps each account's generation in the same transaction that
records the erasure, so from that commit on no in-flight sync can write. Every step is
idempotent and saved before the next, so a crashed worker resumes where it stopped.
The data key goes before the rows: from then on, every copy is unreadable.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.storage import accounts
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import AccessLog, Account, DataKey, Erasure, Record, SyncState
from gwsync.timeutil import rfc3339, utcnow

STATES = ("requested", "revoking", "shredded", "deleted", "verified")
#: The database stores an erasure deletes from, with how to find an account's rows.
ROW_STORES = {
    "records": Record.account_id,
    "sync_states": SyncState.account_id,
    "access_log": AccessLog.account_id,
    "data_keys": DataKey.account_id,
}


async def begin(
    session: AsyncSession, targets: Sequence[Account], *, subject_hash: str, trigger: str
) -> Erasure:
    """Fence the accounts and record the erasure (caller commits, then enqueues)."""
    now = utcnow()
    for account in targets:
        account.generation += 1
        account.status = accounts.ERASING
    erasure = Erasure(
        id=str(uuid.uuid4()), subject_hash=subject_hash, trigger=trigger, state="requested",
        account_ids=[a.id for a in targets], steps={"requested": rfc3339(now)},
        counts={}, verification={}, requested_at=now,
    )
    session.add(erasure)
    await session.flush()
    return erasure


async def advance(sessions: SessionFactory, erasure_id: str, state: str,
                  **changes: Any) -> None:
    """Save that the erasure reached `state` (with its counts so far)."""
    async with sessions.begin() as session:
        erasure = await session.get(Erasure, erasure_id)
        if erasure is None:
            raise LookupError(erasure_id)
        erasure.state = state
        erasure.steps = {**erasure.steps, state: rfc3339(utcnow())}
        for name, value in changes.items():
            setattr(erasure, name, value)


async def shred(sessions: SessionFactory, account_ids: Sequence[str]) -> int:
    """Destroy the data keys and the encrypted grants: the data is unreadable from here."""
    async with sessions.begin() as session:
        result = await session.execute(delete(DataKey).where(DataKey.account_id.in_(account_ids)))
        await session.execute(update(Account).where(Account.id.in_(account_ids))
                              .values(grant_ciphertext=None))
        return result.rowcount or 0


async def delete_rows(sessions: SessionFactory, account_ids: Sequence[str]) -> dict[str, int]:
    """Delete every row of the accounts and leave each account as a tombstone."""
    counts: dict[str, int] = {}
    async with sessions.begin() as session:
        for name, column in ROW_STORES.items():
            result = await session.execute(delete(column.table).where(column.in_(account_ids)))
            counts[name] = result.rowcount or 0
        await session.execute(update(Account).where(Account.id.in_(account_ids)).values(
            status=accounts.ERASED, user_id=None, grant_ciphertext=None, granted_scopes="",
            token_prefix_hash=None, token_sha512x2=None))
    return counts


async def recount(sessions: SessionFactory, account_ids: Sequence[str]) -> dict[str, int]:
    """Count what is left of the accounts in every database store (all zero when done)."""
    async with sessions() as session:
        counts = {
            name: int(await session.scalar(
                select(func.count()).select_from(column.table).where(column.in_(account_ids))
            ) or 0)
            for name, column in ROW_STORES.items()
        }
        counts["grants"] = int(await session.scalar(
            select(func.count()).select_from(Account).where(
                Account.id.in_(account_ids), Account.grant_ciphertext.is_not(None))) or 0)
        counts["identified_accounts"] = int(await session.scalar(
            select(func.count()).select_from(Account).where(
                Account.id.in_(account_ids), Account.user_id.is_not(None))) or 0)
    return counts


def receipt(erasure: Erasure) -> dict[str, Any]:
    """What an erasure did and how it was checked; never names the person."""
    return {
        "erasure_id": erasure.id,
        "subject": erasure.subject_hash,
        "trigger": erasure.trigger,
        "state": erasure.state,
        "accounts": len(erasure.account_ids),
        "steps": erasure.steps,
        "counts": erasure.counts,
        "verification": erasure.verification,
        "requested_at": rfc3339(erasure.requested_at),
        "completed_at": rfc3339(erasure.completed_at),
    }
