"""Migration 0004 fills `record_counts` from the records already stored, and makes every
existing sync state due at the scheduler's next tick."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from gwsync.storage.db import create_engine, upgrade

ACCOUNT = "5f0c3f9e-4d7e-4a39-9a51-1b2c3d4e5f60"


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    rows: list[tuple[object, ...]] = []
    async with engine.begin() as conn:
        for statement in statements:
            result = await conn.execute(text(statement))
            if result.returns_rows:
                rows = [tuple(r) for r in result.all()]
    await engine.dispose()
    return rows


def _record(n: int, kind: str = "contact") -> str:
    return ("INSERT INTO records (account_id, feature, kind, external_id, content, data_use, "
            "scope, source_api, source_method, fetched_at, expires_at, policy_version, epoch) "
            f"VALUES ('{ACCOUNT}', 'contacts', '{kind}', 'x{n}', X'00', 'feature:contacts', "
            "'s', 'people', 'm', '2026-01-01', '2027-01-01', 'p', 1)")


async def test_upgrading_counts_existing_records_and_makes_states_due(tmp_path: Path) -> None:
    """Two fetched records and one derived one become a count of 2; a sync state gets
    `next_due_at` in the past, stored exactly as the model writes DUE_NOW (the scheduler
    pages on it)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    await asyncio.to_thread(upgrade, url, "0003")
    await _execute(
        url,
        "INSERT INTO accounts (id, subject_hash, status, generation, granted_scopes, "
        f"created_at, updated_at) VALUES ('{ACCOUNT}', 'h', 'active', 1, '', "
        "'2026-01-01', '2026-01-01')",
        "INSERT INTO sync_states (account_id, feature, status, stage, epoch) "
        f"VALUES ('{ACCOUNT}', 'contacts', 'ok', 'incremental', 1)",
        _record(1), _record(2), _record(3, kind="derived:suggestions"))
    await asyncio.to_thread(upgrade, url, "head")
    assert await _execute(url, "SELECT feature, records FROM record_counts") == [
        ("contacts", 2)]
    [(due,)] = await _execute(url, "SELECT next_due_at FROM sync_states")
    assert due == "1970-01-01 00:00:00.000000"
