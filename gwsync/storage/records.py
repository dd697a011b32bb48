"""The record store: fenced, idempotent writes and the one purpose-checked read path.

Writes carry the account generation they started under and re-check it in the same
transaction, so a sync still in flight when an erasure begins writes nothing after.
Reads must name a use; every decision, allowed or refused, goes to the access log.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gwsync.core.keyring import Keyring
from gwsync.core.timeutil import rfc3339, utcnow
from gwsync.domain import purpose
from gwsync.domain.features import Feature
from gwsync.domain.pages import Page, Upsert
from gwsync.storage import accounts, crypto, keys, leases
from gwsync.storage.db import SessionFactory
from gwsync.storage.models import AccessLog, Record, RecordCount, SyncState, is_source_record


@dataclass(frozen=True)
class ReadResult:
    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    counts: dict[str, int] | None = None


class BadCursorError(ValueError):
    """A read cursor that this store did not hand out."""


def _insert_for(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def adjust_counts(session: AsyncSession, account_id: str, deltas: Mapping[str, int]) -> None:
    """Add `deltas` (feature → change in fetched records) to the account's record counts.

    Called in the transaction that wrote or deleted the rows, so the counts move with
    them; one writer per account and feature at a time (the sync lock) keeps them exact.
    """
    rows = [{"account_id": account_id, "feature": name, "records": delta}
            for name, delta in deltas.items() if delta]
    if not rows:
        return
    stmt = _insert_for(session)(RecordCount.__table__)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["account_id", "feature"],
        set_={"records": RecordCount.__table__.c.records + stmt.excluded.records}), rows)


def _is_derived(kind: str) -> bool:
    return kind.startswith("derived:")


def _minimise(feature: Feature, item: Upsert) -> bytes:
    """Keep only the declared fields: a connector bug cannot widen what is stored."""
    allowed = feature.fields.get(item.kind)
    if allowed is None:
        raise ValueError(f"feature {feature.name} stores no kind {item.kind!r}")
    kept = {k: v for k, v in item.content.items() if k in allowed}
    return json.dumps(kept, separators=(",", ":"), sort_keys=True).encode()


class RecordStore:
    def __init__(
        self, sessions: SessionFactory, ring: Keyring, policy_version: str,
        on_decision: Callable[[purpose.Decision], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._ring = ring
        self._policy_version = policy_version
        #: Told of every purpose decision (the worker counts them as metrics).
        self._on_decision = on_decision or (lambda _decision: None)

    async def write_page(
        self,
        account_id: str,
        generation: int,
        feature: Feature,
        page: Page,
        *,
        epoch: int,
        state: Mapping[str, Any] | None = None,
        lease: int | None = None,
    ) -> None:
        """Apply one page and its checkpoint (`state` → sync_states) in one fenced transaction.

        With `lease`, the page is written only if the run still holds the sync's lease."""
        async with self._sessions.begin() as session:
            await accounts.fence(session, account_id, generation)
            if lease is not None:
                await leases.check(session, account_id, feature.name, lease)
            await keys.cipher(session, self._ring, account_id)  # or KeyShreddedError
            added = 0
            if page.upserts:
                added = await self._upsert(session, account_id, feature, page.upserts, epoch)
            for item in page.removals:
                result = await session.execute(delete(Record).where(
                    Record.account_id == account_id, Record.kind == item.kind,
                    Record.external_id == item.external_id))
                if not _is_derived(item.kind):
                    added -= result.rowcount or 0  # type: ignore[attr-defined]  # DML gives a CursorResult
            await adjust_counts(session, account_id, {feature.name: added})
            if state:
                await session.execute(update(SyncState).where(
                    SyncState.account_id == account_id, SyncState.feature == feature.name
                ).values(**state))

    async def _upsert(
        self, session: AsyncSession, account_id: str, feature: Feature,
        items: Sequence[Upsert], epoch: int,
    ) -> int:
        """Insert or update the items → how many fetched records are new.

        Each is encrypted under the key of its feature and retention period (the month it
        expires in), so the retention sweep can destroy the keys of periods past."""
        now = utcnow()
        unique = list({(i.kind, i.external_id): i for i in items}.values())
        expiry = [item.expires_at or now + feature.retention for item in unique]
        names = [keys.period_key(feature.name, at) for at in expiry]
        ciphers = await keys.feature_ciphers(session, self._ring, account_id, set(names),
                                             create=True)
        rows = [{
            "account_id": account_id, "feature": feature.name, "kind": item.kind,
            "external_id": item.external_id,
            "content": ciphers[name].encrypt(crypto.record_row(item.kind, item.external_id),
                                             _minimise(feature, item)),
            "data_use": feature.data_use, "scope": feature.scope, "source_api": feature.api,
            "source_method": item.source_method or feature.source_method, "fetched_at": now,
            "expires_at": at, "policy_version": self._policy_version, "epoch": epoch,
        } for item, at, name in zip(unique, expiry, names, strict=True)]
        new = await self._new_sources(session, account_id, rows)
        # One statement executed with many parameter sets (not `.values(rows)`): it is
        # compiled once and cached, where a multi-VALUES statement was compiled per page
        # and cost more CPU than the encryption (bench/ingest.py, profiled).
        stmt = _insert_for(session)(Record.__table__)
        keep = ("content", "fetched_at", "expires_at", "policy_version", "epoch", "scope")
        await session.execute(stmt.on_conflict_do_update(
            index_elements=["account_id", "kind", "external_id"],
            set_={name: stmt.excluded[name] for name in keep},
        ), rows)
        return new

    @staticmethod
    async def _new_sources(
        session: AsyncSession, account_id: str, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """Of the page's fetched records, how many are not stored yet (one indexed query)."""
        ids = [(r["kind"], r["external_id"]) for r in rows if not _is_derived(r["kind"])]
        if not ids:
            return 0
        stored = await session.scalar(select(func.count()).select_from(Record).where(
            Record.account_id == account_id,
            tuple_(Record.kind, Record.external_id).in_(ids)))
        return len(ids) - int(stored or 0)

    async def contents_for_derivation(
        self, account_id: str, feature: Feature
    ) -> list[tuple[str, dict[str, Any], datetime]]:
        """The feature's own records, for computing its derived data: (id, content, expiry).

        This is the feature processing its own data, not a read for some use, so it is
        not an access-log event; what it computes is stored as the feature's records and
        is readable only through the purpose-checked path.
        """
        async with self._sessions() as session:
            rows = list(await session.scalars(select(Record).where(
                Record.account_id == account_id, Record.feature == feature.name,
                ~Record.kind.startswith("derived:"))))
            if not rows:
                return []
            ciphers = await _ciphers(session, self._ring, account_id, rows)
        return [(r.external_id, _present(ciphers, r)["content"], r.expires_at) for r in rows]

    async def derived_missing(self, account_id: str, feature: Feature,
                              kinds: Sequence[str]) -> bool:
        """Whether the feature has records to derive from but lacks one of `kinds`: two
        indexed probes, so a sync that changed nothing can afford to ask."""
        feature_rows = (Record.account_id == account_id, Record.feature == feature.name)
        async with self._sessions() as session:
            if not await session.scalar(select(exists().where(*feature_rows,
                                                              is_source_record()))):
                return False
            present = set(await session.scalars(select(Record.kind).distinct().where(
                *feature_rows, Record.kind.in_(kinds))))
        return not set(kinds) <= present

    async def delete_stale(
        self, account_id: str, generation: int, feature: Feature, *, epoch: int,
        state: Mapping[str, Any], lease: int | None = None,
    ) -> int:
        """After a full sync: drop what it did not see, and record the new cursor."""
        async with self._sessions.begin() as session:
            await accounts.fence(session, account_id, generation)
            if lease is not None:
                await leases.check(session, account_id, feature.name, lease)
            stale = (Record.account_id == account_id, Record.feature == feature.name,
                     Record.epoch < epoch)
            sources = await session.execute(delete(Record).where(*stale, is_source_record()))
            derived = await session.execute(delete(Record).where(*stale, ~is_source_record()))
            await adjust_counts(session, account_id, {feature.name: -(sources.rowcount or 0)})  # type: ignore[attr-defined]  # DML gives a CursorResult
            await session.execute(update(SyncState).where(
                SyncState.account_id == account_id, SyncState.feature == feature.name
            ).values(**state))
            return (sources.rowcount or 0) + (derived.rowcount or 0)  # type: ignore[attr-defined]  # DML gives a CursorResult

    async def read(
        self,
        account_id: str,
        *,
        use: str,
        actor: str,
        feature: str | None = None,
        kind: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
        staff: bool = False,
        justification: str | None = None,
    ) -> ReadResult:
        """The only way to read records. Raises LimitedUseViolation after auditing a refusal."""
        decision = purpose.decide(use, feature=feature, staff=staff, justification=justification)
        self._on_decision(decision)
        after = _parse_cursor(cursor)
        async with self._sessions.begin() as session:
            await accounts.get(session, account_id)
            if not decision.allowed:
                self._audit(session, account_id, decision, actor, justification, feature, 0)
        if not decision.allowed:
            raise purpose.LimitedUseViolation(decision)
        scope_feature = feature or decision.feature
        async with self._sessions.begin() as session:
            if decision.counts_only:
                counts = await self._counts(session, account_id, scope_feature)
                self._audit(session, account_id, decision, actor, justification, scope_feature,
                            0)
                return ReadResult(counts=counts)
            result = await self._page(session, account_id, scope_feature, kind, after, limit)
            self._audit(session, account_id, decision, actor, justification, scope_feature,
                        len(result.items))
            return result

    async def _page(
        self, session: AsyncSession, account_id: str, feature: str | None, kind: str | None,
        after: int, limit: int,
    ) -> ReadResult:
        query = select(Record).where(
            Record.account_id == account_id, Record.id > after, Record.expires_at > utcnow()
        ).order_by(Record.id).limit(limit + 1)
        if feature:
            query = query.where(Record.feature == feature)
        # Derived data is read by naming its kind; a plain listing is of fetched items.
        query = query.where(Record.kind == kind) if kind else query.where(is_source_record())
        rows = list(await session.scalars(query))
        if not rows:
            return ReadResult()
        ciphers = await _ciphers(session, self._ring, account_id, rows[:limit])
        items = [_present(ciphers, row) for row in rows[:limit]]
        next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
        return ReadResult(items=items, next_cursor=next_cursor)

    async def _counts(
        self, session: AsyncSession, account_id: str, feature: str | None
    ) -> dict[str, int]:
        query = select(Record.feature, func.count()).where(
            Record.account_id == account_id, is_source_record()).group_by(Record.feature)
        if feature:
            query = query.where(Record.feature == feature)
        return {name: count for name, count in (await session.execute(query)).all()}

    @staticmethod
    def _audit(
        session: AsyncSession, account_id: str, decision: purpose.Decision, actor: str,
        justification: str | None, feature: str | None, count: int,
    ) -> None:
        session.add(AccessLog(
            account_id=account_id, use=decision.use[:80],
            decision="allowed" if decision.allowed else "refused", reason=decision.reason,
            actor=actor[:120], justification=justification, feature=feature,
            record_count=count,
        ))


#: Row ids are signed 64-bit integers on both databases; a cursor past them names nothing.
MAX_CURSOR = 2**63 - 1


def _parse_cursor(cursor: str | None) -> int:
    """A row id this store handed out: ASCII digits (not `str.isdigit()`, which takes "²",
    that `int()` refuses), at most 2^63-1 (beyond, the database driver overflows)."""
    if cursor is None or cursor == "":
        return 0
    if not (len(cursor) <= 19 and cursor.isascii() and cursor.isdigit()):
        raise BadCursorError("cursor must be one this API returned")
    value = int(cursor)
    if value > MAX_CURSOR:
        raise BadCursorError("cursor must be one this API returned")
    return value


async def _ciphers(session: AsyncSession, ring: Keyring, account_id: str,
                   rows: Sequence[Record]) -> dict[str, crypto.RowCipher]:
    """The ciphers of the rows' feature and retention period keys, by key name."""
    names = {keys.period_key(r.feature, r.expires_at) for r in rows}
    return await keys.feature_ciphers(session, ring, account_id, names, create=False)


def _present(ciphers: Mapping[str, crypto.RowCipher], row: Record) -> dict[str, Any]:
    cipher = ciphers[keys.period_key(row.feature, row.expires_at)]
    content = json.loads(cipher.decrypt(crypto.record_row(row.kind, row.external_id),
                                        row.content))
    return {
        "kind": row.kind, "id": row.external_id, "feature": row.feature, "content": content,
        "purpose": {
            "data_use": row.data_use, "scope": row.scope, "source_api": row.source_api,
            "source_method": row.source_method, "fetched_at": rfc3339(row.fetched_at),
            "expires_at": rfc3339(row.expires_at), "policy_version": row.policy_version,
        },
    }


