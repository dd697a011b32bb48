"""Data keys: one per account (its grant), one per feature and month of expiry of it (that
feature's records expiring that month).

Each is created when first needed and destroyed first when what it covers is erased:
an account's keys when the account is, a feature's key when its scope is withdrawn, so
or a month whose records have all expired, so every copy of what they encrypted, backups
included, is unreadable from then on. Keys
are stored wrapped by the keyring and name the master key that wrapped them.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core.keyring import Keyring
from gwsync.storage import crypto
from gwsync.storage.models import DataKey, FeatureKey


def period_key(feature: str, expires_at: datetime) -> str:
    """The name of the key a record is encrypted under: its feature and the month its
    retention ends in (`contacts@2026-12`)."""
    return f"{feature}@{expires_at:%Y-%m}"


def period_ends_by(name: str, cutoff: datetime) -> bool:
    """Whether every record under the key `name` has expired by `cutoff` (its month is over)."""
    _, sep, period = name.partition("@")
    if not sep:
        return False
    year, month = (int(p) for p in period.split("-"))
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return end <= cutoff


class KeyShreddedError(LookupError):
    """The account's data key is gone: its data can never be read or written again."""


async def create(session: AsyncSession, ring: Keyring, account_id: str) -> crypto.RowCipher:
    data_key = crypto.new_data_key()
    key_id, wrapped = crypto.wrap_key(ring, account_id, crypto.ACCOUNT, data_key)
    session.add(DataKey(account_id=account_id, wrapped_key=wrapped, master_key_id=key_id))
    return crypto.RowCipher(account_id, data_key)


async def cipher(session: AsyncSession, ring: Keyring, account_id: str) -> crypto.RowCipher:
    """The account's own cipher (its grant; records stored before per-feature keys)."""
    row = (await session.execute(
        select(DataKey.wrapped_key, DataKey.master_key_id)
        .where(DataKey.account_id == account_id))).first()
    if row is None:
        raise KeyShreddedError(account_id)
    return crypto.RowCipher(account_id, crypto.unwrap_key(
        ring, account_id, crypto.ACCOUNT, row.master_key_id, row.wrapped_key))


async def feature_ciphers(
    session: AsyncSession, ring: Keyring, account_id: str, features: Collection[str], *,
    create: bool,
) -> dict[str, crypto.RowCipher]:
    """A cipher per feature, falling back to the account's key for older rows.

    With `create`, a feature without a key gets one (a write); else the account's key
    stands in (a read of rows stored before per-feature keys)."""
    account = await cipher(session, ring, account_id)
    wanted = set(features)
    found = await _feature_rows(session, account_id, wanted)
    missing = wanted - set(found)
    if create and missing:
        await _insert_keys(session, ring, account_id, missing)
        found = await _feature_rows(session, account_id, wanted)
    ciphers = {name: account for name in wanted}
    for name, (key_id, wrapped) in found.items():
        data_key = crypto.unwrap_key(ring, account_id, name, key_id, wrapped)
        ciphers[name] = crypto.RowCipher(account_id, data_key, fallback=account)
    return ciphers


async def feature_cipher(session: AsyncSession, ring: Keyring, account_id: str, feature: str,
                         *, create: bool) -> crypto.RowCipher:
    return (await feature_ciphers(session, ring, account_id, [feature], create=create))[feature]


async def _feature_rows(session: AsyncSession, account_id: str,
                        features: Collection[str]) -> dict[str, tuple[str | None, bytes]]:
    rows = await session.execute(
        select(FeatureKey.feature, FeatureKey.master_key_id, FeatureKey.wrapped_key)
        .where(FeatureKey.account_id == account_id, FeatureKey.feature.in_(features)))
    return {r.feature: (r.master_key_id, r.wrapped_key) for r in rows}


async def _insert_keys(session: AsyncSession, ring: Keyring, account_id: str,
                       features: Collection[str]) -> None:
    """Insert new feature keys; a concurrent writer's key wins (DO NOTHING), never two."""
    rows = []
    for name in sorted(features):
        key_id, wrapped = crypto.wrap_key(ring, account_id, name, crypto.new_data_key())
        rows.append({"account_id": account_id, "feature": name, "wrapped_key": wrapped,
                     "master_key_id": key_id})
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(FeatureKey).on_conflict_do_nothing(), rows)


async def destroy(session: AsyncSession, account_id: str) -> int:
    result = await session.execute(delete(DataKey).where(DataKey.account_id == account_id))
    await session.execute(delete(FeatureKey).where(FeatureKey.account_id == account_id))
    return result.rowcount or 0  # type: ignore[attr-defined]  # DML gives a CursorResult


def of_features(features: Collection[str]) -> ColumnElement[bool]:
    """The feature keys of these features, every retention period of them."""
    return or_(FeatureKey.feature.in_(features),
               *(FeatureKey.feature.startswith(f"{name}@") for name in features))


async def destroy_features(session: AsyncSession, account_ids: Collection[str],
                           features: Collection[str]) -> int:
    """Shred the features' keys: their records, and every backup of them, unreadable."""
    result = await session.execute(delete(FeatureKey).where(
        FeatureKey.account_id.in_(account_ids), of_features(features)))
    return result.rowcount or 0  # type: ignore[attr-defined]  # DML gives a CursorResult


async def destroy_periods(session: AsyncSession, account_ids: Collection[str],
                          cutoff: datetime) -> int:
    """Shred the keys of retention periods over by `cutoff`: every record under them has
    expired, so the sweep deletes them all and their backups become unreadable too."""
    names = await session.execute(select(FeatureKey.account_id, FeatureKey.feature).where(
        FeatureKey.account_id.in_(account_ids)))
    over = [(a, n) for a, n in names.all() if period_ends_by(n, cutoff)]
    for account_id, name in over:
        await session.execute(delete(FeatureKey).where(
            FeatureKey.account_id == account_id, FeatureKey.feature == name))
    return len(over)
