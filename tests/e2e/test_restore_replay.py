"""A pg_dump taken before an erasure, restored after it: `gwsync restore-check` makes the
erased data unrecoverable again — whole accounts and withdrawn features alike."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result
from sqlalchemy import select

from gwsync.cli import main
from gwsync.core.settings import Settings
from gwsync.emulator.seed import seed_demo_user
from gwsync.storage import crypto, pseudonyms
from gwsync.storage.db import create_engine, session_factory
from gwsync.storage.models import Record
from gwsync.tasks import erase
from gwsync.tasks.deps import Deps
from gwsync.web.app import create_app
from gwsync.worker.app import create_worker
from tests.conftest import API_TOKEN, Emulator
from tests.erasure_proof import unwrapped_keys
from tests.helpers import USER, close_worker, connect, pg_admin, settings_env

ERASED, WITHDRAWN, KEPT = "RsWholeMarkQ7", "RsFeatureMarkV2", "RsKeptMarkZ4"
#: A record row as the dump holds it: (account id, kind, external id, ciphertext).
Row = tuple[str, str, str, bytes]


def _with(settings: Settings, **changes: Any) -> Settings:
    values = {k: v for k, v in settings.model_dump().items() if k != "port"}
    return Settings(**{**values, **changes})


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture
async def fresh_database(pg_database: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database to restore the dump into, dropped afterwards."""
    name = f"gwsync_restored_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    yield f"{pg_database.rsplit('/', 1)[0]}/{name}"
    await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _run_worker(settings: Settings) -> None:
    worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await close_worker(worker)


async def _rows_and_keys(settings: Settings) -> tuple[list[Row], dict[str, list[bytes]]]:
    """Every record row of the database, and every data key it holds, unwrapped with the
    master key (the keys a restored database gives whoever holds the master key)."""
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        ring = await pseudonyms.load(sessions, settings.keyring)
        async with sessions() as session:
            rows = [(r.account_id, r.kind, r.external_id, r.content)
                    for r in await session.scalars(select(Record))]
        keys = await unwrapped_keys(sessions, ring)
    finally:
        await engine.dispose()
    return rows, keys


def _recovered(rows: list[Row], keys: dict[str, list[bytes]]) -> str:
    """Every plaintext any held key opens, of any row, joined (to search markers in)."""
    found = []
    every_key = [k for ks in keys.values() for k in ks]
    for account_id, kind, external_id, blob in rows:
        for key in every_key:
            try:
                found.append(crypto.RowCipher(account_id, key).decrypt(
                    crypto.record_row(kind, external_id), blob).decode())
            except crypto.DecryptionError:
                continue
    return "\n".join(found)


async def _tool(*argv: str) -> None:
    """Run a PostgreSQL client tool (pg_dump, pg_restore) and require success."""
    await asyncio.to_thread(subprocess.run, list(argv), check=True)


async def _restore_check(settings: Settings, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, main, ["restore-check", *args],
                                   env=settings_env(settings))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_restore_check_makes_a_restored_dump_unrecoverable_again(
    settings: Settings, emulator: Emulator, tmp_path: Path, fresh_database: str,
) -> None:
    """Dump; erase one user whole and withdraw another's contacts; restore the dump into a
    fresh database: master key + its keys open both markers again. After restore-check
    (which re-applies both from the ledger) no key the database holds opens either marker
    in any row of the dump, while the kept user's data still reads."""
    live = _with(settings, erasure_ledger_url=f"sqlite+aiosqlite:///{tmp_path}/ledger.db")
    deps = await Deps.open(live)
    api = TestClient(TestServer(create_app(deps)),
                     headers={"Authorization": f"Bearer {API_TOKEN}"})
    await api.start_server()
    try:
        ids = {}
        for marker in (ERASED, WITHDRAWN, KEPT):
            grant = seed_demo_user(emulator.state, 4, marker=marker,
                                   email=f"{marker.lower()}@example.com")
            ids[marker] = await connect(api, grant.refresh_token)
        await _run_worker(live)
        dump = tmp_path / "before-erasure.dump"
        await _tool("pg_dump", "-Fc", "-f", str(dump), _libpq(live.database_url))
        resp = await api.delete(f"/v1/accounts/{ids[ERASED]}", params={"user_id": USER})
        assert resp.status == 202
        await erase.request(deps, [ids[WITHDRAWN]], subject_hash="s", trigger="scope_withdrawn",
                            scope={"features": ["contacts"]})
        await _run_worker(live)
    finally:
        await api.close()
        await deps.close()

    await _tool("pg_restore", "--no-owner", "-d", _libpq(fresh_database), str(dump))
    restored = _with(live, database_url=fresh_database)
    backup, keys_before = await _rows_and_keys(restored)
    plain = _recovered(backup, keys_before)
    assert ERASED in plain and WITHDRAWN in plain and KEPT in plain  # the check can fail

    dry = await _restore_check(restored, "--dry-run")
    assert dry.exit_code == 1 and "2 still readable" in dry.output, dry.output
    result = await _restore_check(restored)
    assert result.exit_code == 0, result.output
    assert "2 re-applied" in result.output and "0 still readable" in result.output

    _, keys_after = await _rows_and_keys(restored)
    plain = _recovered(backup, keys_after)
    assert ERASED not in plain and WITHDRAWN not in plain
    assert KEPT in plain
    assert ids[WITHDRAWN] in keys_after  # the account's other keys serve on
    again = await _restore_check(restored)
    assert again.exit_code == 0 and "0 re-applied" in again.output
