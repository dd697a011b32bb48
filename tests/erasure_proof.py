"""Evidence that an erasure removed what it had to: found before, absent after.

A check that cannot fail proves nothing. Scanning encrypted columns for a plain marker
can never find it, and decrypting with a freshly generated key always fails, so every
check here first shows that it sees what it looks for:

- plain identifiers (account ids, user ids, hashed subjects, the records' external ids)
  are looked up in every column of every table the database holds — reflected from the
  database itself, so a table added later is covered without editing this file;
- the accounts' data keys are captured before the erasure (unwrapped with the master
  key) and every record row left afterwards is decrypted with them: the marker hidden by
  encryption is seen before and must be gone after;
- Redis values under the test's key prefix are read by type (GET, HGETALL, LRANGE,
  ZRANGE, SMEMBERS, XRANGE), never with DUMP, whose serialisation may compress a value
  and hide a needle.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from sqlalchemy import MetaData, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gwsync.core.keyring import Keyring
from gwsync.storage import crypto, keys
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import Account, DataKey, FeatureKey, Record
from gwsync.tasks.deps import Deps

#: The cells a whole-account erasure keeps on purpose: the tombstone (id, hashed subject)
#: and the receipt (which accounts, whose hashed subject) — docs/architecture.md §6.
#: The main app's undelivered events *about* the erasure keep the account id in clear too
#: (their bodies, which name the user, are sealed): docs/architecture.md §6.
TOMBSTONE = frozenset({("accounts", "id"), ("accounts", "subject_hash"),
                       ("erasures", "account_ids"), ("erasures", "subject_hash"),
                       ("app_webhooks", "account_id")})

#: (table, column, needle) for the database; (key, needle) for Redis.
DbHit = tuple[str, str, str]
RedisHit = tuple[str, str]


@dataclass(frozen=True)
class BackupRow:
    """A record row as a backup taken before the erasure holds it."""

    account_id: str
    kind: str
    external_id: str
    content: bytes


def as_bytes(value: Any) -> bytes:
    """A cell or Redis value as bytes, so one substring test fits every column type."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str).encode()
    return str(value).encode()


async def reflected_tables(engine: AsyncEngine) -> list[Table]:
    """Every table the database holds now, models or not (alembic_version included)."""
    meta = MetaData()
    async with engine.connect() as conn:
        await conn.run_sync(meta.reflect)
    return list(meta.sorted_tables)


async def database_rows(engine: AsyncEngine) -> list[tuple[str, dict[str, bytes]]]:
    """Every row of every table as (table, {column: bytes})."""
    tables = await reflected_tables(engine)
    found = []
    async with engine.connect() as conn:
        for table in tables:
            for row in (await conn.execute(select(table))).mappings():
                found.append((table.name, {str(k): as_bytes(v) for k, v in row.items()
                                           if v is not None}))
    return found


async def database_hits(engine: AsyncEngine, needles: Iterable[str]) -> set[DbHit]:
    """Where each needle appears in plain text: (table, column, needle)."""
    wanted = [(n, n.encode()) for n in needles]
    return {(table, column, needle)
            for table, row in await database_rows(engine)
            for column, raw in row.items()
            for needle, encoded in wanted if encoded in raw}


async def redis_values(redis: Redis, key: bytes) -> list[bytes]:
    """A key's values read by its type, as stored (DUMP's encoding could hide them)."""
    name = key.decode()
    kind = (await redis.type(name)).decode()
    if kind == "string":
        return [await redis.get(name) or b""]
    if kind == "hash":
        pairs = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(name))
        return [b for pair in pairs.items() for b in pair]
    if kind == "list":
        return list(await cast(Awaitable[list[bytes]], redis.lrange(name, 0, -1)))
    if kind == "zset":
        return [m for m, _ in await redis.zrange(name, 0, -1, withscores=True)]
    if kind == "set":
        return list(await cast(Awaitable[set[bytes]], redis.smembers(name)))
    if kind == "stream":
        entries = await redis.xrange(name, "-", "+")
        return [b for _, fields in entries for pair in fields.items() for b in pair]
    return []  # "none": expired between SCAN and TYPE


async def redis_hits(redis: Redis, prefix: str, needles: Iterable[str]) -> set[RedisHit]:
    """Which needles appear in the name or value of a key under `prefix`: (key, needle)."""
    wanted = [(n, n.encode()) for n in needles]
    hits = set()
    async for key in redis.scan_iter(match=f"*{prefix}*"):
        blobs = [key, *await redis_values(redis, key)]
        hits |= {(key.decode(), needle) for needle, encoded in wanted
                 if any(encoded in blob for blob in blobs)}
    return hits


async def _owned_needles(engine: AsyncEngine, candidates: set[str],
                         account_ids: Sequence[str]) -> frozenset[str]:
    """The candidates that appear only in rows naming one of `account_ids`.

    Identifiers another account shares (the same user id, `people/c1` in two address
    books, a derived record's name) would stay legitimately and cannot prove anything.
    """
    owners = [a.encode() for a in account_ids]
    shared = set()
    for _, row in await database_rows(engine):
        if any(o in raw for raw in row.values() for o in owners):
            continue
        shared |= {c for c in candidates if any(c.encode() in raw for raw in row.values())}
    return frozenset(candidates - shared)


@dataclass
class ErasureProof:
    """What an account held before its erasure, to show afterwards that it is gone."""

    deps: Deps
    account_ids: tuple[str, ...]
    marker: str
    #: None for whole accounts; else the features whose records the erasure covers.
    features: frozenset[str] | None
    identifiers: frozenset[str]
    #: Every data key of the accounts (their own and their features'), unwrapped.
    data_keys: dict[str, list[bytes]]
    backup: list[BackupRow]
    check_redis: bool
    #: A feature's erasure destroys that feature's keys when it is recorded
    #: (gwsync/storage/keys.py), so no key left opens a backup of its rows. The retention
    #: sweep destroys only the keys of months that are over, which a test that merely
    #: moves `expires_at` forward never reaches: it passes False.
    shreds_keys: bool = True

    @classmethod
    async def capture(
        cls, deps: Deps, account_ids: str | Sequence[str], *, marker: str,
        features: Collection[str] | None = None, check_redis: bool = True,
        shreds_keys: bool = True,
    ) -> ErasureProof:
        """Take the evidence before the erasure, and show that every check would see it."""
        ids = (account_ids,) if isinstance(account_ids, str) else tuple(account_ids)
        data_keys, backup, candidates = await _snapshot(deps, ids, features)
        proof = cls(deps, ids, marker, None if features is None else frozenset(features),
                    await _owned_needles(deps.engine, candidates, ids), data_keys, backup,
                    check_redis, shreds_keys)
        await proof._assert_visible_before()
        return proof

    @property
    def whole(self) -> bool:
        return self.features is None

    def _allowed(self) -> frozenset[tuple[str, str]]:
        return TOMBSTONE if self.whole else frozenset()

    async def _assert_visible_before(self) -> None:
        assert set(self.data_keys) == set(self.account_ids), "an account had no data key"
        assert self.backup, "no record to erase: the proof would be vacuous"
        assert self.marked_rows(self.backup), f"{self.marker!r} is in no decrypted record"
        if self.whole:
            assert set(self.account_ids) <= self.identifiers
        assert any(r.external_id in self.identifiers for r in self.backup), \
            "no record identity of its own to look for"
        hits = await database_hits(self.deps.engine, self.identifiers)
        assert {n for _, _, n in hits} == self.identifiers, "the scan misses an identifier"
        assert {(t, c) for t, c, _ in hits} - self._allowed(), "nothing the erasure must clear"
        if self.check_redis:
            seen = await self._redis(self.account_ids)
            assert {n for _, n in seen} == set(self.account_ids), \
                "the Redis scan sees none of the account's keys"

    def marked_rows(self, rows: Iterable[BackupRow]) -> list[BackupRow]:
        """The rows that the captured keys open and whose plaintext holds the marker."""
        marked = []
        for row in rows:
            for key in self.data_keys.get(row.account_id, []):
                try:
                    plain = crypto.RowCipher(row.account_id, key).decrypt(
                        crypto.record_row(row.kind, row.external_id), row.content)
                except crypto.DecryptionError:
                    continue
                if self.marker.encode() in plain:
                    marked.append(row)
                    break
        return marked

    def _redis_tombstones(self) -> set[RedisHit]:
        """A whole erasure's fence key (gwsync/tasks/liveness.py) names the account id, as
        the account's tombstone row does, and expires; it holds nothing else."""
        if not self.whole:
            return set()
        return {(self.deps.queue.erased_key(a), a) for a in self.account_ids}

    async def _redis(self, needles: Iterable[str]) -> set[RedisHit]:
        return await redis_hits(self.deps.queue.redis, self.deps.settings.redis_prefix,
                                needles)

    async def assert_shredded(self) -> None:
        """No data key the system holds is, or opens, a captured one (whole accounts)."""
        assert self.whole, "a partial erasure keeps the account's key"
        async with self.deps.sessions() as session:
            for account_id in self.account_ids:
                with pytest.raises(keys.KeyShreddedError):
                    await keys.cipher(session, self.deps.keyring, account_id)
        held_keys = [k for ks in (await held_data_keys(self.deps)).values() for k in ks]
        captured = {k for ks in self.data_keys.values() for k in ks}
        assert not set(held_keys) & captured, "a captured key survives"
        for row in self.backup:
            for key in held_keys:
                with pytest.raises(crypto.DecryptionError):
                    crypto.RowCipher(row.account_id, key).decrypt(
                        crypto.record_row(row.kind, row.external_id), row.content)

    async def assert_erased(self) -> None:
        """Nothing of what was captured is left: no identifier, no readable marker."""
        allowed = self._allowed()
        left = {h for h in await database_hits(self.deps.engine,
                                               {*self.identifiers, self.marker})
                if (h[0], h[1]) not in allowed}
        assert left == set(), f"left in the database: {sorted(left)}"
        remaining = await _record_rows(self.deps, None)
        assert self.marked_rows(remaining) == [], "a remaining row still holds the marker"
        if self.check_redis:
            needles = {*self.identifiers, self.marker}
            left_in_redis = await self._redis(needles) - self._redis_tombstones()
            assert left_in_redis == set(), f"left in Redis: {left_in_redis}"
        if self.whole:
            await self.assert_shredded()
        elif self.shreds_keys:
            await self.assert_backup_unreadable()

    async def assert_backup_unreadable(self) -> None:
        """No key the database still holds opens the covered rows as a backup keeps them."""
        held = await held_data_keys(self.deps)
        opened = [r for r in self.backup for key in held.get(r.account_id, [])
                  if _opens(r, key)]
        assert opened == [], f"{len(opened)} backed-up rows still open under a key held"


def _opens(row: BackupRow, key: bytes) -> bool:
    try:
        crypto.RowCipher(row.account_id, key).decrypt(
            crypto.record_row(row.kind, row.external_id), row.content)
    except crypto.DecryptionError:
        return False
    return True


async def held_data_keys(deps: Deps) -> dict[str, list[bytes]]:
    """Every data key the database holds (account and feature keys), unwrapped with the
    deployment's keyring: account id → keys."""
    return await unwrapped_keys(deps.sessions, deps.keyring)


async def unwrapped_keys(sessions: SessionFactory, ring: Keyring) -> dict[str, list[bytes]]:
    """Every data key a database holds, unwrapped with `ring`: account id → keys."""
    found: dict[str, list[bytes]] = {}
    async with sessions() as session:
        for k in await session.scalars(select(DataKey)):
            found.setdefault(k.account_id, []).append(crypto.unwrap_key(
                ring, k.account_id, crypto.ACCOUNT, k.master_key_id, k.wrapped_key))
        for f in await session.scalars(select(FeatureKey)):
            found.setdefault(f.account_id, []).append(crypto.unwrap_key(
                ring, f.account_id, f.feature, f.master_key_id, f.wrapped_key))
    return found


async def _record_rows(deps: Deps, account_ids: Sequence[str] | None,
                       features: Collection[str] | None = None) -> list[BackupRow]:
    query = select(Record)
    if account_ids is not None:
        query = query.where(Record.account_id.in_(account_ids))
    if features is not None:
        query = query.where(Record.feature.in_(features))
    async with deps.sessions() as session:
        return [BackupRow(r.account_id, r.kind, r.external_id, r.content)
                for r in await session.scalars(query)]


async def _snapshot(
    deps: Deps, ids: Sequence[str], features: Collection[str] | None,
) -> tuple[dict[str, list[bytes]], list[BackupRow], set[str]]:
    """The unwrapped data keys, a backup of the covered rows, and candidate identifiers."""
    async with deps.sessions() as session:
        people = list(await session.scalars(select(Account).where(Account.id.in_(ids))))
    data_keys = {a: ks for a, ks in (await held_data_keys(deps)).items() if a in ids}
    backup = await _record_rows(deps, ids, features)
    candidates = {r.external_id for r in backup}
    if features is None:
        candidates |= {*ids, *(a.subject_hash for a in people),
                       *(a.user_id for a in people if a.user_id)}
    return data_keys, backup, candidates
