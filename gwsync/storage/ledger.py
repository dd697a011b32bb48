"""The erasure ledger: every erasure, kept outside the main database and its backups.

A backup of the main database taken before an erasure still holds the data keys the
erasure destroyed; restored, it would make the erased data readable again. The ledger
(`GWSYNC_ERASURE_LEDGER_URL`: its own database, on storage the main database's backups
do not include) records each erasure — its id, the accounts, the scope, when — in the
request's transaction, before the erasure commits, and `gwsync restore-check` replays
what a restored database missed (gwsync/storage/restore.py). It holds no key and no
personal data: account ids are random, and the tombstones keep them anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from gwsync.core.timeutil import utcnow
from gwsync.storage.db import create_engine
from gwsync.storage.models import Erasure

metadata = MetaData()
entries = Table(
    "erasure_ledger", metadata,
    Column("erasure_id", String(36), primary_key=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("account_ids", JSON, nullable=False),
    Column("scope", JSON, nullable=False),
)


@dataclass(frozen=True)
class Entry:
    erasure_id: str
    recorded_at: datetime
    account_ids: tuple[str, ...]
    scope: dict[str, Any]


class Ledger:
    """Append-only: an entry is never changed or removed (a replay must see them all)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    @classmethod
    async def open(cls, url: str) -> Ledger:
        ledger = cls(url)
        async with ledger.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        return ledger

    async def record(self, erasure: Erasure) -> None:
        """Write the entry and commit it, before the erasure itself commits."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(entries).values(
                    erasure_id=erasure.id, recorded_at=utcnow(),
                    account_ids=list(erasure.account_ids), scope=dict(erasure.scope)))
        except IntegrityError:
            pass  # recorded already (a replay re-creating the erasure)

    async def all(self) -> list[Entry]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(entries).order_by(entries.c.recorded_at))).all()
        return [Entry(r.erasure_id, r.recorded_at, tuple(r.account_ids), dict(r.scope))
                for r in rows]

    async def close(self) -> None:
        await self.engine.dispose()
