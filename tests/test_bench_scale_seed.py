"""The scale benchmark's seeder loads the whole fleet and leaves the migrations' indexes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg

from bench.harness import scratch_database
from bench.scale_seed import BULK_TABLES, seed

CATALOG = (
    "SELECT c.relname, pg_get_indexdef(x.indexrelid) AS def, x.indisvalid FROM pg_index x "
    "JOIN pg_class c ON c.oid = x.indexrelid WHERE x.indrelid::regclass::text = ANY($1) "
    "UNION ALL SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
    "WHERE conrelid::regclass::text = ANY($1) ORDER BY 1, 2")


async def _catalog(dsn: str) -> list[tuple[str, str, bool]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(CATALOG, list(BULK_TABLES))]
    finally:
        await conn.close()


async def _counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                for t in ("accounts", *BULK_TABLES)}
    finally:
        await conn.close()


async def test_seed_loads_every_row_and_leaves_the_migrations_indexes(tmp_path: Path) -> None:
    """Two loads (as the bench's sizes grow) keep every index and constraint as migrated."""
    async with scratch_database("postgresql", tmp_path) as url:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        migrated = await _catalog(dsn)
        assert len(migrated) >= 10
        for accounts in (30, 70):
            ids = [str(uuid.uuid4()) for _ in range(accounts)]
            took = await seed(dsn, ids, 3, timedelta(hours=1))
            assert set(took) == {"copy", "index", "vacuum"}
        assert await _catalog(dsn) == migrated
        assert await _counts(dsn) == {"accounts": 100, "sync_states": 500, "records": 300,
                                      "record_counts": 100}
