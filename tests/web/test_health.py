"""Readiness on a database the release has not migrated yet: the web process starts, says
it is not ready, and becomes ready (pseudonym key and all) once `gwsync migrate` ran."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gwsync.core.settings import Settings
from gwsync.storage.db import upgrade_async
from gwsync.tasks.deps import Deps
from gwsync.web.app import create_app
from tests.conftest import API_TOKEN, PG_ADMIN, REDIRECT_URIS, RUN_ID
from tests.helpers import pg_admin


@pytest.fixture(params=["sqlite", "postgresql"])
async def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database `gwsync migrate` has not run on: a new SQLite file, or
    a new PostgreSQL database (alembic finds no version table on either, differently)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/unmigrated.db"
        return
    name = f"gwsync_test_{RUN_ID}_unmigrated_{uuid.uuid4().hex[:8]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: The deployment's own database is not what this tests (it points at `unmigrated`), so
#: the `settings` fixture's database is pinned to one: both kinds come from `unmigrated`.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_web_process_started_before_migrate_becomes_ready_after_it(
        settings: Settings, unmigrated: str) -> None:
    """Before migrating /readyz is 503 waiting for the schema; after, 200 and consent starts."""
    fresh = settings.model_copy(update={"database_url": unmigrated})
    deps = await Deps.open(fresh)
    client = TestClient(TestServer(create_app(deps)),
                        headers={"Authorization": f"Bearer {API_TOKEN}"})
    await client.start_server()
    try:
        before = await client.get("/readyz")
        assert before.status == 503
        assert (await before.json())["checks"]["pseudonym_key"] == "waiting for the schema"
        await upgrade_async(fresh.database_url)
        after = await client.get("/readyz")
        assert after.status == 200, await after.text()
        started = await client.get("/v1/oauth/start", params={
            "user_id": "u-1", "features": "contacts", "redirect_uri": REDIRECT_URIS[0]})
        assert started.status == 200, await started.text()
    finally:
        await client.close()
        await deps.close()
