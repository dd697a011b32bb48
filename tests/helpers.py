"""Small helpers the specifications share: connect a seeded user, read what was stored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from gwsync.client import Client
from gwsync.core.settings import Settings
from gwsync.emulator.grants import IssuedGrant
from gwsync.emulator.seed import seed_demo_user
from gwsync.emulator.state import EmulatorState
from gwsync.storage.models import Account, SyncState
from gwsync.tasks.deps import Deps

#: The PostgreSQL server's admin database (tests create and drop their own databases).
PG_ADMIN = os.environ.get("GWSYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

T = TypeVar("T")


class Background:
    """Work a test runs beside its checks (a worker), always awaited when the block ends.

    A check that fails mid-way must not leave a worker running into the next test, where
    its connections and tasks would fail that test instead.
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Future[Any]] = []

    def start(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.append(task)
        return task

    async def __aenter__(self) -> Background:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for task in self._tasks:
            if exc is None:
                await task
                continue
            with contextlib.suppress(Exception):  # the failed check is the error to report
                await asyncio.wait_for(task, 60)


async def close_worker(worker: Worker) -> None:
    """Stop an in-process arq worker and free its connections, whatever its jobs were doing.

    arq's close() cancels the running jobs and then gathers them without
    `return_exceptions`, so a job it has just cancelled makes close() raise CancelledError
    before it closes its Redis pool, and the next test fails on the leaked sockets.
    """
    for task in worker.tasks.values():
        task.cancel()
    if worker.main_task is not None:
        worker.main_task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


#: The app's user a spec connects unless it names another; every request about the account
#: names it (`?user_id=`), as the main app must.
USER = "user-42"


def client(api: TestClient) -> Client:
    """The main app's typed client of the test's web app (sharing its HTTP session)."""
    from tests.conftest import API_TOKEN  # conftest imports this module

    return Client(str(api.make_url("")), API_TOKEN, session=api.session)


async def connect(api: TestClient, refresh_token: str, user_id: str = USER) -> str:
    """Register a grant through the typed client and return the account id."""
    return (await client(api).connect(user_id, refresh_token)).account_id


async def stored_contacts(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    """Every stored contact by resource name, read through the purpose-checked path."""
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = await deps.store.read(account_id, use="feature:contacts", actor="test",
                                     kind="contact",
                                     cursor=cursor, limit=1000)
        found.update({item["id"]: item["content"] for item in page.items})
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def synced_user(
    api: TestClient, state: EmulatorState, run_worker: Any, contacts: int,
    marker: str | None = None,
) -> tuple[IssuedGrant, str]:
    """Seed a user with `contacts` contacts (the first carrying `marker`), connect them, and
    run the first sync."""
    grant = seed_demo_user(state, contacts, marker=marker)
    account_id = await connect(api, grant.refresh_token)
    await run_worker()
    return grant, account_id


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a real gwsync process needs to join this test's deployment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            secret = getattr(settings, name)
            plain = secret.get_secret_value() if hasattr(secret, "get_secret_value") else value
            env["PORT" if name == "port" else f"GWSYNC_{name.upper()}"] = str(plain)
    env.update(extra)
    return env


async def start_worker(settings: Settings, **extra: str) -> asyncio.subprocess.Process:
    """A real `gwsync worker` process; stop it with `gwsync.devtools.processes.stop`."""
    gwsync = str(Path(sys.executable).with_name("gwsync"))
    return await asyncio.create_subprocess_exec(
        gwsync, "worker", env=settings_env(settings, **extra),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def eventually(check: Any, within_s: float = 30.0, every_s: float = 0.1) -> Any:
    """Poll the async `check` until it returns something truthy, or fail after `within_s`."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(every_s)


async def sync_state(deps: Deps, account_id: str, feature: str = "contacts") -> SyncState:
    """The feature's sync state as the database holds it now."""
    async with deps.sessions() as session:
        state = await session.get(SyncState, (account_id, feature))
        assert state is not None
        return state


async def sync_again(deps: Deps, account_id: str, feature: str, run_worker: Any) -> None:
    """Queue one more sync of the feature under the account's current generation, run it."""
    async with deps.sessions() as session:
        account = await session.get(Account, account_id)
        assert account is not None
    assert await deps.queue.enqueue_sync(account_id, feature, account.generation)
    await run_worker()


async def pg_admin(sql: str) -> None:
    """Run one statement on the PostgreSQL server's admin database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


#: The `gwsync` console script of this environment.
GWSYNC = Path(sys.executable).with_name("gwsync")


async def run_gwsync(settings: Settings, *args: str) -> tuple[int, str, str]:
    """Run the real command with only the settings an operator would export →
    (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GWSYNC_")}
    env.update({"GWSYNC_DATABASE_URL": settings.database_url,
                "GWSYNC_REDIS_URL": settings.redis_url,
                "GWSYNC_REDIS_PREFIX": settings.redis_prefix, "COLUMNS": "120"})
    proc = await asyncio.create_subprocess_exec(
        str(GWSYNC), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()
