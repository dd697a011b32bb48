"""Shared fixtures: real PostgreSQL and Redis, a private database and key prefix per run.

Storage and end-to-end tests take the `db_url` fixture, which runs them once on SQLite
and once on PostgreSQL. Nothing here fakes a service.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text

from gwsync.core import logs as logs
from gwsync.core.settings import Settings
from gwsync.emulator.app import base_url, serve
from gwsync.emulator.state import EmulatorState
from gwsync.storage import ops_snapshot
from gwsync.storage.db import create_engine, upgrade, upgrade_async
from gwsync.storage.models import Base
from gwsync.tasks.deps import Deps
from gwsync.web.app import create_app
from gwsync.worker.app import create_worker
from tests.helpers import PG_ADMIN, close_worker, pg_admin

REDIS_URL = os.environ.get("GWSYNC_TEST_REDIS", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]
API_TOKEN = secrets.token_urlsafe(32)
ADMIN_TOKEN = secrets.token_urlsafe(32)
#: The app's redirect URIs the test deployment lists (GWSYNC_OAUTH_REDIRECT_URIS).
REDIRECT_URIS = ("https://app.example/google/done", "https://app.example.com/oauth/done")
#: The headers of a staff caller (ops, Prometheus): the admin bearer token.
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()


def pytest_configure(config: pytest.Config) -> None:
    logs.configure("console", "INFO")


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking set-up outside the test's event loop (it may call asyncio.run)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test run, migrated once, dropped at the end."""
    name = f"gwsync_test_{RUN_ID}"

    _in_thread(lambda: asyncio.run(pg_admin(f'CREATE DATABASE "{name}"')))
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{url}/{name}"
    _in_thread(lambda: upgrade(url))
    yield url
    _in_thread(lambda: asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))


async def _truncate(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A migrated, empty database: a fresh SQLite file, or this run's PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/gwsync.db"
        await upgrade_async(url)
        yield url
        return
    url = request.getfixturevalue("pg_database")
    await _truncate(url)
    yield url


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix private to this test; its keys are deleted afterwards."""
    prefix = f"gwsync-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = aioredis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@dataclass
class Emulator:
    state: EmulatorState
    url: str


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The Google emulator on a free loopback port, with a fresh state."""
    state = EmulatorState()
    runner = await serve("127.0.0.1", 0, state)
    yield Emulator(state, base_url(runner))
    await runner.cleanup()


@pytest.fixture
def settings(db_url: str, redis_prefix: str, emulator: Emulator) -> Settings:
    """Settings of a complete deployment pointed at the emulator."""
    return Settings(
        database_url=db_url, redis_url=REDIS_URL, redis_prefix=redis_prefix,
        google_base_url=emulator.url, google_client_id=emulator.state.client_id,
        google_client_secret=emulator.state.client_secret, api_token=API_TOKEN,
        admin_token=ADMIN_TOKEN, encryption_key=MASTER_KEY, sync_page_size=3,
        http_timeout_s=5, retry_base_s=0.05, worker_metrics_port=0,
        oauth_redirect_uris=",".join(REDIRECT_URIS),
    )


@pytest.fixture(autouse=True)
def fresh_ops_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests read the ops picture right after changing what it counts, so they see it
    uncached (tests/storage/test_ops_snapshot.py checks the cache itself)."""
    monkeypatch.setattr(ops_snapshot, "MAX_AGE_S", 0.0)
    monkeypatch.setattr(ops_snapshot, "SERVE_STALE_S", 0.0)


@pytest.fixture
async def deps(settings: Settings) -> AsyncIterator[Deps]:
    opened = await Deps.open(settings)
    yield opened
    await opened.close()


@pytest.fixture
async def api(deps: Deps) -> AsyncIterator[TestClient]:
    """The real web app on a loopback port, with the app's bearer token preset."""
    client = TestClient(TestServer(create_app(deps)),
                        headers={"Authorization": f"Bearer {API_TOKEN}"})
    await client.start_server()
    yield client
    await client.close()


RunWorker = Callable[..., Awaitable[Any]]


@pytest.fixture
def run_worker(settings: Settings) -> RunWorker:
    """Run a real arq worker in burst mode until the queue is empty."""

    async def run(**overrides: Any) -> Any:
        worker = create_worker(settings, burst=True, poll_delay=0.05, handle_signals=False,
                               **overrides)
        try:
            await worker.async_run()
        finally:
            await close_worker(worker)
        return worker

    return run
