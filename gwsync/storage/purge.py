"""Erasure, as a durable state machine: requested → revoking → shredded → deleted → verified.

An erasure of whole accounts does its first three steps in the transaction that records
it: the generation bump fences every in-flight sync, the grants are sealed under the
master key for revocation (so a Google outage never delays what follows), and the data
keys are destroyed — the data is unreadable from the moment the request is answered.
The rows go afterwards, in the erase job, which a crashed worker resumes.

A withdrawn feature's erasure destroys that feature's data key in the request's
transaction too (its records are encrypted under it, gwsync/storage/keys.py), so its
rows and every backup of them are unreadable at once; the account's own key and grant
still serve its other features. Records are also encrypted per retention period (the
month they expire in), so the retention sweep destroys the keys of months that are over
— every record under them has expired — before it deletes the rows.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, cast, delete, false, func, select, update
from sqlalchemy import Text as SqlText
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core.keyring import Keyring
from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.storage import accounts, crypto, keys, outbox
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import (
    AccessLog,
    Account,
    DataKey,
    Erasure,
    FeatureKey,
    Record,
    RecordCount,
    SyncState,
    WatchChannel,
    is_source_record,
)
from gwsync.storage.records import adjust_counts

STATES = ("requested", "revoking", "shredded", "deleted", "verified")
#: The database stores a whole-account erasure deletes from, by their account column.
ROW_STORES = {
    "records": Record.account_id,
    "sync_states": SyncState.account_id,
    "access_log": AccessLog.account_id,
    "watch_channels": WatchChannel.account_id,
    "data_keys": DataKey.account_id,
    "feature_keys": FeatureKey.account_id,
}


def is_whole(erasure: Erasure) -> bool:
    return not erasure.scope


async def begin(
    session: AsyncSession, ring: Keyring, targets: Sequence[Account], *, subject_hash: str,
    trigger: str, scope: dict[str, Any] | None = None, erasure_id: str | None = None,
) -> Erasure:
    """Record the erasure; for whole accounts also fence, seal the grants and shred.

    The caller commits, then enqueues the erase job. `erasure_id` is given only when a
    restored database replays an erasure it missed (gwsync/storage/restore.py).
    """
    now = rfc3339(utcnow())
    erasure = Erasure(
        id=erasure_id or str(uuid.uuid4()), subject_hash=subject_hash, trigger=trigger,
        state="requested",
        account_ids=[a.id for a in targets], scope=scope or {}, steps={"requested": now},
        counts={}, verification={}, requested_at=utcnow(), revocation="not_applicable",
    )
    if "expired_before" not in erasure.scope:
        for account in targets:
            account.generation += 1  # fences in-flight syncs from this commit on
    if is_whole(erasure):
        await _seal_and_shred(session, ring, erasure, targets, now)
    elif "features" in erasure.scope:
        shredded = await keys.destroy_features(session, erasure.account_ids,
                                               erasure.scope["features"])
        erasure.counts = {"feature_keys": shredded}
        erasure.steps = {**erasure.steps, "shredded": now}
    elif "expired_before" in erasure.scope:
        cutoff = datetime.fromisoformat(erasure.scope["expired_before"].replace("Z", "+00:00"))
        erasure.counts = {"period_keys": await keys.destroy_periods(
            session, erasure.account_ids, cutoff)}
    session.add(erasure)
    await session.flush()
    return erasure


async def _seal_and_shred(
    session: AsyncSession, ring: Keyring, erasure: Erasure, targets: Sequence[Account],
    now: str | None,
) -> None:
    tokens = []
    for account in targets:
        account.status = accounts.ERASING
        try:
            tokens.append((await accounts.grant(session, ring, account)).refresh_token)
        except keys.KeyShreddedError:
            pass  # already shredded by an earlier erasure
    if tokens:
        erasure.revoke_ciphertext = crypto.seal(ring, f"revoke:{erasure.id}",
                                                json.dumps(tokens).encode())
        erasure.revocation = "pending"
    ids = [a.id for a in targets]
    shredded = (await session.execute(delete(DataKey).where(DataKey.account_id.in_(ids))))
    await session.execute(delete(FeatureKey).where(FeatureKey.account_id.in_(ids)))
    await session.execute(update(Account).where(Account.id.in_(ids))
                          .values(grant_ciphertext=None))
    shredded_keys: int = shredded.rowcount or 0  # type: ignore[attr-defined]  # DML gives a CursorResult
    erasure.counts = {"data_keys": shredded_keys, "grants_sealed": len(tokens)}
    erasure.steps = {**erasure.steps, "revoking": now, "shredded": now}
    erasure.state = "shredded"


def sealed_tokens(ring: Keyring, erasure: Erasure) -> list[str]:
    if erasure.revoke_ciphertext is None:
        return []
    tokens: list[str] = json.loads(
        crypto.unseal(ring, f"revoke:{erasure.id}", erasure.revoke_ciphertext))
    return tokens


async def advance(sessions: SessionFactory, erasure_id: str, state: str | None,
                  **changes: Any) -> Erasure:
    """Save a step (`state`, timed in `steps`) and any other changes, in one transaction."""
    async with sessions.begin() as session:
        erasure = await session.get(Erasure, erasure_id)
        if erasure is None:
            raise LookupError(erasure_id)
        if state is not None:
            erasure.state = state
            erasure.steps = {**erasure.steps, state: rfc3339(utcnow())}
        for name, value in changes.items():
            setattr(erasure, name, value)
        if state == "verified":  # announced in the transaction that records it
            await outbox.release(session, erasure_id)
        return erasure


def _record_filter(erasure: Erasure) -> ColumnElement[bool]:
    ids = Record.account_id.in_(erasure.account_ids)
    if "features" in erasure.scope:
        return and_(ids, Record.feature.in_(erasure.scope["features"]))
    if "expired_before" in erasure.scope:
        cutoff = datetime.fromisoformat(erasure.scope["expired_before"].replace("Z", "+00:00"))
        return and_(ids, Record.expires_at < cutoff)
    return ids if erasure.account_ids else false()


async def delete_rows(sessions: SessionFactory, erasure: Erasure) -> dict[str, int]:
    """Delete what the erasure covers; whole accounts are left as tombstones."""
    async with sessions.begin() as session:
        if not is_whole(erasure):
            await _uncount(session, erasure)
            result = await session.execute(delete(Record).where(_record_filter(erasure)))
            await _reset_features(session, erasure)
            return {"records": result.rowcount or 0}  # type: ignore[attr-defined]  # DML gives a CursorResult
        await session.execute(delete(RecordCount).where(
            RecordCount.account_id.in_(erasure.account_ids)))
        counts = {}
        for name, column in ROW_STORES.items():
            result = await session.execute(
                delete(column.table).where(column.in_(erasure.account_ids)))
            counts[name] = result.rowcount or 0  # type: ignore[attr-defined]  # DML gives a CursorResult
        counts["app_webhooks"] = await outbox.forget_accounts(session, erasure.account_ids,
                                                              erasure.id)
        await session.execute(update(Account).where(Account.id.in_(erasure.account_ids)).values(
            status=accounts.ERASED, user_id=None, grant_ciphertext=None, granted_scopes="",
            token_prefix_hash=None, token_sha512x2=None, google_sub_hash=None))
    return counts


async def _uncount(session: AsyncSession, erasure: Erasure) -> None:
    """Take what a partial erasure deletes off the record counts (it reads only those rows)."""
    rows = await session.execute(
        select(Record.account_id, Record.feature, func.count())
        .where(_record_filter(erasure), is_source_record())
        .group_by(Record.account_id, Record.feature))
    by_account: dict[str, dict[str, int]] = {}
    for account_id, feature, count in rows.all():
        by_account.setdefault(account_id, {})[feature] = -int(count)
    for account_id, deltas in by_account.items():
        await adjust_counts(session, account_id, deltas)


async def _reset_features(session: AsyncSession, erasure: Erasure) -> None:
    """A withdrawn feature starts from nothing if it is ever granted again."""
    if "features" not in erasure.scope:
        return
    await session.execute(update(SyncState).where(
        SyncState.account_id.in_(erasure.account_ids),
        SyncState.feature.in_(erasure.scope["features"]),
    ).values(cursor=None, page_token=None, stage="full", status="needs_permission"))


async def recount(sessions: SessionFactory, erasure: Erasure) -> dict[str, int]:
    """Count what is left of what the erasure covers (all zero when it worked)."""
    async with sessions() as session:
        if not is_whole(erasure):
            left = await session.scalar(
                select(func.count()).select_from(Record).where(_record_filter(erasure)))
            return {"records": int(left or 0)}
        ids = erasure.account_ids
        counts = {
            name: int(await session.scalar(
                select(func.count()).select_from(column.table).where(column.in_(ids))) or 0)
            for name, column in ROW_STORES.items()
        }
        counts["app_webhooks"] = await outbox.count_left(session, ids, erasure.id)
        for name, column in (("grants", Account.grant_ciphertext),
                             ("identified_accounts", Account.user_id)):
            counts[name] = int(await session.scalar(select(func.count()).select_from(Account)
                                                    .where(Account.id.in_(ids),
                                                           column.is_not(None))) or 0)
    return counts


async def erasures_of(session: AsyncSession, account: Account,
                      limit: int | None = None) -> list[Erasure]:
    """The erasures naming this account, newest first, whoever asked for them.

    An erasure names its accounts in a JSON list and its subject by hash; the hash (indexed)
    narrows the search, a text match on the quoted id finds the candidates on SQLite and
    PostgreSQL alike, and the list itself decides.
    """
    query = (select(Erasure)
             .where(Erasure.subject_hash == account.subject_hash,
                    cast(Erasure.account_ids, SqlText).contains(f'"{account.id}"', autoescape=True))
             .order_by(Erasure.requested_at.desc(), Erasure.id).limit(limit))
    return [e for e in await session.scalars(query) if account.id in e.account_ids]


def receipt(erasure: Erasure) -> dict[str, Any]:
    """What an erasure did and how it was checked; never names the person."""
    return {
        "erasure_id": erasure.id,
        "subject": erasure.subject_hash,
        "trigger": erasure.trigger,
        "scope": erasure.scope or {"accounts": "whole"},
        "state": erasure.state,
        "accounts": len(erasure.account_ids),
        "steps": erasure.steps,
        "counts": erasure.counts,
        "revocation": erasure.revocation,
        "verification": erasure.verification,
        "requested_at": rfc3339(erasure.requested_at),
        "completed_at": rfc3339(erasure.completed_at),
    }
