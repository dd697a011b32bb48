"""Local residue: SQLite zeroes what it deletes, and an erasure leaves nothing in its WAL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from gwsync.tasks.deps import Deps
from tests.conftest import Emulator, RunWorker
from tests.helpers import USER, synced_user

MARKER = "ResidueMarkerW8"


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_erasure_leaves_no_ciphertext_in_the_sqlite_files(
    api: TestClient, deps: Deps, emulator: Emulator, run_worker: RunWorker
) -> None:
    """secure_delete is on, and after an erasure the WAL is checkpointed and truncated:
    no byte of a deleted record's ciphertext is left in the database file or its log."""
    _, account_id = await synced_user(api, emulator.state, run_worker, 3, marker=MARKER)
    async with deps.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA secure_delete")).scalar() == 1
        blobs = [bytes(r[0]) for r in await conn.exec_driver_sql(
            "SELECT content FROM records WHERE account_id = ?", (account_id,))]
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # rows in the file
    assert blobs
    resp = await api.delete(f"/v1/accounts/{account_id}", params={"user_id": USER})
    assert resp.status == 202
    await run_worker()
    path = Path(deps.engine.url.database or "")
    wal = path.with_name(path.name + "-wal")
    raw = await asyncio.to_thread(_read, path) + await asyncio.to_thread(_read, wal)
    assert not [b for b in blobs if b[12:44] in raw]
