"""Master key rotation: re-wrap every data key and re-seal every sealed grant under the
primary, online, in small batches, resumably; and say what each key still protects.

Online: every process already runs with the new ring (new key first, old key after it)
before `gwsync keys rotate` starts, so a row read before its re-wrap and one read after
both open. Each row is replaced by a compare-and-set on its old ciphertext: a key that an
erasure destroys meanwhile stays destroyed, a grant revoked meanwhile stays forgotten.
Resumable: the work is "every row not under the primary", so a crashed run is simply run
again. Pseudonyms do not depend on the master key (gwsync/core/keyring.py); only those
still in the bare SHA-256 form of before keyrings are re-computed, where their input is
still held (a live account's user id, its grant).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core import keyring
from gwsync.core.keyring import DecryptionError, Keyring
from gwsync.storage import accounts, crypto, keys, pseudonyms
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import Account, DataKey, Erasure, FeatureKey, PseudonymKey

#: What `status` counts per master key id; "legacy" names rows from before keyrings.
LEGACY = "legacy"
Progress = Callable[[int], None]


@dataclass
class Report:
    rewrapped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    #: Usage per key id after the run (`usage`).
    usage: dict[str, dict[str, int]] = field(default_factory=dict)


def _not_primary(column: Any, primary: str) -> ColumnElement[bool]:
    return or_(column.is_(None), column != primary)


async def usage(sessions: SessionFactory) -> dict[str, dict[str, int]]:
    """Master key id → what it still wraps or seals: data keys, feature keys, the
    pseudonym key, sealed grants awaiting revocation; plus legacy pseudonyms."""
    found: dict[str, dict[str, int]] = {}

    def add(key_id: str | None, what: str, count: int) -> None:
        slot = found.setdefault(key_id or LEGACY, {})
        slot[what] = slot.get(what, 0) + count

    async with sessions() as session:
        for table, what in ((DataKey, "data_keys"), (FeatureKey, "feature_keys"),
                            (PseudonymKey, "pseudonym_key")):
            rows = await session.execute(
                select(table.master_key_id, func.count()).group_by(table.master_key_id))
            for key_id, count in rows.all():
                add(key_id, what, int(count))
        for blob in await session.scalars(select(Erasure.revoke_ciphertext).where(
                Erasure.revoke_ciphertext.is_not(None))):
            add(keyring.sealed_key_id(blob or b""), "sealed_grants", 1)
        legacy = await session.scalar(select(func.count()).select_from(Account).where(
            Account.user_id.is_not(None), ~Account.subject_hash.contains(":")))
        if legacy:
            add(LEGACY, "bare_sha256_pseudonyms", int(legacy))
    return found


async def pending(sessions: SessionFactory, ring: Keyring) -> int:
    """How many rows `rotate` has left to do (for its progress bar)."""
    return sum(n for key_id, counts in (await usage(sessions)).items()
               if key_id != ring.primary_id for n in counts.values())


async def rotate(sessions: SessionFactory, ring: Keyring, *, batch: int = 200,
                 progress: Progress = lambda _n: None) -> Report:
    """Bring everything under the primary; safe to run again, and beside the service."""
    report = Report()
    for name, step in (("data_keys", _data_keys), ("feature_keys", _feature_keys),
                       ("pseudonym_key", _pseudonym_key), ("sealed_grants", _sealed_grants),
                       ("pseudonyms", _legacy_pseudonyms)):
        done = 0
        while True:
            count = await step(sessions, ring, batch, report.failed)
            if count == 0:
                break
            done += count
            progress(count)
        report.rewrapped[name] = done
    report.usage = await usage(sessions)
    return report


async def _data_keys(sessions: SessionFactory, ring: Keyring, batch: int,
                     failed: list[str]) -> int:
    async with sessions.begin() as session:
        rows = (await session.execute(
            select(DataKey.account_id, DataKey.master_key_id, DataKey.wrapped_key)
            .where(_not_primary(DataKey.master_key_id, ring.primary_id),
                   DataKey.account_id.not_in(failed or [""]))
            .order_by(DataKey.account_id).limit(batch))).all()
        for account_id, key_id, wrapped in rows:
            new_id, new_blob = _rewrap(ring, account_id, crypto.ACCOUNT, key_id, wrapped,
                                       failed, account_id)
            if new_blob is not None:
                await session.execute(update(DataKey).where(
                    DataKey.account_id == account_id, DataKey.wrapped_key == wrapped)
                    .values(wrapped_key=new_blob, master_key_id=new_id))
    return len(rows)


async def _feature_keys(sessions: SessionFactory, ring: Keyring, batch: int,
                        failed: list[str]) -> int:
    async with sessions.begin() as session:
        rows = (await session.execute(
            select(FeatureKey.account_id, FeatureKey.feature, FeatureKey.master_key_id,
                   FeatureKey.wrapped_key)
            .where(_not_primary(FeatureKey.master_key_id, ring.primary_id),
                   (FeatureKey.account_id + ":" + FeatureKey.feature).not_in(failed or [""]))
            .order_by(FeatureKey.account_id, FeatureKey.feature).limit(batch))).all()
        for account_id, feature, key_id, wrapped in rows:
            new_id, new_blob = _rewrap(ring, account_id, feature, key_id, wrapped, failed,
                                       f"{account_id}:{feature}")
            if new_blob is not None:
                await session.execute(update(FeatureKey).where(
                    FeatureKey.account_id == account_id, FeatureKey.feature == feature,
                    FeatureKey.wrapped_key == wrapped)
                    .values(wrapped_key=new_blob, master_key_id=new_id))
    return len(rows)


def _rewrap(ring: Keyring, account_id: str, purpose: str, key_id: str | None,
            wrapped: bytes, failed: list[str], name: str) -> tuple[str, bytes | None]:
    try:
        data_key = crypto.unwrap_key(ring, account_id, purpose, key_id, wrapped)
    except DecryptionError:
        failed.append(name)  # under a key the ring lacks: reported, never lost
        return "", None
    return crypto.wrap_key(ring, account_id, purpose, data_key)


async def _pseudonym_key(sessions: SessionFactory, ring: Keyring, _batch: int,
                         failed: list[str]) -> int:
    async with sessions.begin() as session:
        row = await session.scalar(select(PseudonymKey).where(
            PseudonymKey.master_key_id != ring.primary_id).with_for_update())
        if row is None or "pseudonym_key" in failed:
            return 0
        try:
            pseudonyms.rewrap(ring, row)
        except DecryptionError:
            failed.append("pseudonym_key")
        return 1


async def _sealed_grants(sessions: SessionFactory, ring: Keyring, batch: int,
                         failed: list[str]) -> int:
    async with sessions.begin() as session:
        rows = (await session.execute(select(Erasure.id, Erasure.revoke_ciphertext).where(
            Erasure.revoke_ciphertext.is_not(None), Erasure.id.not_in(failed or [""]))
            .order_by(Erasure.id))).all()
        todo = [(i, b) for i, b in rows
                if b is not None and keyring.sealed_key_id(b) != ring.primary_id][:batch]
        for erasure_id, blob in todo:
            label = f"revoke:{erasure_id}"
            try:
                fresh = ring.seal(label, ring.unseal(label, blob))
            except DecryptionError:
                failed.append(erasure_id)
                continue
            await session.execute(update(Erasure).where(
                Erasure.id == erasure_id, Erasure.revoke_ciphertext == blob)
                .values(revoke_ciphertext=fresh))
    return len(todo)


async def _legacy_pseudonyms(sessions: SessionFactory, ring: Keyring, batch: int,
                             failed: list[str]) -> int:
    """Re-compute bare SHA-256 pseudonyms of live accounts, and their erasures' subjects."""
    async with sessions.begin() as session:
        found = list(await session.scalars(select(Account).where(
            Account.user_id.is_not(None), ~Account.subject_hash.contains(":"),
            Account.id.not_in(failed or [""])).limit(batch).with_for_update()))
        for account in found:
            await _rehash(session, ring, account)
    return len(found)


async def _rehash(session: AsyncSession, ring: Keyring, account: Account) -> None:
    """A live account's pseudonyms from what it still holds: its user id and its grant
    (a bare `google_sub_hash` cannot be: `sub` is not kept; it is matched as it is)."""
    old = account.subject_hash
    account.subject_hash = accounts.subject_hash(account.user_id or "", ring)
    await session.execute(update(Erasure).where(Erasure.subject_hash == old)
                          .values(subject_hash=account.subject_hash))
    try:
        grant = await accounts.grant(session, ring, account)
    except (keys.KeyShreddedError, DecryptionError):
        return
    account.token_prefix_hash, account.token_sha512x2 = accounts.token_hashes(
        grant.refresh_token, ring)
