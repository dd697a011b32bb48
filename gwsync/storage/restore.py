"""After a restore: re-apply every erasure the restored database missed, then prove it.

An erasure the restored database missed is one in the ledger (gwsync/storage/ledger.py)
whose row the database lacks: the backup was taken before it. Replaying it is the
erasure itself, begun again under its own id (`gwsync.storage.purge.begin`: fence,
seal the grant for revocation, destroy the data keys — the account's or the withdrawn
features') and its rows deleted at once; the workers then revoke the grant at Google
and verify it as for any erasure. Whole-account erasures the database does hold are
re-checked too, and finished if a key survived (an account never comes back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core.keyring import Keyring
from gwsync.storage import accounts, keys, purge
from gwsync.storage.db import SessionFactory
from gwsync.storage.ledger import Entry, Ledger
from gwsync.storage.models import Account, DataKey, Erasure, FeatureKey, Record

TRIGGER = "restore_replay"


@dataclass
class Outcome:
    erasure_id: str
    scope: str
    #: replayed | held (the database has it) | nothing_restored (no account of it)
    action: str
    counts: dict[str, int] = field(default_factory=dict)
    #: What of it can still be read, by store: empty when the erasure holds.
    readable: dict[str, int] = field(default_factory=dict)


def describe(scope: dict[str, Any]) -> str:
    if "features" in scope:
        return "features " + ",".join(scope["features"])
    if "expired_before" in scope:
        return f"expired before {scope['expired_before']}"
    return "whole accounts"


async def run(sessions: SessionFactory, ring: Keyring, ledger: Ledger, *,
              apply: bool = True) -> list[Outcome]:
    """Each ledger entry's outcome; with `apply` false, only what is still readable."""
    outcomes = []
    for entry in await ledger.all():
        outcome = Outcome(entry.erasure_id, describe(entry.scope), "held")
        async with sessions() as session:
            held = await session.get(Erasure, entry.erasure_id) is not None
        if apply and (not held or not entry.scope):
            outcome.action, outcome.counts = await _reapply(sessions, ring, entry, held)
        elif not held:
            outcome.action = "missed"
        async with sessions() as session:
            outcome.readable = await readable(session, entry)
        outcomes.append(outcome)
    return outcomes


async def _reapply(sessions: SessionFactory, ring: Keyring, entry: Entry,
                   held: bool) -> tuple[str, dict[str, int]]:
    if held:  # a whole erasure the database has: finish it if anything of it survived
        async with sessions() as session:
            if not any((await readable(session, entry)).values()):
                return "held", {}
    async with sessions.begin() as session:
        found = [await session.get(Account, i) for i in entry.account_ids]
        targets = [a for a in found
                   if a is not None and (held or a.status != accounts.ERASED)]
        if not targets and held is False:
            return "nothing_restored", {}
        if held:
            erasure = await session.get(Erasure, entry.erasure_id)
            assert erasure is not None
            await purge.begin(session, ring, targets, subject_hash=erasure.subject_hash,
                              trigger=TRIGGER, scope={}, erasure_id=None)
        else:
            erasure = await purge.begin(session, ring, targets, trigger=TRIGGER,
                                        subject_hash=targets[0].subject_hash,
                                        scope=entry.scope, erasure_id=entry.erasure_id)
    counts = {**erasure.counts, **await purge.delete_rows(sessions, erasure)}
    if not held:
        await purge.advance(sessions, erasure.id, "deleted", counts=counts)
    return "replayed", counts


def _covered(entry: Entry, column_account: Any, column_feature: Any) -> ColumnElement[bool]:
    ids = column_account.in_(entry.account_ids)
    if "features" in entry.scope:
        return and_(ids, column_feature.in_(entry.scope["features"]))
    return ids  # type: ignore[no-any-return]


async def _count(session: AsyncSession, model: Any, where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model).where(where))
               or 0)


async def readable(session: AsyncSession, entry: Entry) -> dict[str, int]:
    """What of the erasure's data a reader holding every key could still open."""
    at: datetime = entry.recorded_at
    if "expired_before" in entry.scope:
        cutoff = datetime.fromisoformat(entry.scope["expired_before"].replace("Z", "+00:00"))
        names = await session.execute(select(FeatureKey.feature).where(
            FeatureKey.account_id.in_(entry.account_ids)))
        return {"records": await _count(session, Record, and_(
            Record.account_id.in_(entry.account_ids), Record.expires_at < cutoff)),
            "period_keys": sum(keys.period_ends_by(n, cutoff) for n in names.scalars())}
    if "features" in entry.scope:  # the features may have been granted again since
        return {
            "feature_keys": await _count(session, FeatureKey, and_(
                FeatureKey.account_id.in_(entry.account_ids),
                keys.of_features(entry.scope["features"]), FeatureKey.created_at <= at)),
            "records": await _count(session, Record, and_(
                _covered(entry, Record.account_id, Record.feature), Record.fetched_at <= at)),
        }
    return {
        "data_keys": await _count(session, DataKey, DataKey.account_id.in_(entry.account_ids)),
        "feature_keys": await _count(session, FeatureKey,
                                     FeatureKey.account_id.in_(entry.account_ids)),
        "grants": await _count(session, Account, and_(Account.id.in_(entry.account_ids),
                                                      Account.grant_ciphertext.is_not(None))),
        "records": await _count(session, Record, Record.account_id.in_(entry.account_ids)),
    }
