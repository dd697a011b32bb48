"""Small helpers the specifications share: connect a seeded user, read what was stored."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from gwsync.emulator.seed import seed_demo_user
from gwsync.emulator.state import EmulatorState, IssuedGrant
from gwsync.storage.models import Account, SyncState
from gwsync.worker.deps import Deps
from gwsync.worker.settings import Settings


async def connect(api: TestClient, refresh_token: str, user_id: str = "user-42") -> str:
    """Register a grant through the real API and return the account id."""
    resp = await api.post("/v1/accounts", json={"user_id": user_id,
                                                "refresh_token": refresh_token})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["account_id"]


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
    api: TestClient, state: EmulatorState, run_worker: Any, contacts: int
) -> tuple[IssuedGrant, str]:
    """Seed a user with `contacts` contacts, connect them, and run the first sync."""
    grant = seed_demo_user(state, contacts)
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
    """A real `gwsync worker` process; stop it with `gwsync.worker.processes.stop`."""
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
